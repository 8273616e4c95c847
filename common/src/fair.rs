//! Fair shares of a process's shared work: each user (or any other key)
//! holds at most a set number of units of it at once (requests in flight,
//! bytes of request bodies being read, deliveries under way) and waits for
//! them a bounded time. A share counts work under way in this process, like
//! the turns it divides; it is never a rate (those live in the store).
//! [`Turns`] divides a process's turns so that keys already busy leave some
//! to a key that holds none.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// One share of `limit` units for each key, made when a key first asks and
/// dropped when its last unit is given back.
pub struct Shares {
    limit: u32,
    keys: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl Shares {
    /// Shares of `limit` units each (at least one).
    pub fn new(limit: u32) -> Arc<Self> {
        Arc::new(Self {
            limit: limit.max(1),
            keys: Mutex::default(),
        })
    }

    /// The units one key may hold at once.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// `units` of `key`'s share, taken within `wait`; `None` when they did
    /// not come in time, at once when `units` is more than a whole share.
    pub async fn take(self: &Arc<Self>, key: &str, units: u32, wait: Duration) -> Option<Share> {
        if units > self.limit {
            return None;
        }
        let semaphore = {
            let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
            let limit = self.limit as usize;
            Arc::clone(
                keys.entry(key.to_string())
                    .or_insert_with(|| Arc::new(Semaphore::new(limit))),
            )
        };
        let mut share = Share {
            shares: Arc::clone(self),
            key: key.to_string(),
            semaphore,
            permit: None,
        };
        share.grow(units, wait).await.then_some(share)
    }

    /// How many keys hold or wait for units now.
    #[cfg(test)]
    fn keys(&self) -> usize {
        self.keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// Units of one key's share, given back when dropped.
pub struct Share {
    shares: Arc<Shares>,
    key: String,
    semaphore: Arc<Semaphore>,
    permit: Option<OwnedSemaphorePermit>,
}

impl Share {
    /// The units held.
    pub fn units(&self) -> u32 {
        self.permit
            .as_ref()
            .map_or(0, |p| u32::try_from(p.num_permits()).unwrap_or(u32::MAX))
    }

    /// Takes `units` more of the same share within `wait`; `false` (holding
    /// what it held) when they did not come in time, at once when the share
    /// cannot hold that many.
    pub async fn grow(&mut self, units: u32, wait: Duration) -> bool {
        if units == 0 {
            return true;
        }
        if self.units().saturating_add(units) > self.shares.limit {
            return false;
        }
        let more = Arc::clone(&self.semaphore).acquire_many_owned(units);
        match tokio::time::timeout(wait, more).await {
            Ok(Ok(more)) => {
                match &mut self.permit {
                    Some(permit) => permit.merge(more),
                    None => self.permit = Some(more),
                }
                true
            }
            // Never closed: only the wait can end it.
            _ => false,
        }
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        let mut keys = self
            .shares
            .keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.permit = None;
        // Held by the map and by this share only: no other share of the key
        // holds units or waits for them (each clones it under this lock).
        if Arc::strong_count(&self.semaphore) == 2 {
            keys.remove(&self.key);
        }
    }
}

/// A process's turns (requests served at once), a quarter of them kept for
/// keys that hold none: a key's first turn may take any free one, its
/// second and later ones only the other three quarters. So `k` keys busy at
/// once hold at most `k` + three quarters of the turns, and a key with
/// nothing under way finds a turn free as long as fewer than a quarter of
/// the turns' number of keys are busy.
pub struct Turns {
    all: Arc<Semaphore>,
    /// The turns a key may hold beyond its first: all but the kept quarter.
    more: Arc<Semaphore>,
    /// Each key's turns, held or waited for.
    held: Mutex<HashMap<String, u32>>,
}

impl Turns {
    /// `limit` turns (at least one), a quarter of them (rounded down) kept
    /// for keys' first turns.
    pub fn new(limit: usize) -> Arc<Self> {
        let limit = limit.max(1);
        Arc::new(Self {
            all: Arc::new(Semaphore::new(limit)),
            more: Arc::new(Semaphore::new(limit - limit / 4)),
            held: Mutex::default(),
        })
    }

    /// A turn for `key` within `wait`, or `None`.
    pub async fn take(self: &Arc<Self>, key: &str, wait: Duration) -> Option<Turn> {
        let first = {
            let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
            let count = held.entry(key.to_string()).or_default();
            *count += 1;
            *count == 1
        };
        // Counted from here: dropped unfinished, it is given back.
        let mut turn = Turn {
            turns: Arc::clone(self),
            key: key.to_string(),
            permits: Vec::with_capacity(2),
        };
        let taken = async {
            if !first {
                turn.permits
                    .push(Arc::clone(&self.more).acquire_owned().await.ok()?);
            }
            turn.permits
                .push(Arc::clone(&self.all).acquire_owned().await.ok()?);
            Some(())
        };
        // Never closed: only the wait can end it.
        tokio::time::timeout(wait, taken).await.ok()??;
        Some(turn)
    }
}

/// One turn of [`Turns`], given back when dropped.
pub struct Turn {
    turns: Arc<Turns>,
    key: String,
    permits: Vec<OwnedSemaphorePermit>,
}

impl Drop for Turn {
    fn drop(&mut self) {
        let mut held = self
            .turns
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.permits.clear();
        if let Some(count) = held.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Duration = Duration::ZERO;
    const SOON: Duration = Duration::from_millis(50);

    #[tokio::test]
    async fn a_key_holds_at_most_its_share_and_others_keep_theirs() {
        let shares = Shares::new(2);
        let a1 = shares.take("a", 1, NOW).await.unwrap();
        let _a2 = shares.take("a", 1, NOW).await.unwrap();
        assert!(shares.take("a", 1, SOON).await.is_none());
        let _b = shares.take("b", 2, NOW).await.unwrap();
        drop(a1);
        assert!(shares.take("a", 1, NOW).await.is_some());
        assert!(
            shares.take("c", 3, NOW).await.is_none(),
            "more than a share"
        );
    }

    #[tokio::test]
    async fn a_share_grows_within_its_limit_and_waits_for_what_is_given_back() {
        let shares = Shares::new(8);
        let mut one = shares.take("a", 4, NOW).await.unwrap();
        let other = shares.take("a", 3, NOW).await.unwrap();
        assert!(!one.grow(5, NOW).await, "past the limit");
        assert!(!one.grow(2, SOON).await, "only one unit is free");
        assert_eq!(one.units(), 4);
        let freed = tokio::spawn(async move {
            tokio::time::sleep(SOON).await;
            drop(other);
        });
        assert!(one.grow(2, Duration::from_secs(10)).await);
        assert_eq!(one.units(), 6);
        freed.await.unwrap();
    }

    #[tokio::test]
    async fn a_quarter_of_the_turns_is_kept_for_keys_holding_none() {
        let turns = Turns::new(8);
        // a takes the six turns beyond the kept two, and one more (its first).
        let mut held: Vec<Turn> = Vec::new();
        for _ in 0..7 {
            held.push(turns.take("a", NOW).await.unwrap());
        }
        assert!(turns.take("a", SOON).await.is_none(), "a's eighth");
        let b = turns.take("b", NOW).await.unwrap();
        assert!(turns.take("b", SOON).await.is_none(), "b's second");
        assert!(turns.take("c", SOON).await.is_none(), "all eight held");
        drop(b);
        assert!(turns.take("c", NOW).await.is_some());
        held.clear();
        assert!(turns.held.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_key_is_forgotten_when_nothing_holds_or_waits_for_its_units() {
        let shares = Shares::new(1);
        let held = shares.take("a", 1, NOW).await.unwrap();
        let waiting = {
            let shares = Arc::clone(&shares);
            tokio::spawn(async move { shares.take("a", 1, Duration::from_secs(10)).await })
        };
        tokio::time::sleep(SOON).await;
        drop(held);
        let second = waiting.await.unwrap().unwrap();
        assert_eq!(shares.keys(), 1);
        drop(second);
        assert!(shares.take("b", 1, NOW).await.is_some());
        assert_eq!(shares.keys(), 0);
    }
}
