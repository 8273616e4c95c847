//! Provider webhook signatures, verified before anything of the request is
//! read: the server and the fuzz targets call the same code.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How far a Teller signature's timestamp may be from now, in seconds.
const TELLER_TOLERANCE_SECS: u64 = 180;

/// The `t` (unix seconds) of a `Teller-Signature` header
/// (`t=<unix seconds>,v1=<hex>`) when it is within the tolerance of `now`
/// and one of its `v1` values is the HMAC-SHA256 of `"<t>.<body>"` under
/// `secret` (compared in constant time); `None` otherwise.
pub fn verify_teller(secret: &[u8], header: &str, body: &[u8], now: i64) -> Option<i64> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok().map(|n| (t, n)),
            Some(("v1", v)) => signatures.extend(hex(v)),
            _ => {}
        }
    }
    let (t, at) = timestamp?;
    // `at` is the sender's: any i64, so no arithmetic that can overflow.
    if now.abs_diff(at) > TELLER_TOLERANCE_SECS {
        return None;
    }
    let signed = signatures.iter().any(|signature| {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
            return false;
        };
        mac.update(t.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.verify_slice(signature).is_ok()
    });
    signed.then_some(at)
}

fn hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &[u8], t: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(format!("{t}.").as_bytes());
        mac.update(body);
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[test]
    fn signatures_verify_only_when_fresh_and_right() {
        let (secret, body, now) = (b"whsec", br#"{"type":"x"}"#, 1_800_000_000);
        let good = sign(secret, now, body);
        let cases = [
            (format!("t={now},v1={good}"), true),
            (format!("t={now},v1={},v1={good}", "00".repeat(32)), true),
            (format!("t={},v1={good}", now), true),
            (
                format!("t={},v1={}", now - 200, sign(secret, now - 200, body)),
                false,
            ),
            (format!("t={now},v1={}", sign(b"other", now, body)), false),
            (format!("v1={good}"), false),
            (format!("t={now}"), false),
            (String::new(), false),
            (format!("t={now},v1=zz{}", &good[2..]), false),
        ];
        for (header, expected) in cases {
            assert_eq!(
                verify_teller(secret, &header, body, now).is_some(),
                expected,
                "{header}"
            );
        }
        assert_eq!(
            verify_teller(secret, &format!("t={now},v1={good}"), body, now),
            Some(now)
        );
        assert!(
            verify_teller(
                secret,
                &format!("t={now},v1={good}"),
                b"{\"type\":\"y\"}",
                now
            )
            .is_none()
        );
    }

    #[test]
    fn a_timestamp_at_the_ends_of_the_range_is_stale_not_a_panic() {
        // `now - t` overflows for these: it wrapped to i64::MIN, whose
        // absolute value wrapped again and passed for fresh.
        let (secret, body) = (b"whsec", b"{}");
        for (t, now) in [
            (i64::MIN, 1_800_000_000),
            (i64::MAX, -1),
            (1_800_000_000 + i64::MIN, 1_800_000_000),
        ] {
            let header = format!("t={t},v1={}", sign(secret, t, body));
            assert!(
                verify_teller(secret, &header, body, now).is_none(),
                "{header}"
            );
        }
    }
}
