//! The v1 envelope: arbitrary text opened as a sealed config never panics
//! and never opens; a config that validates opens again, field for field,
//! in its own row only, and any other text in its place does not open.

#![no_main]

use std::sync::LazyLock;

use arbitrary::Arbitrary;
use model::config::DecryptedConfig;
use model::sealing::{OpenError, Sealer};
use vault::Keyring;
use model::{Integration, IntegrationType, Scope, SealedConfig, Status};
use libfuzzer_sys::fuzz_target;
use zeroize::Zeroizing;

/// Two fixed keys: `k1` seals, `k2` only opens.
static KEYRING: LazyLock<Keyring> = LazyLock::new(|| {
    Keyring::parse(
        "k1=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n\
         k2=ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=",
    )
    .expect("the fixed keyring parses")
});

#[derive(Arbitrary, Debug)]
struct Input {
    /// Text opened as a stored envelope.
    envelope: String,
    kind: u8,
    /// Bytes validated as that kind's config, then sealed and opened.
    config: Vec<u8>,
    /// Replaces the sealed envelope of that config.
    tampered: String,
}

fn row(kind: IntegrationType, sealed: SealedConfig) -> Integration {
    Integration {
        id: "int_fuzzfuzzfuzzfuzzfuzzf".into(),
        user_id: "u1".into(),
        kind,
        external_id: None,
        label: "fuzz".into(),
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
    }
}

fuzz_target!(|input: Input| {
    let kind = IntegrationType::ALL[usize::from(input.kind) % IntegrationType::ALL.len()];

    let stored = row(kind, SealedConfig::from_stored(input.envelope.clone()));
    match KEYRING.open_config(&stored) {
        // Forging an AES-GCM tag by chance does not happen.
        Ok(_) => panic!("arbitrary text opened as an envelope"),
        Err(e) => assert_eq!(e.integration_id(), stored.id),
    }

    let Ok(valid) = DecryptedConfig::validate(kind, Zeroizing::new(input.config)) else {
        return;
    };
    let sealed = row(
        kind,
        KEYRING.seal_config(&stored.id, &stored.user_id, kind, &valid.config),
    );
    assert_eq!(sealed.sealed.kid(), Some("k1"));
    let opened = KEYRING.open_config(&sealed).expect("a sealed config opens");
    assert_eq!(
        opened.redacted(kind).expect("an opened config reads"),
        valid.config.redacted(kind).expect("a valid config reads"),
    );
    for field in [
        "bot_token",
        "access_token",
        "refresh_token",
        "api_key",
        "url",
    ] {
        let get = |c: &DecryptedConfig| c.get(kind, field).ok().flatten().map(|v| v.to_string());
        assert_eq!(get(&opened), get(&valid.config), "{field}");
    }

    // The same envelope in another row, or of another type, does not open.
    let mut moved = sealed.clone();
    moved.user_id = "u2".into();
    assert!(matches!(
        KEYRING.open_config(&moved),
        Err(OpenError::Rejected { .. })
    ));
    let mut retyped = sealed.clone();
    retyped.kind = IntegrationType::ALL[(usize::from(input.kind) + 1) % IntegrationType::ALL.len()];
    assert!(matches!(
        KEYRING.open_config(&retyped),
        Err(OpenError::Rejected { .. })
    ));

    // Any other text in its place does not open.
    if input.tampered != sealed.sealed.as_stored() {
        let tampered = row(kind, SealedConfig::from_stored(input.tampered));
        assert!(KEYRING.open_config(&tampered).is_err());
    }
});
