//! Keyring text: arbitrary text parses or is refused with an error that
//! holds no key material; a keyring that parses seals and opens.

#![no_main]

use model::config::DecryptedConfig;
use model::sealing::Sealer;
use vault::{Keyring, KeyringError};
use model::{Integration, IntegrationType, Scope, Status};
use libfuzzer_sys::fuzz_target;
use zeroize::Zeroizing;

fuzz_target!(|text: &str| {
    let keyring = match Keyring::parse(text) {
        Ok(keyring) => keyring,
        Err(e) => {
            // An error repeats nothing of the text but a valid key id: never
            // a key.
            let message = e.to_string();
            match e {
                KeyringError::Entry { index, reason } => assert_eq!(
                    message,
                    format!("keyring entry {index} is not kid=base64(32 bytes): {reason}")
                ),
                KeyringError::DuplicateKid(kid) => assert!(
                    !kid.is_empty()
                        && kid.len() <= 32
                        && kid
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                ),
                KeyringError::Missing => {}
                KeyringError::File { .. } => panic!("parse reads no file"),
            }
            return;
        }
    };
    let kid = keyring.primary_kid();
    assert!(!kid.is_empty() && kid.len() <= 32);
    assert!(!format!("{keyring:?}").contains('='));
    let config = DecryptedConfig::validate(
        IntegrationType::Webhook,
        Zeroizing::new(br#"{"url":"https://hooks.example.com/x"}"#.to_vec()),
    )
    .expect("a fixed webhook config is valid")
    .config;
    let sealed = keyring.seal_config("int_x", "u1", IntegrationType::Webhook, &config);
    assert_eq!(sealed.kid(), Some(kid));
    let row = Integration {
        id: "int_x".into(),
        user_id: "u1".into(),
        kind: IntegrationType::Webhook,
        external_id: None,
        label: "x".into(),
        sealed,
        enabled: true,
        is_default: false,
        scope: Scope::All,
        profile_ids: vec![],
        bound_profile_id: None,
        status: Status::Active,
        status_note: None,
        created_at: String::new(),
        updated_at: String::new(),
    };
    keyring
        .open_config(&row)
        .expect("what a keyring seals, it opens");
});
