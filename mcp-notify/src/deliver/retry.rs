//! Bounded retries: every attempt inside one deadline, the waits between them
//! from [`model::retry::Backoff`] (`Retry-After` honoured when it fits).

use std::future::Future;
use std::time::Duration;

use model::retry::Backoff;
use reqwest::StatusCode;
use tokio::time::Instant;

use super::Failure;

/// How one attempt ended.
pub(crate) enum Attempt<T> {
    Done(T),
    /// Not delivered, safe to try again (after `after`, if the provider said).
    Retry {
        after: Option<Duration>,
        why: String,
    },
    Fail(Failure),
}

impl<T> Attempt<T> {
    /// A 429: the provider did not take it; again when it says (`after`).
    pub(crate) fn rate_limited(after: Option<Duration>) -> Self {
        Self::Retry {
            after,
            why: "is rate limiting (429)".into(),
        }
    }

    /// A 5xx (`status`) after which a retry cannot duplicate the message;
    /// again when the provider says (`after`).
    pub(crate) fn failing(status: StatusCode, after: Option<Duration>) -> Self {
        Self::Retry {
            after,
            why: format!("is failing ({status})"),
        }
    }
}

/// Runs `attempt` until it is done, fails, or `deadline` would pass.
/// `what` names the provider in the failure ("Slack").
pub(crate) async fn retrying<T, F, Fut>(
    deadline: Instant,
    what: &str,
    mut attempt: F,
) -> Result<(T, u32), Failure>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Attempt<T>>,
{
    let mut backoff = Backoff::until(deadline.into_std());
    let mut attempts = 0;
    loop {
        attempts += 1;
        let remaining = backoff.remaining();
        let gave_up = |why: &str| Failure {
            message: format!(
                "{what} {why}, after {attempts} attempt{}",
                if attempts == 1 { "" } else { "s" }
            ),
            attempts,
            reauth: false,
            unavailable: true,
            unknown: false,
        };
        match tokio::time::timeout(remaining, attempt()).await {
            Err(_) => return Err(gave_up("did not answer in time")),
            Ok(Attempt::Done(value)) => return Ok((value, attempts)),
            Ok(Attempt::Fail(mut failure)) => {
                failure.attempts = attempts;
                return Err(failure);
            }
            Ok(Attempt::Retry { after, why }) => {
                let Some(wait) = backoff.next_wait(after) else {
                    let why = match after {
                        Some(after) => format!(
                            "{why} and asked to wait {}s, longer than this call may take",
                            after.as_secs()
                        ),
                        None => why,
                    };
                    return Err(gave_up(&why));
                };
                tokio::time::sleep(wait).await;
            }
        }
    }
}
