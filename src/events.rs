//! The platform's events: the outbox the store's triggers fill
//! (`store::PendingEvent`), delivered to `INTEGRATIONS_EVENTS_URL` signed
//! as Standard Webhooks are (`webhook-id`, `webhook-timestamp`,
//! `webhook-signature` with `INTEGRATIONS_EVENTS_SECRET`), at least once,
//! in order per integration, by one replica at a time (the `events` lease).
//! `integrations serve` runs it; without a URL it only purges old events.

use std::time::{Duration, SystemTime};

use serde_json::{Map, Value, json};
use store::{PendingEvent, Store};
use zeroize::Zeroizing;

/// The lease whose holder delivers.
const LEASE: &str = "events";
/// How long a lease lasts unless renewed: a replica that dies stops
/// delivering, and another takes over, within this.
const LEASE_TTL: Duration = Duration::from_secs(30);
/// How often a replica looks at the outbox (and renews its lease).
const POLL: Duration = Duration::from_secs(1);
/// The events read at once.
const BATCH: i64 = 100;
/// How long one attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an event is kept: a receiver that takes none for this long
/// loses the oldest.
const RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// How often old events are purged.
const PURGE_EVERY: Duration = Duration::from_secs(3600);
/// The waits after a failed attempt, by attempts made; the last repeats.
const BACKOFF: [Duration; 6] = [
    Duration::from_secs(5),
    Duration::from_secs(30),
    Duration::from_secs(120),
    Duration::from_secs(600),
    Duration::from_secs(1800),
    Duration::from_secs(3600),
];

/// Where events go, from the environment.
pub struct Receiver {
    url: reqwest::Url,
    secret: Zeroizing<String>,
    http: reqwest::Client,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("url", &self.url.as_str())
            .finish_non_exhaustive()
    }
}

impl Receiver {
    /// `INTEGRATIONS_EVENTS_URL` (https, or http on loopback) with
    /// `INTEGRATIONS_EVENTS_SECRET` (a `whsec_` secret); `None` without a
    /// URL; an error that says which is wrong otherwise.
    pub fn from_env() -> anyhow::Result<Option<Self>> {
        let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
        let Some(url) = var("INTEGRATIONS_EVENTS_URL") else {
            return Ok(None);
        };
        let url = reqwest::Url::parse(&url)
            .ok()
            .filter(model::endpoint::https_or_loopback)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "INTEGRATIONS_EVENTS_URL must be an https:// URL (http:// only to this machine)"
                )
            })?;
        let secret = Zeroizing::new(var("INTEGRATIONS_EVENTS_SECRET").ok_or_else(|| {
            anyhow::anyhow!("INTEGRATIONS_EVENTS_URL needs INTEGRATIONS_EVENTS_SECRET (a whsec_ secret) to sign the events")
        })?);
        anyhow::ensure!(
            secret.starts_with("whsec_")
                && providers::signature::sign_standard(&secret, "evt", 0, b"").is_ok(),
            "INTEGRATIONS_EVENTS_SECRET must be a whsec_ secret (whsec_ and base64)"
        );
        let http = reqwest::Client::builder()
            .timeout(ATTEMPT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Some(Self { url, secret, http }))
    }

    /// One attempt at `event`: `Ok` when the receiver took it (2xx), else
    /// why not (no secret in it) and the wait it asked for.
    async fn send(&self, event: &PendingEvent) -> Result<(), (String, Option<Duration>)> {
        let body = serde_json::to_vec(&payload(event)).unwrap_or_default();
        let timestamp = model::clock::unix_now().max(0) as u64;
        let signature =
            providers::signature::sign_standard(&self.secret, &event.id, timestamp, &body)
                .map_err(|_| ("INTEGRATIONS_EVENTS_SECRET is not usable".to_string(), None))?;
        let sent = self
            .http
            .post(self.url.clone())
            .header("content-type", "application/json")
            .header("webhook-id", &event.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await;
        match sent {
            Ok(answer) if answer.status().is_success() => Ok(()),
            Ok(answer) => Err((
                format!("the receiver answered {}", answer.status().as_u16()),
                providers::http::retry_after(answer.headers()),
            )),
            Err(e) => Err((
                format!("the receiver could not be reached: {}", e.without_url()),
                None,
            )),
        }
    }
}

/// What the receiver gets for `event`: its type, when it happened, and the
/// integration (`id`, `type`, `user_id`) with what the type adds.
pub fn payload(event: &PendingEvent) -> Value {
    let mut data = Map::new();
    data.insert("id".into(), event.integration_id.clone().into());
    data.insert("type".into(), event.integration_type.clone().into());
    data.insert("user_id".into(), event.user_id.clone().into());
    if let Ok(Value::Object(more)) = serde_json::from_str::<Value>(&event.data) {
        for (key, value) in more {
            if !value.is_null() {
                data.entry(key).or_insert(value);
            }
        }
    }
    json!({"type": event.kind, "timestamp": event.occurred_at, "data": data})
}

/// The wait after `attempts` failed attempts, or what the receiver asked
/// for (at least a second, at most the longest backoff).
fn retry_in(attempts: i64, asked: Option<Duration>) -> Duration {
    let last = BACKOFF.len() - 1;
    let scheduled = BACKOFF[usize::try_from(attempts).unwrap_or(0).min(last)];
    asked.map_or(scheduled, |asked| {
        asked.clamp(Duration::from_secs(1), BACKOFF[last])
    })
}

/// The outbox's worker in one process.
pub struct Deliverer {
    store: Store,
    receiver: Option<Receiver>,
    holder: String,
}

impl Deliverer {
    /// A worker over `store`, delivering to `receiver` when there is one.
    pub fn new(store: Store, receiver: Option<Receiver>) -> Self {
        let holder = format!("{}-{}", std::process::id(), model::ids::random_token(12));
        Self {
            store,
            receiver,
            holder,
        }
    }

    /// Runs until the process ends: delivers while this replica holds the
    /// lease, and purges events past their retention.
    pub async fn run(&self) {
        let mut purged_at: Option<tokio::time::Instant> = None;
        loop {
            if purged_at.is_none_or(|at| at.elapsed() >= PURGE_EVERY) {
                self.purge().await;
                purged_at = Some(tokio::time::Instant::now());
            }
            if let Some(receiver) = &self.receiver
                && let Err(e) = self.round(receiver).await
            {
                tracing::warn!(error = %e, "the events outbox could not be read");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Gives the lease up, so that another replica delivers at once.
    pub async fn stop(&self) {
        if self.receiver.is_some()
            && let Err(e) = self.store.release_lease(LEASE, &self.holder).await
        {
            tracing::warn!(error = %e, "the events lease was not given up");
        }
    }

    /// One look at the outbox: while holding the lease, the oldest
    /// undelivered event of each integration, when due, is attempted, in
    /// outbox order (the next of an integration, the round after).
    async fn round(&self, receiver: &Receiver) -> Result<(), store::StoreError> {
        if !self
            .store
            .take_lease(LEASE, &self.holder, LEASE_TTL)
            .await?
        {
            return Ok(());
        }
        for event in self.store.due_events(BATCH).await? {
            // Still ours: an attempt may have taken a while.
            if !self
                .store
                .take_lease(LEASE, &self.holder, LEASE_TTL)
                .await?
            {
                return Ok(());
            }
            match receiver.send(&event).await {
                Ok(()) => self.store.event_delivered(event.seq).await?,
                Err((why, asked)) => {
                    let wait = retry_in(event.attempts, asked);
                    tracing::warn!(
                        event = %event.id,
                        integration = %event.integration_id,
                        attempts = event.attempts + 1,
                        retry_in_s = wait.as_secs(),
                        error = %why,
                        "an event was not delivered"
                    );
                    self.store
                        .event_failed(event.seq, SystemTime::now() + wait, &why)
                        .await?;
                }
            }
        }
        Ok(())
    }

    async fn purge(&self) {
        match self.store.purge_events(SystemTime::now() - RETENTION).await {
            Ok(purged) if purged.dropped > 0 => tracing::warn!(
                dropped = purged.dropped,
                delivered = purged.delivered,
                "events older than 7 days were purged, some never delivered"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "old events were not purged"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(data: &str) -> PendingEvent {
        PendingEvent {
            seq: 1,
            id: "evt_1".into(),
            kind: "integration.needs_reauth".into(),
            integration_id: "int_1".into(),
            integration_type: "gmail".into(),
            user_id: "u1".into(),
            occurred_at: "2026-12-05T10:00:00.000000Z".into(),
            data: data.into(),
            attempts: 0,
            next_attempt_at: "2026-12-05T10:00:00.000000Z".into(),
        }
    }

    #[test]
    fn a_payload_names_the_integration_and_keeps_what_its_type_adds() {
        let body = payload(&event(
            r#"{"label":"me@example.com","reason":"provider_refused","message":null,"id":"forged"}"#,
        ));
        assert_eq!(
            body,
            json!({"type": "integration.needs_reauth", "timestamp": "2026-12-05T10:00:00.000000Z",
                   "data": {"id": "int_1", "type": "gmail", "user_id": "u1",
                            "label": "me@example.com", "reason": "provider_refused"}})
        );
    }

    #[test]
    fn waits_grow_and_a_receivers_ask_is_bounded() {
        assert_eq!(retry_in(0, None), Duration::from_secs(5));
        assert_eq!(retry_in(2, None), Duration::from_secs(120));
        assert_eq!(retry_in(99, None), Duration::from_secs(3600));
        assert_eq!(retry_in(0, Some(Duration::ZERO)), Duration::from_secs(1));
        assert_eq!(
            retry_in(0, Some(Duration::from_secs(86_400 * 365))),
            Duration::from_secs(3600)
        );
    }
}
