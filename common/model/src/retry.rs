//! Waiting between the attempts of one call to a provider: an exponential
//! backoff, or the provider's `Retry-After` when it gives one, and never a
//! wait that reaches past the call's deadline, however long it asks for.
//! Shared by every provider client (Teller, Gmail, and each notification
//! channel), so that the arithmetic is written once and cannot overflow.

use std::time::{Duration, Instant};

/// The first backoff step; each retry doubles it up to [`MAX_STEP`].
const FIRST_STEP: Duration = Duration::from_millis(250);
/// The longest backoff step.
const MAX_STEP: Duration = Duration::from_secs(4);

/// The retries of one call, all inside its deadline.
#[derive(Debug, Clone)]
pub struct Backoff {
    deadline: Instant,
    step: Duration,
    retries: u32,
    max_retries: u32,
}

impl Backoff {
    /// Retries until `deadline`, as many as fit.
    pub fn until(deadline: Instant) -> Self {
        Self {
            deadline,
            step: FIRST_STEP,
            retries: 0,
            max_retries: u32::MAX,
        }
    }

    /// At most `max` retries.
    pub fn max_retries(mut self, max: u32) -> Self {
        self.max_retries = max;
        self
    }

    /// What is left of the call's time.
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// How long to wait before the next attempt: `asked` (the provider's
    /// `Retry-After`) or the next backoff step. `None` when no retry is left
    /// or the wait would not end before the deadline: the call gives up now
    /// instead of sleeping into its deadline.
    pub fn next_wait(&mut self, asked: Option<Duration>) -> Option<Duration> {
        if self.retries >= self.max_retries {
            return None;
        }
        let wait = asked.unwrap_or(self.step);
        self.step = self.step.saturating_mul(2).min(MAX_STEP);
        if wait >= self.remaining() {
            return None;
        }
        self.retries += 1;
        Some(wait)
    }
}

/// A `Retry-After` header's value in seconds, if it is one (an HTTP date is
/// not honoured: the backoff applies).
pub fn retry_after(value: Option<&str>) -> Option<Duration> {
    value?.trim().parse().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_and_never_reach_the_deadline() {
        let mut backoff = Backoff::until(Instant::now() + Duration::from_secs(2));
        let steps: Vec<_> = std::iter::from_fn(|| backoff.next_wait(None)).collect();
        assert_eq!(
            steps,
            [250, 500, 1000].map(Duration::from_millis),
            "the next, 2 s, would reach the deadline"
        );
        let mut capped = Backoff::until(Instant::now() + Duration::from_secs(60)).max_retries(2);
        assert!(capped.next_wait(None).is_some() && capped.next_wait(None).is_some());
        assert_eq!(capped.next_wait(None), None);
    }

    #[test]
    fn an_absurd_retry_after_gives_up_at_once() {
        let asked = retry_after(Some(" 18446744073709551615 "));
        assert_eq!(asked, Some(Duration::from_secs(u64::MAX)));
        let mut backoff = Backoff::until(Instant::now() + Duration::from_secs(15));
        assert_eq!(backoff.next_wait(asked), None);
        assert_eq!(
            backoff.next_wait(Some(Duration::from_secs(1))),
            Some(Duration::from_secs(1))
        );
        assert_eq!(retry_after(Some("18446744073709551616")), None);
        assert_eq!(retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT")), None);
        assert_eq!(retry_after(None), None);
    }
}
