//! The health keeper: checks every enabled connection before an agent
//! needs it (`ops::probe::check`: a Gmail refresh, which also keeps the
//! grant alive; Teller's accounts; Slack's `auth.test`; Telegram's
//! `getMe`; Resend's key; a login to the user's SMTP server), once per
//! `HEALTH_INTERVAL` each, a few at a time, spread by jitter. Each check is
//! claimed in the store first, so one replica checks a connection at a
//! time. A refusal marks the row `needs_reauth` (the store writes the
//! event); a row its provider had refused that passes again is active
//! again (`integration.reconnected`). `integrations serve` runs it;
//! `integrations health --once` runs one round, for cron.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mcp_notify::deliver::Providers;
use model::{Integration, ReauthReason, Status};
use store::{HealthResult, SidecarStore, Store};
use tokio::task::JoinSet;
use vault::Keyring;

use crate::ops::probe::{self, Verdict};

/// Checked at most this often when `HEALTH_INTERVAL` is not set: often
/// enough that a Gmail grant is refreshed several times a day.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(6 * 3600);
/// Checks running at once when `HEALTH_CONCURRENCY` is not set.
const DEFAULT_CONCURRENCY: usize = 4;
/// The connections read at once.
const BATCH: i64 = 200;

/// What one round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Round {
    pub checked: usize,
    pub healthy: usize,
    /// Refused by their provider: marked `needs_reauth` now.
    pub marked: usize,
    /// Refused again, marked already.
    pub still_refused: usize,
    /// Passed again: active again.
    pub recovered: usize,
    /// The provider could not say.
    pub unknown: usize,
}

/// The keeper of one process.
pub struct Keeper {
    store: Store,
    sidecar: SidecarStore,
    keyring: Arc<Keyring>,
    providers: Arc<Providers>,
    interval: Duration,
    concurrency: usize,
}

impl Keeper {
    /// A keeper over `store` (whose sidecar view is `sidecar`), opening
    /// configs with `keyring`, from `HEALTH_INTERVAL` (`6h` by default;
    /// `2s`, `15m`, ...; `off` for none: `None`) and `HEALTH_CONCURRENCY`.
    pub fn from_env(
        store: Store,
        sidecar: SidecarStore,
        keyring: Arc<Keyring>,
    ) -> anyhow::Result<Option<Self>> {
        let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
        let interval = match var("HEALTH_INTERVAL").as_deref() {
            None => DEFAULT_INTERVAL,
            Some("off" | "0") => return Ok(None),
            Some(text) => humantime::parse_duration(text)
                .ok()
                .filter(|d| *d >= Duration::from_secs(1))
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "HEALTH_INTERVAL must be a duration of a second or more (6h, 15m, 2s) or off"
                    )
                })?,
        };
        let concurrency = match var("HEALTH_CONCURRENCY") {
            None => DEFAULT_CONCURRENCY,
            Some(text) => text
                .parse()
                .ok()
                .filter(|n| (1..=64).contains(n))
                .ok_or_else(|| {
                    anyhow::anyhow!("HEALTH_CONCURRENCY must be a number from 1 to 64")
                })?,
        };
        Ok(Some(Self {
            store,
            sidecar,
            keyring,
            providers: Arc::new(Providers::from_env()),
            interval,
            concurrency,
        }))
    }

    /// Runs until the process ends: a round whenever connections are due,
    /// looking a few times per interval (at most every 30 s).
    pub async fn run(&self) {
        let tick = (self.interval / 4).clamp(Duration::from_millis(250), Duration::from_secs(30));
        loop {
            match self.round().await {
                Ok(round) if round.checked > 0 => tracing::info!(
                    checked = round.checked,
                    marked = round.marked,
                    recovered = round.recovered,
                    unknown = round.unknown,
                    "connections checked"
                ),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "the connections due for a check could not be read")
                }
            }
            tokio::time::sleep(tick).await;
        }
    }

    /// Checks every connection due now that no other replica claimed,
    /// `concurrency` at a time.
    pub async fn round(&self) -> Result<Round, store::StoreError> {
        let mut round = Round::default();
        let due = self.store.due_health_checks(BATCH).await?;
        let mut running = JoinSet::new();
        for integration in due {
            if !self
                .store
                .claim_health_check(&integration.id, self.next_check())
                .await?
            {
                continue;
            }
            while running.len() >= self.concurrency {
                if let Some(Ok(found)) = running.join_next().await {
                    round.count(found);
                }
            }
            let (store, sidecar, keyring, providers) = (
                self.store.clone(),
                self.sidecar.clone(),
                self.keyring.clone(),
                self.providers.clone(),
            );
            running.spawn(async move {
                let verdict = probe::check(&providers, &keyring, &integration).await;
                settle(&store, &sidecar, &integration, verdict).await
            });
        }
        while let Some(found) = running.join_next().await {
            if let Ok(found) = found {
                round.count(found);
            }
        }
        Ok(round)
    }

    /// When a connection checked now is due again: the interval, give or
    /// take a tenth, so that checks spread out.
    fn next_check(&self) -> SystemTime {
        let mut byte = [0u8; 1];
        model::ids::random_bytes(&mut byte);
        let tenth = self.interval / 10;
        let jitter = tenth.mul_f64(f64::from(byte[0]) / 255.0 * 2.0);
        SystemTime::now() + self.interval - tenth + jitter
    }
}

/// What a check of one connection came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Found {
    Healthy,
    Marked,
    StillRefused,
    Recovered,
    Unknown,
}

impl Round {
    fn count(&mut self, found: Found) {
        self.checked += 1;
        match found {
            Found::Healthy => self.healthy += 1,
            Found::Marked => self.marked += 1,
            Found::StillRefused => self.still_refused += 1,
            Found::Recovered => self.recovered += 1,
            Found::Unknown => self.unknown += 1,
        }
    }
}

/// Records `verdict` on `integration` and acts on it: a refusal marks an
/// active row `needs_reauth`, a pass recovers a row its provider had
/// refused, each only while the row holds the config that was checked.
async fn settle(
    store: &Store,
    sidecar: &SidecarStore,
    integration: &Integration,
    verdict: Verdict,
) -> Found {
    let (result, detail) = match &verdict {
        Verdict::Healthy => (HealthResult::Ok, ""),
        Verdict::Refused(words) => (HealthResult::Refused, words.as_str()),
        Verdict::Unknown(words) => (HealthResult::Unknown, words.as_str()),
    };
    if let Err(e) = store.record_health(&integration.id, result, detail).await {
        tracing::warn!(integration = %integration.id, error = %e, "a check's result was not recorded");
    }
    let (id, sealed) = (&integration.id, &integration.sealed);
    let changed = match (&verdict, integration.status) {
        (Verdict::Refused(words), Status::Active) => {
            sidecar
                .mark_needs_reauth(id, sealed, ReauthReason::ProviderRefused, words)
                .await
        }
        (Verdict::Healthy, Status::NeedsReauth) => sidecar.mark_recovered(id, sealed).await,
        _ => Ok(false),
    };
    let changed = changed.unwrap_or_else(|e| {
        tracing::warn!(integration = %id, error = %e, "a check's verdict was not recorded on its row");
        false
    });
    match verdict {
        Verdict::Healthy if changed => Found::Recovered,
        Verdict::Healthy => Found::Healthy,
        Verdict::Refused(_) if changed => Found::Marked,
        Verdict::Refused(_) => Found::StillRefused,
        Verdict::Unknown(_) => Found::Unknown,
    }
}
