//! Fair shares of a process's shared work: each user (or any other key)
//! holds at most a set number of units of it at once (requests in flight,
//! bytes of request bodies being read, deliveries under way) and waits for
//! them a bounded time. A share counts work under way in this process, like
//! the turns it divides; it is never a rate (those live in the store).
//! A [`Pool`] divides a process's turns, or its bytes, so that keys already
//! busy leave some to a key that holds none.

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
        permits(self.permit.as_ref())
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
                merge(&mut self.permit, more);
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

/// A process's units of work (turns, bytes of bodies), a quarter of them
/// kept for keys that hold none: a key's first holding may take its first
/// `allowance` units from any free ones, everything else only from the
/// other three quarters. So `k` keys busy at once hold at most `k` ×
/// `allowance` units of the kept quarter, and a key with nothing under way
/// finds `allowance` units free as long as fewer than the kept quarter's
/// `allowance`s are held by other keys' first holdings. As turns (one unit
/// each, an allowance of one), a key's first turn may take any free one,
/// its second and later ones only the other three quarters.
pub struct Pool {
    limit: u32,
    allowance: u32,
    all: Arc<Semaphore>,
    /// The units taken beyond first holdings' allowances: all but the kept
    /// quarter.
    more: Arc<Semaphore>,
    /// Each key's holdings, held or waited for.
    held: Mutex<HashMap<String, u32>>,
}

impl Pool {
    /// `limit` units (at least one), a quarter of them (rounded down) kept
    /// for the first `allowance` units of keys' first holdings.
    pub fn new(limit: u32, allowance: u32) -> Arc<Self> {
        let limit = limit.max(1);
        Arc::new(Self {
            limit,
            allowance,
            all: Arc::new(Semaphore::new(limit as usize)),
            more: Arc::new(Semaphore::new((limit - limit / 4) as usize)),
            held: Mutex::default(),
        })
    }

    /// `units` for `key` within `wait`, or `None`.
    pub async fn take(self: &Arc<Self>, key: &str, units: u32, wait: Duration) -> Option<Held> {
        let first = {
            let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
            let count = held.entry(key.to_string()).or_default();
            *count += 1;
            *count == 1
        };
        // Counted from here: dropped unfinished, it is given back.
        let mut holding = Held {
            pool: Arc::clone(self),
            key: key.to_string(),
            allowance: if first { self.allowance } else { 0 },
            all: None,
            more: None,
        };
        holding.grow(units, wait).await.then_some(holding)
    }
}

/// Units of a [`Pool`], given back when dropped.
pub struct Held {
    pool: Arc<Pool>,
    key: String,
    /// The units it may take without taking them from the other three
    /// quarters too: the pool's allowance for a key's first holding, else 0.
    allowance: u32,
    all: Option<OwnedSemaphorePermit>,
    more: Option<OwnedSemaphorePermit>,
}

impl Held {
    /// The units held.
    pub fn units(&self) -> u32 {
        permits(self.all.as_ref())
    }

    /// Takes `units` more within `wait`; `false` (holding what it held) when
    /// they did not come in time, at once when the pool cannot hold that
    /// many.
    pub async fn grow(&mut self, units: u32, wait: Duration) -> bool {
        let held = self.units();
        if units == 0 {
            return true;
        }
        if held.saturating_add(units) > self.pool.limit {
            return false;
        }
        let allowed = self.allowance.saturating_sub(held).min(units);
        let beyond = units - allowed;
        let taken = async {
            // The three quarters first, so that no unit of the whole is held
            // while waiting for them.
            let more = match beyond {
                0 => None,
                n => Some(
                    Arc::clone(&self.pool.more)
                        .acquire_many_owned(n)
                        .await
                        .ok()?,
                ),
            };
            let all = Arc::clone(&self.pool.all)
                .acquire_many_owned(units)
                .await
                .ok()?;
            Some((more, all))
        };
        // Never closed: only the wait can end it.
        let Ok(Some((more, all))) = tokio::time::timeout(wait, taken).await else {
            return false;
        };
        merge(&mut self.all, all);
        if let Some(more) = more {
            merge(&mut self.more, more);
        }
        true
    }
}

/// The permits held in `permit`.
fn permits(permit: Option<&OwnedSemaphorePermit>) -> u32 {
    permit.map_or(0, |p| u32::try_from(p.num_permits()).unwrap_or(u32::MAX))
}

/// `more` permits into `held`.
fn merge(held: &mut Option<OwnedSemaphorePermit>, more: OwnedSemaphorePermit) {
    match held {
        Some(permit) => permit.merge(more),
        None => *held = Some(more),
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut held = self
            .pool
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.all = None;
        self.more = None;
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
        let turns = Pool::new(8, 1);
        // a takes the six turns beyond the kept two, and one more (its first).
        let mut held: Vec<Held> = Vec::new();
        for _ in 0..7 {
            held.push(turns.take("a", 1, NOW).await.unwrap());
        }
        assert!(turns.take("a", 1, SOON).await.is_none(), "a's eighth");
        let b = turns.take("b", 1, NOW).await.unwrap();
        assert!(turns.take("b", 1, SOON).await.is_none(), "b's second");
        assert!(turns.take("c", 1, SOON).await.is_none(), "all eight held");
        drop(b);
        assert!(turns.take("c", 1, NOW).await.is_some());
        held.clear();
        assert!(turns.held.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_first_holding_takes_its_allowance_from_the_kept_quarter_and_no_more() {
        // 16 units, 4 kept; a key's first holding takes up to 2 of them.
        let bytes = Pool::new(16, 2);
        let mut a = bytes.take("a", 12, NOW).await.unwrap();
        assert!(!a.grow(3, SOON).await, "past the three quarters");
        assert!(a.grow(2, NOW).await, "the last two of the three quarters");
        let b = bytes.take("b", 3, SOON).await;
        assert!(b.is_none(), "b's first 2 are kept, its third is not");
        let b = bytes.take("b", 2, NOW).await.unwrap();
        assert!(
            bytes.take("b", 1, SOON).await.is_none(),
            "b's second holding"
        );
        assert!(bytes.take("c", 1, SOON).await.is_none(), "all sixteen held");
        drop(b);
        assert!(bytes.take("c", 2, NOW).await.is_some());
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
