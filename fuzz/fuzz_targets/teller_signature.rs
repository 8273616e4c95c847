//! `Teller-Signature`: any header and body is verified without a panic, and
//! a header signed with the secret verifies within the tolerance only.

#![no_main]

use arbitrary::Arbitrary;
use providers::signature::verify_teller;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    secret: &'a [u8],
    header: &'a str,
    body: &'a [u8],
    now: i64,
    /// Seconds between the signed timestamp and now.
    skew: i16,
}

/// Signs the way Teller does, with its own HMAC (RFC 2104) over SHA-256 so
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
        .chain_update(format!("{t}."))
        .chain_update(body)
        .finalize();
    let outer = Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize();
    outer.iter().map(|b| format!("{b:02x}")).collect()
}

fuzz_target!(|input: Input| {
    let _ = verify_teller(input.secret, input.header, input.body, input.now);

    let Some(t) = input.now.checked_sub(i64::from(input.skew)) else {
        return;
    };
    let signature = sign(input.secret, t, input.body);
    let fresh = input.skew.unsigned_abs() <= 180;
    let header = format!("t={t},v1={signature}");
    assert_eq!(
        verify_teller(input.secret, &header, input.body, input.now),
        fresh.then_some(t),
        "{header}"
    );
    // Other parts and other signatures around it change nothing.
    let padded = format!(
        "v0=x, v1=00, {header} ,{}",
        input.header.replace(['t', '1'], "")
    );
    assert_eq!(
        verify_teller(input.secret, &padded, input.body, input.now),
        fresh.then_some(t),
        "{padded}"
    );
    // Another body does not verify.
    let mut other = input.body.to_vec();
    other.push(b'!');
    assert!(verify_teller(input.secret, &header, &other, input.now).is_none());
});
