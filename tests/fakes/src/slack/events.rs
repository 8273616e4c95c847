//! Slack's Events API as the fake delivers it to an app's Request URL:
//! setting the URL sends a `url_verification` whose challenge must come
//! back; each event is POSTed in its `event_callback` envelope, signed with
//! [`SIGNING_SECRET`] (`X-Slack-Signature: v0=<hex HMAC-SHA256 of
//! "v0:<timestamp>:<body>">`), and delivered again, with `X-Slack-Retry-Num`
//! and `X-Slack-Retry-Reason`, up to three times when the answer takes more
//! than 3 seconds or is not 2xx. Slack waits about 1 s, 1 min and 5 min
//! between them; the fake waits [`RETRY_DELAYS`].

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{BOT_ID, BOT_USER_ID, FakeSlack, Posted, TEAM_ID};

/// The app's signing secret (Slack's own example of one).
pub const SIGNING_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
/// How long Slack waits for an answer.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(3);
/// The fake's waits before its three redeliveries (Slack's: 1 s, 1 min, 5 min).
pub const RETRY_DELAYS: [Duration; 3] = [
    Duration::from_millis(200),
    Duration::from_millis(400),
    Duration::from_millis(600),
];

/// One POST of an event, as Slack saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// 0 for the first delivery, then `X-Slack-Retry-Num`.
    pub retry: u32,
    /// The answer's status; `None` when none came within [`ANSWER_WITHIN`].
    pub status: Option<u16>,
    pub elapsed: Duration,
}

pub(super) fn client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(ANSWER_WITHIN)
        .build()
}

/// HMAC-SHA256 (RFC 2104) written out over SHA-256, so that the server's
/// verifier is checked against code it does not share.
pub(crate) fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|k| k ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// `X-Slack-Signature` of `body` sent at `timestamp`, signed with `secret`.
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut signed = format!("v0:{timestamp}:").into_bytes();
    signed.extend_from_slice(body);
    let mac = hmac_sha256(secret.as_bytes(), &signed);
    format!(
        "v0={}",
        mac.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

/// Now, in unix seconds.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A direct message from `user` to the bot.
pub fn dm(user: &str, text: &str, ts: &str) -> Value {
    json!({"type": "message", "channel_type": "im", "channel": dm_channel(user), "user": user, "text": text, "ts": ts, "event_ts": ts})
}

/// `user`'s reply in the thread of `parent` (a message's `ts`) of their
/// direct messages.
pub fn dm_reply(user: &str, text: &str, ts: &str, parent: &str) -> Value {
    let mut event = dm(user, text, ts);
    event["thread_ts"] = json!(parent);
    event
}

/// A mention of the bot by `user` in the channel `channel`.
pub fn mention(user: &str, channel: &str, text: &str, ts: &str) -> Value {
    json!({"type": "app_mention", "channel": channel, "user": user, "text": format!("<@{BOT_USER_ID}> {text}"), "ts": ts, "event_ts": ts})
}

/// The `message` event Slack sends for a message the bot posted.
pub fn bot_echo(posted: &Posted) -> Value {
    let mut event = json!({"type": "message", "channel_type": "im", "channel": posted.channel, "user": BOT_USER_ID, "bot_id": BOT_ID, "text": posted.text, "ts": posted.ts, "event_ts": posted.ts});
    if let Some(parent) = &posted.thread_ts {
        event["thread_ts"] = json!(parent);
    }
    event
}

/// The bot's direct-message channel with `user`, as `conversations.open`
/// names it.
pub fn dm_channel(user: &str) -> String {
    format!("D{}", user.trim_start_matches('U'))
}

impl FakeSlack {
    /// Sets the app's Request URL as Slack does: a signed
    /// `url_verification`, which must be answered 200 with its challenge.
    pub async fn set_request_url(&self, url: &str) -> anyhow::Result<()> {
        let challenge = format!("challenge-{}", now());
        let body = json!({"token": "deprecated-verification-token", "challenge": challenge, "type": "url_verification"});
        let body = serde_json::to_vec(&body)?;
        let response = self
            .post_signed(url, &body, now(), SIGNING_SECRET, &[])
            .await
            .with_context(|| format!("verifying the Request URL {url}"))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let echoed = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["challenge"].as_str().map(str::to_string))
            .unwrap_or(text);
        if !status.is_success() || echoed != challenge {
            bail!("the Request URL answered {status} without the challenge");
        }
        self.workspace.lock().unwrap().request_url = Some(url.into());
        Ok(())
    }

    /// `event` in the envelope Slack wraps it in: the team, a new
    /// `event_id`, and the bot's authorization.
    pub fn envelope(&self, event: Value) -> Value {
        let id = {
            let mut ws = self.workspace.lock().unwrap();
            ws.next_event += 1;
            ws.next_event
        };
        json!({
            "token": "deprecated-verification-token",
            "team_id": TEAM_ID,
            "api_app_id": "A0TEST",
            "event": event,
            "type": "event_callback",
            "event_id": format!("Ev{id:010}"),
            "event_time": now(),
            "authorizations": [{"enterprise_id": null, "team_id": TEAM_ID, "user_id": BOT_USER_ID, "is_bot": true, "is_enterprise_install": false}],
            "is_ext_shared_channel": false,
        })
    }

    /// Delivers `envelope` to the Request URL as Slack does, signed, again
    /// after [`RETRY_DELAYS`] while the answer is late or not 2xx (three
    /// times at most): every attempt.
    pub async fn deliver(&self, envelope: &Value) -> anyhow::Result<Vec<Attempt>> {
        let mut attempts = Vec::new();
        for retry in 0..=RETRY_DELAYS.len() as u32 {
            let reason = match attempts.last() {
                None => None,
                Some(Attempt { status: None, .. }) => Some("http_timeout"),
                Some(Attempt {
                    status: Some(s), ..
                }) if (200..300).contains(s) => break,
                Some(_) => Some("http_error"),
            };
            if retry > 0 {
                tokio::time::sleep(RETRY_DELAYS[retry as usize - 1]).await;
            }
            attempts.push(self.attempt(envelope, retry, reason).await?);
        }
        Ok(attempts)
    }

    /// One delivery of `envelope`, as redelivery `retry` (0: the first)
    /// for `reason`.
    pub async fn attempt(
        &self,
        envelope: &Value,
        retry: u32,
        reason: Option<&str>,
    ) -> anyhow::Result<Attempt> {
        let Some(url) = self.workspace.lock().unwrap().request_url.clone() else {
            bail!("fake Slack: no Request URL set");
        };
        let body = serde_json::to_vec(envelope)?;
        let retry_text = retry.to_string();
        let mut headers = Vec::new();
        if let Some(reason) = reason {
            headers.push(("X-Slack-Retry-Num", retry_text.as_str()));
            headers.push(("X-Slack-Retry-Reason", reason));
        }
        let started = Instant::now();
        let status = match self
            .post_signed(&url, &body, now(), SIGNING_SECRET, &headers)
            .await
        {
            Ok(response) => Some(response.status().as_u16()),
            Err(e) if e.is_timeout() => None,
            Err(e) => return Err(e).context("delivering an event"),
        };
        Ok(Attempt {
            retry,
            status,
            elapsed: started.elapsed(),
        })
    }

    /// POSTs `body` to `url` signed with `secret` at `timestamp`, with
    /// `headers` besides: for forged, stale and replayed requests too.
    pub async fn post_signed(
        &self,
        url: &str,
        body: &[u8],
        timestamp: i64,
        secret: &str,
        headers: &[(&str, &str)],
    ) -> reqwest::Result<reqwest::Response> {
        let mut request = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("X-Slack-Request-Timestamp", timestamp.to_string())
            .header("X-Slack-Signature", signature(secret, timestamp, body));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(body.to_vec()).send().await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::Router;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;

    use super::*;
    use crate::http::serve;

    #[test]
    fn signs_like_slacks_own_example() {
        let body = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        assert_eq!(
            signature(SIGNING_SECRET, 1_531_420_618, body.as_bytes()),
            "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
        );
    }

    /// What a receiver saw: the retry header, and the event id.
    type Seen = Arc<Mutex<Vec<(Option<String>, String)>>>;

    #[tokio::test]
    async fn redelivers_a_late_or_failed_answer_three_times_at_most() {
        // Answers 500, then takes 4 s, then 200.
        async fn hook(
            State(seen): State<Seen>,
            headers: HeaderMap,
            body: String,
        ) -> (StatusCode, String) {
            let body: Value = serde_json::from_str(&body).unwrap();
            if body["type"] == "url_verification" {
                return (StatusCode::OK, body["challenge"].as_str().unwrap().into());
            }
            let retry = headers
                .get("x-slack-retry-num")
                .map(|v| v.to_str().unwrap().to_string());
            let n = {
                let mut seen = seen.lock().unwrap();
                seen.push((retry, body["event_id"].as_str().unwrap().into()));
                seen.len()
            };
            match n {
                1 => (StatusCode::INTERNAL_SERVER_ERROR, String::new()),
                2 => {
                    tokio::time::sleep(Duration::from_secs(4)).await;
                    (StatusCode::OK, String::new())
                }
                _ => (StatusCode::OK, String::new()),
            }
        }
        let seen = Seen::default();
        let app = Router::new()
            .route("/events", post(hook))
            .with_state(seen.clone());
        let served = serve(app).await.unwrap();
        let slack = FakeSlack::start().await.unwrap();
        let url = format!("http://{}/events", served.addr);
        slack.set_request_url(&url).await.unwrap();

        let envelope = slack.envelope(dm("U0OWNER", "hi", "1700000100.000100"));
        let attempts = slack.deliver(&envelope).await.unwrap();
        let outcome: Vec<(u32, Option<u16>)> =
            attempts.iter().map(|a| (a.retry, a.status)).collect();
        assert_eq!(outcome, [(0, Some(500)), (1, None), (2, Some(200))]);
        assert!(attempts[1].elapsed >= ANSWER_WITHIN);
        let seen = seen.lock().unwrap().clone();
        let id = envelope["event_id"].as_str().unwrap();
        assert_eq!(
            seen,
            [
                (None, id.to_string()),
                (Some("1".into()), id.to_string()),
                (Some("2".into()), id.to_string())
            ]
        );
        assert_ne!(
            slack.envelope(json!({}))["event_id"],
            envelope["event_id"],
            "each event has its own id"
        );
    }
}
