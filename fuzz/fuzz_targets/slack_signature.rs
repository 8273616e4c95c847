//! `X-Slack-Signature`: any timestamp, signature and body is verified
//! without a panic, and a request signed with the secret verifies within
//! five minutes only.

#![no_main]

use arbitrary::Arbitrary;
use providers::signature::verify_slack;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    secret: &'a [u8],
    timestamp: &'a str,
    signature: &'a str,
    body: &'a [u8],
    now: i64,
    /// Seconds between the signed timestamp and now.
    skew: i16,
}

/// Signs the way Slack does, with its own HMAC (RFC 2104) over SHA-256 so
/// that the verifier is checked against something it does not share.
fn sign(secret: &[u8], t: i64, body: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let mut key = [0u8; 64];
    if secret.len() > 64 {
        key[..32].copy_from_slice(&Sha256::digest(secret));
    } else {
        key[..secret.len()].copy_from_slice(secret);
    }
    let pad = |byte: u8| key.iter().map(|k| k ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(format!("v0:{t}:"))
        .chain_update(body)
        .finalize();
    let outer = Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize();
    format!(
        "v0={}",
        outer.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

fuzz_target!(|input: Input| {
    let _ = verify_slack(
        input.secret,
        input.timestamp,
        input.signature,
        input.body,
        input.now,
    );

    let Some(t) = input.now.checked_sub(i64::from(input.skew)) else {
        return;
    };
    let signature = sign(input.secret, t, input.body);
    let fresh = input.skew.unsigned_abs() <= 300;
    assert_eq!(
        verify_slack(input.secret, &t.to_string(), &signature, input.body, input.now),
        fresh,
        "{t} {signature}"
    );
    // Another body, or another timestamp, does not verify.
    let mut other = input.body.to_vec();
    other.push(b'!');
    assert!(!verify_slack(input.secret, &t.to_string(), &signature, &other, input.now));
    if let Some(later) = t.checked_add(1) {
        assert!(!verify_slack(input.secret, &later.to_string(), &signature, input.body, input.now));
    }
});
