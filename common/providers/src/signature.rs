//! Webhook signatures. Those providers send us (Teller's, Slack's): their
//! headers' shape and freshness, checked before a request's body is read,
//! then the signature over the body, verified before the body is parsed;
//! the server and the fuzz targets call the same code. And those we send
//! (Standard Webhooks', the product's `X-Signature-256`): the notifications'
//! webhooks and the inbound forward sign with them.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How far a Teller signature's timestamp may be from now, in seconds.
const TELLER_TOLERANCE_SECS: u64 = 180;
/// How far a Slack request's timestamp may be from now, in seconds.
const SLACK_TOLERANCE_SECS: u64 = 300;

/// The HMAC an `X-Slack-Signature` (`signature`) carries, when it is
/// well-formed (`v0=` and 64 hex digits) and `X-Slack-Request-Timestamp`
/// (`timestamp`, unix seconds) is within five minutes of `now`: what can
/// be checked of a Slack request before its body is read.
pub fn slack_headers(timestamp: &str, signature: &str, now: i64) -> Option<[u8; 32]> {
    let at = timestamp.parse::<i64>().ok()?;
    if now.abs_diff(at) > SLACK_TOLERANCE_SECS {
        return None;
    }
    hex(signature.strip_prefix("v0=")?)?.try_into().ok()
}

/// Whether a Slack request is signed by `secret` (the app's signing
/// secret): its headers pass [`slack_headers`], and the signature is the
/// HMAC-SHA256 of `v0:<timestamp>:<body>`, compared in constant time.
pub fn verify_slack(
    secret: &[u8],
    timestamp: &str,
    signature: &str,
    body: &[u8],
    now: i64,
) -> bool {
    let Some(signature) = slack_headers(timestamp, signature, now) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    mac.verify_slice(&signature).is_ok()
}

/// What a `Teller-Signature` header (`t=<unix seconds>,v1=<hex>[,v1=...]`)
/// says, when its `t` is within the tolerance of `now` and it carries at
/// least one well-formed `v1` (64 hex digits): what can be checked of a
/// Teller webhook before its body is read.
pub struct TellerHeader<'a> {
    /// `t` as sent, which the signature covers.
    t: &'a str,
    /// `t` in unix seconds.
    at: i64,
    signatures: Vec<[u8; 32]>,
}

impl<'a> TellerHeader<'a> {
    /// `header` read at `now`; `None` when stale or malformed.
    pub fn parse(header: &'a str, now: i64) -> Option<Self> {
        let mut timestamp = None;
        let mut signatures = Vec::new();
        for part in header.split(',') {
            match part.trim().split_once('=') {
                Some(("t", t)) => timestamp = t.parse::<i64>().ok().map(|n| (t, n)),
                Some(("v1", v)) => {
                    signatures.extend(hex(v).and_then(|v| <[u8; 32]>::try_from(v).ok()))
                }
                _ => {}
            }
        }
        let (t, at) = timestamp?;
        // `at` is the sender's: any i64, so no arithmetic that can overflow.
        if now.abs_diff(at) > TELLER_TOLERANCE_SECS || signatures.is_empty() {
            return None;
        }
        Some(Self { t, at, signatures })
    }

    /// `t` (unix seconds) when one of the `v1` values is the HMAC-SHA256
    /// of `"<t>.<body>"` under `secret` (compared in constant time).
    pub fn verify(&self, secret: &[u8], body: &[u8]) -> Option<i64> {
        let signed = self.signatures.iter().any(|signature| {
            let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
                return false;
            };
            mac.update(self.t.as_bytes());
            mac.update(b".");
            mac.update(body);
            mac.verify_slice(signature).is_ok()
        });
        signed.then_some(self.at)
    }
}

/// The `t` (unix seconds) of a `Teller-Signature` header when it parses at
/// `now` ([`TellerHeader::parse`]) and verifies over `body` under `secret`
/// ([`TellerHeader::verify`]); `None` otherwise.
pub fn verify_teller(secret: &[u8], header: &str, body: &[u8], now: i64) -> Option<i64> {
    TellerHeader::parse(header, now)?.verify(secret, body)
}

/// A Standard Webhooks secret that is `whsec_` and no base64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the webhook secret is not valid whsec_ base64: the user must update it")]
pub struct InvalidSecret;

/// The Standard Webhooks signature `v1,<base64 HMAC-SHA256>` of
/// `{id}.{timestamp}.{body}`; a `whsec_` secret is base64 of the key.
pub fn sign_standard(
    secret: &str,
    id: &str,
    timestamp: u64,
    body: &[u8],
) -> Result<String, InvalidSecret> {
    let key = match secret.strip_prefix("whsec_") {
        Some(encoded) => STANDARD.decode(encoded).map_err(|_| InvalidSecret)?,
        None => secret.as_bytes().to_vec(),
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes keys of any length");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    Ok(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

/// The product's signature, `X-Signature-256`: `sha256=<hex
/// HMAC-SHA256(secret, body)>`.
pub fn sign_vonzio(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
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
    fn the_standard_webhooks_test_vector_signs() {
        let body = br#"{"email":"test@example.com","username":"test_user"}"#;
        assert_eq!(
            sign_standard(
                "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
                "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
                1649367553,
                body
            )
            .unwrap(),
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
        );
        assert_eq!(sign_standard("whsec_!", "id", 1, body), Err(InvalidSecret));
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

    /// Slack's own example of a signed request (its "Verifying requests
    /// from Slack" guide).
    #[test]
    fn slack_signatures_verify_only_when_fresh_and_right() {
        let secret = b"8f742231b10e8888abcd99yyyzzz85a5";
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let good = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
        let at = 1_531_420_618;
        assert!(verify_slack(secret, "1531420618", good, body, at));
        assert!(verify_slack(secret, "1531420618", good, body, at + 300));
        for (timestamp, signature, body, now) in [
            ("1531420618", good, &body[..], at + 301),
            ("1531420618", good, &body[..], at - 301),
            ("1531420619", good, &body[..], at),
            ("1531420618", &good[3..], &body[..], at),
            (
                "1531420618",
                "v1=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
                &body[..],
                at,
            ),
            ("1531420618", "v0=00", &body[..], at),
            ("1531420618", "v0=zz", &body[..], at),
            ("1531420618", "", &body[..], at),
            ("", good, &body[..], at),
            ("-9223372036854775808", good, &body[..], i64::MAX),
            ("1531420618", good, b"token=other", at),
        ] {
            assert!(
                !verify_slack(secret, timestamp, signature, body, now),
                "{timestamp} {signature} {now}"
            );
        }
        assert!(!verify_slack(
            b"another secret",
            "1531420618",
            good,
            body,
            at
        ));
    }

    /// What is checked before a body is read: fresh, and a signature of
    /// the right shape.
    #[test]
    fn headers_are_checked_for_shape_and_freshness_alone() {
        let (at, hex64) = (1_800_000_000, "ab".repeat(32));
        let good = format!("v0={hex64}");
        assert!(slack_headers("1800000000", &good, at).is_some());
        assert!(slack_headers("1800000000", &good, at + 300).is_some());
        for (timestamp, signature) in [
            ("1800000000", format!("v0={}", &hex64[2..])),
            ("1800000000", format!("v0={hex64}ab")),
            ("1800000000", format!("v1={hex64}")),
            ("1800000000", hex64.clone()),
            ("1800000000", String::new()),
            ("", good.clone()),
            ("1799999699", good.clone()),
        ] {
            assert!(
                slack_headers(timestamp, &signature, at).is_none(),
                "{timestamp} {signature}"
            );
        }
        assert!(TellerHeader::parse(&format!("t={at},v1={hex64}"), at).is_some());
        assert!(TellerHeader::parse(&format!("t={at},v1=00,v1={hex64}"), at).is_some());
        for header in [
            format!("t={at}"),
            format!("t={at},v1=00"),
            format!("v1={hex64}"),
            format!("t={},v1={hex64}", at - 181),
            String::new(),
        ] {
            assert!(TellerHeader::parse(&header, at).is_none(), "{header}");
        }
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
