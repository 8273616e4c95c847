//! Signed webhooks, sent only to public addresses: the target's addresses
//! are checked, and the connection goes to the address that was checked (no
//! second DNS lookup). Redirects are never followed. Standard Webhooks by
//! default; a config with `"signature": "vonzio"` gets the product's body
//! and `X-Signature-256`, so that its receivers keep verifying.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Mutex;

use providers::http::{NoAnswer, retry_after};
use providers::signature::{sign_standard, sign_vonzio};
use serde_json::json;

use tokio::time::Instant;

use super::retry::{Attempt, retrying};
use super::{Delivered, Failure, Outgoing, Providers};

/// How a delivery is shaped and signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Style {
    /// Our body, `webhook-id`, `webhook-timestamp` and `webhook-signature`.
    StandardWebhooks,
    /// `{"message", "urgency", "timestamp"}` and `X-Signature-256:
    /// sha256=<hex HMAC-SHA256(secret, body)>`, as the product sends.
    Vonzio,
}

impl Style {
    /// The style a config's `signature` field names (absent: the default).
    pub(super) fn from_config(signature: Option<&str>) -> Self {
        match signature {
            Some("vonzio") => Self::Vonzio,
            _ => Self::StandardWebhooks,
        }
    }
}

pub(super) async fn send(
    p: &Providers,
    deadline: Instant,
    url: &str,
    secret: Option<&str>,
    style: Style,
    out: &Outgoing,
) -> Result<Delivered, Failure> {
    let (host, addr) = check_target(url, p.allow_private).await?;
    let client = p.webhook_clients.get(&host, addr, p.timeout)?;
    let body = match style {
        Style::StandardWebhooks => standard_body(out),
        Style::Vonzio => serde_json::to_vec(&json!({
            "message": out.message,
            "urgency": out.urgency.as_str(),
            "timestamp": humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
        }))
        .expect("JSON values serialize"),
    };
    let ((), attempts) = retrying(deadline, "The webhook", || async {
        let mut request = client.post(url).header("content-type", "application/json");
        match style {
            Style::StandardWebhooks => {
                let timestamp = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                request = request
                    .header("webhook-id", &out.id)
                    .header("webhook-timestamp", timestamp.to_string());
                if let Some(secret) = secret {
                    match sign_standard(secret, &out.id, timestamp, &body) {
                        Ok(signature) => request = request.header("webhook-signature", signature),
                        Err(e) => return Attempt::Fail(Failure::new(e.to_string())),
                    }
                }
            }
            Style::Vonzio => {
                if let Some(secret) = secret {
                    request = request.header("x-signature-256", sign_vonzio(secret, &body));
                }
            }
        }
        let response = match request.body(body.clone()).send().await {
            Ok(r) => r,
            // The webhook id is stable: the receiver can drop a repeat.
            Err(e) => return Attempt::Retry { after: None, why: NoAnswer::from(e).to_string() },
        };
        let status = response.status();
        match status.as_u16() {
            200..=299 => Attempt::Done(()),
            300..=399 => Attempt::Fail(Failure::new(format!(
                "the webhook answered with a redirect ({status}), which is not followed: the user should update its URL"
            ))),
            410 => Attempt::Fail(Failure::new(
                "the webhook endpoint is gone (410): the user should update or remove the Webhook integration",
            )),
            429 => Attempt::rate_limited(retry_after(response.headers())),
            500..=599 => Attempt::failing(status, retry_after(response.headers())),
            _ => Attempt::Fail(Failure::new(format!("the webhook refused the notification ({status})"))),
        }
    })
    .await?;
    Ok(Delivered {
        provider_message_id: None,
        attempts,
        thread: None,
    })
}

/// Our body: the notification with its id, channel and source.
fn standard_body(out: &Outgoing) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": out.id,
        "type": "notification",
        "channel": out.channel,
        "urgency": out.urgency.as_str(),
        "title": out.title,
        "message": out.message,
        "source": out.source.as_str(),
        "profile_id": out.profile_id,
        "session_id": out.session_id,
        "sent_at": humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
    }))
    .expect("JSON values serialize")
}

/// Webhook clients, each pinned to the address that was checked.
#[derive(Debug, Default)]
pub(super) struct Clients(Mutex<HashMap<(String, SocketAddr), reqwest::Client>>);

/// Past this many receivers, the cache starts over.
const MAX_CLIENTS: usize = 64;

impl Clients {
    /// The client that connects `host` to `addr` and nowhere else.
    fn get(
        &self,
        host: &str,
        addr: SocketAddr,
        timeout: std::time::Duration,
    ) -> Result<reqwest::Client, Failure> {
        let mut clients = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(client) = clients.get(&(host.to_string(), addr)) {
            return Ok(client.clone());
        }
        let client = reqwest::Client::builder()
            .user_agent(super::USER_AGENT)
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would resolve the host again, past the check.
            .no_proxy()
            .resolve(host, addr)
            .build()
            .map_err(|_| Failure::new("cannot build the webhook client"))?;
        if clients.len() >= MAX_CLIENTS {
            clients.clear();
        }
        clients.insert((host.to_string(), addr), client.clone());
        Ok(client)
    }
}

/// Checks that `url` may be called: https (unless `allow_private`), and every
/// address its host resolves to public (unless `allow_private`). Returns the
/// host and the address to connect to.
async fn check_target(url: &str, allow_private: bool) -> Result<(String, SocketAddr), Failure> {
    let refused = |why: &str| Failure::new(format!("the webhook URL is refused: {why}"));
    let parsed = reqwest::Url::parse(url).map_err(|_| refused("it is not a valid URL"))?;
    match parsed.scheme() {
        "https" => {}
        "http" if allow_private => {}
        _ => return Err(refused("it must use https")),
    }
    let host = parsed
        .host_str()
        .ok_or_else(|| refused("it has no host"))?
        .to_string();
    let port = parsed.port_or_known_default().unwrap_or(443);
    let addr = checked_address(&host, port, allow_private)
        .await
        .map_err(refused)?;
    Ok((host, addr))
}

/// The address to connect to for `host` and `port`: every address the host
/// resolves to must be public (unless `allow_private`); else why not, for a
/// sentence. An SMTP server is checked so too.
pub(super) async fn checked_address(
    host: &str,
    port: u16,
    allow_private: bool,
) -> Result<SocketAddr, &'static str> {
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = match literal.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((host, port))
            .await
            .map_err(|_| "its host does not resolve")?
            .collect(),
    };
    let first = *addrs.first().ok_or("its host does not resolve")?;
    if !allow_private && addrs.iter().any(|a| !is_public(a.ip())) {
        return Err("it points to a loopback, private, link-local or metadata address");
    }
    Ok(first)
}

/// Whether `ip` is a public unicast address.
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let embedded = |hi: u16, lo: u16| {
                Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8)
            };
            // Forms that carry an IPv4 address: mapped (::ffff:0:0/96),
            // compatible (::/96), translated (::ffff:0:0:0/96), NAT64
            // (64:ff9b::/96, 64:ff9b:1::/48), 6to4 (2002::/16).
            if s[..5] == [0; 5] && (s[5] == 0 || s[5] == 0xffff) {
                return is_public_v4(embedded(s[6], s[7]));
            }
            if s[..4] == [0; 4] && s[4] == 0xffff && s[5] == 0 {
                return is_public_v4(embedded(s[6], s[7]));
            }
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                return is_public_v4(embedded(s[6], s[7]));
            }
            if s[..2] == [0x64, 0xff9b] || s[..3] == [0x64, 0xff9b, 1] {
                return false;
            }
            if s[0] == 0x2002 {
                return is_public_v4(embedded(s[1], s[2]));
            }
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local, incl. fd00:ec2::254
                || (s[0] & 0xffc0) == 0xfe80 // link-local
                || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
                || s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        }
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local() // 169.254/16, the metadata address included
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // CGNAT
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || a >= 240)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn private_targets_are_refused_and_public_ones_pass() {
        for url in [
            "https://127.0.0.1/x",
            "https://10.1.2.3/x",
            "https://172.16.0.1/x",
            "https://192.168.1.1/x",
            "https://169.254.169.254/latest/meta-data",
            "https://100.64.0.1/x",
            "https://0.0.0.0/x",
            "https://224.0.0.1/x",
            "https://[::1]/x",
            "https://[::ffff:127.0.0.1]/x",
            "https://[::ffff:169.254.169.254]/x",
            "https://[fd00:ec2::254]/x",
            "https://[fe80::1]/x",
            "https://[64:ff9b::a00:1]/x",
            "https://[64:ff9b:1::a00:1]/x",
            "https://[::7f00:1]/x",
            "https://[::ffff:0:7f00:1]/x",
            "https://[2002:a9fe:a9fe::1]/x",
            "https://[fec0::1]/x",
            "https://198.18.0.1/x",
            "https://192.0.0.8/x",
            "https://localhost/x",
            "http://93.184.215.14/x",
            "ftp://93.184.215.14/x",
        ] {
            let refused = check_target(url, false).await.unwrap_err();
            assert!(
                refused.message.starts_with("the webhook URL is refused"),
                "{url}: {refused}"
            );
        }
        for url in ["https://93.184.215.14/x", "https://[2606:4700::1111]/x"] {
            assert!(check_target(url, false).await.is_ok(), "{url}");
        }
        assert!(check_target("http://127.0.0.1:9/x", true).await.is_ok());
    }
}
