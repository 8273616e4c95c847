//! The memory the MCP endpoints' request bodies may take at once: a
//! process-wide byte budget (`MCP_BODY_BUDGET_BYTES`) and each user's share
//! of it. A body's first [`FREE`] bytes are its connection's (the peak-RSS
//! bound counts them there); past them, it is read only into bytes reserved
//! as they arrive (its buffer, grown at most twice what came, never past its
//! `Content-Length`), so a length announced and not sent holds nothing of
//! the budget. What rmcp will build from a body (its strings again, and each
//! JSON value it holds) is reserved once it has come, before it is served.
//! A reservation that does not come within a bounded wait refuses the
//! request, the rest of its body unread; one larger than a user's whole
//! share refuses it at once. So the bodies buffered and parsed at once never
//! take more than the budget and their connections' terms, whatever clients
//! send, and the reservation is held until the request is answered.
//!
//! A quarter of the budget is kept for users' first requests: a user's
//! first reservation takes its first [`KEPT_EACH`] (a small call's whole
//! cost) from any free bytes, everything else only from the other three
//! quarters ([`Pool`]). So users whose slow calls hold large parsed bodies
//! leave room for another user's small call, unless a quarter of the budget
//! over [`KEPT_EACH`] of them (64 with the default budget) are busy at once.

use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use futures_util::StreamExt;
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::fair::{Held, Pool, Share, Shares};

/// The largest request body an MCP endpoint reads.
pub const MAX_BODY: usize = 4 * 1024 * 1024;

/// The bytes every MCP endpoint of a process may hold in request bodies at
/// once unless `MCP_BODY_BUDGET_BYTES` says otherwise.
pub const DEFAULT_BUDGET: usize = 64 * 1024 * 1024;

/// The smallest budget, and the smallest share of a user: one largest body,
/// read and parsed (its bytes twice, and its values).
pub const MIN_BUDGET: usize = 3 * MAX_BODY;

/// What one JSON value of a body costs once rmcp has parsed it (a
/// `serde_json::Value` of 32 bytes, a map entry's key and tree node, an
/// array's spare capacity, and serde's buffered copy of an untagged message
/// before it is typed).
const VALUE_COST: usize = 160;

/// The bytes of a body its connection's term of the peak-RSS bound covers
/// (docs/http-mode.md, "Limits"): read without a reservation, into a buffer
/// of this much (or its `Content-Length`, when less), then grown to twice
/// what it holds each time it needs more.
pub const FREE: usize = 64 * 1024;

/// What a user's first reservation may take of the quarter of the budget
/// kept for first reservations: more than a small tool call costs, read and
/// parsed.
pub const KEPT_EACH: usize = 256 * 1024;

/// Reservations are counted in KiB.
const UNIT: usize = 1024;

/// Why a request was not served: its body not read, or no turn for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Larger than [`MAX_BODY`], or costing more once parsed than a user's
    /// whole share.
    TooLarge,
    /// Its user's share stayed taken for the whole wait.
    UserBusy,
    /// The process's budget stayed taken for the whole wait.
    ProcessBusy,
    /// The connection broke before the body was whole.
    Broken,
    /// Every turn of the process (`MCP_MAX_IN_FLIGHT`) stayed taken for the
    /// whole wait.
    NoTurn,
}

/// The process's byte budget and its users' shares of it.
pub struct BodyBudget {
    /// The whole budget, a quarter kept for users' first reservations.
    process: Arc<Pool>,
    users: Arc<Shares>,
    /// How long a request waits for its bytes.
    wait: Duration,
}

impl BodyBudget {
    /// A budget of `bytes` (at least [`MIN_BUDGET`]), of which a user holds
    /// at most a quarter (at least [`MIN_BUDGET`]); a request waits at most
    /// `wait` for its bytes.
    pub fn new(bytes: usize, wait: Duration) -> Self {
        let bytes = bytes.max(MIN_BUDGET);
        let user = (bytes / 4).max(MIN_BUDGET);
        Self {
            process: Pool::new(units(bytes), units(KEPT_EACH)),
            users: Shares::new(units(user)),
            wait,
        }
    }

    /// Reads `body` (of `length` bytes, when known) for `user`, past its
    /// first [`FREE`] bytes into bytes reserved as they come; the
    /// reservation (then also of what it parses into) comes back with it, to
    /// be held until the request is answered.
    pub async fn read(
        &self,
        user: &str,
        body: Body,
        length: Option<u64>,
    ) -> Result<(Bytes, Reservation), Refused> {
        let most = match length {
            Some(n) if n > MAX_BODY as u64 => return Err(Refused::TooLarge),
            Some(n) => n as usize,
            None => MAX_BODY,
        };
        let mut reserved = self.reserve(user, 0).await?;
        let mut buffer: Vec<u8> = Vec::with_capacity(most.min(FREE));
        let mut chunks = body.into_data_stream();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|_| Refused::Broken)?;
            let needed = buffer.len() + chunk.len();
            if needed > MAX_BODY {
                return Err(Refused::TooLarge);
            }
            if needed > buffer.capacity() {
                // Past FREE: the whole buffer is reserved from here on.
                let next = (buffer.capacity() * 2).min(most).max(needed);
                self.grow(&mut reserved, next).await?;
                buffer.reserve_exact(next - buffer.len());
            }
            buffer.extend_from_slice(&chunk);
        }
        // What rmcp builds from it: its strings once more, and its values.
        let parsed = buffer.len() + json_values(&buffer).saturating_mul(VALUE_COST);
        self.grow(&mut reserved, buffer.capacity().saturating_add(parsed))
            .await?;
        Ok((Bytes::from(buffer), reserved))
    }

    /// `bytes` of `user`'s share and of the process's budget.
    async fn reserve(&self, user: &str, bytes: usize) -> Result<Reservation, Refused> {
        let wanted = units(bytes);
        if wanted > self.users.limit() {
            return Err(Refused::TooLarge);
        }
        let share = self
            .users
            .take(user, wanted, self.wait)
            .await
            .ok_or(Refused::UserBusy)?;
        let process = self
            .process
            .take(user, wanted, self.wait)
            .await
            .ok_or(Refused::ProcessBusy)?;
        Ok(Reservation {
            user: share,
            process,
        })
    }

    /// Grows `reserved` to `bytes` in all.
    async fn grow(&self, reserved: &mut Reservation, bytes: usize) -> Result<(), Refused> {
        let more = units(bytes).saturating_sub(reserved.user.units());
        if reserved.user.units().saturating_add(more) > self.users.limit() {
            return Err(Refused::TooLarge);
        }
        if !reserved.user.grow(more, self.wait).await {
            return Err(Refused::UserBusy);
        }
        if !reserved.process.grow(more, self.wait).await {
            return Err(Refused::ProcessBusy);
        }
        Ok(())
    }
}

/// Bytes of a user's share and of the process's budget, given back when
/// dropped.
pub struct Reservation {
    user: Share,
    process: Held,
}

/// `bytes` in whole units.
fn units(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(UNIT)).unwrap_or(u32::MAX)
}

/// The JSON values `body` holds (each member of an object counts once more,
/// for its key), or, when it does not parse, those read before the error:
/// what a parser builds before it gives up.
fn json_values(body: &[u8]) -> usize {
    let values = Cell::new(0);
    let mut parser = serde_json::Deserializer::from_slice(body);
    let _ = Counted(&values).deserialize(&mut parser);
    values.get()
}

/// Counts the values of one JSON value into its cell, building nothing.
struct Counted<'c>(&'c Cell<usize>);

impl Counted<'_> {
    fn one<E>(&self) -> Result<(), E> {
        self.0.set(self.0.get() + 1);
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for Counted<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Counted<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        self.one()
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        self.one()
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        self.one()
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        self.one()
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        self.one()
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        self.one()
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.one()?;
        while seq.next_element_seed(Counted(self.0))?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.one()?;
        while map.next_key::<IgnoredAny>()?.is_some() {
            self.one()?;
            map.next_value_seed(Counted(self.0))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Duration = Duration::from_millis(50);

    #[test]
    fn every_value_and_member_counts() {
        assert_eq!(json_values(br#"{"a":[1,2.5,"x",null,true],"b":{}}"#), 10);
        assert_eq!(json_values(b"[0,0,0"), 4, "those read before the error");
        assert_eq!(json_values(b""), 0);
    }

    /// A body of `len` bytes that does not say its length.
    fn chunked(len: usize) -> Body {
        let chunks: Vec<Result<Bytes, std::io::Error>> = vec![b' '; len]
            .chunks(100_000)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        Body::from_stream(futures_util::stream::iter(chunks))
    }

    #[tokio::test]
    async fn a_body_is_read_only_within_its_users_share_and_the_budget() {
        let big = vec![b' '; MAX_BODY];
        let length = Some(MAX_BODY as u64);
        // Read and parsed, it holds two thirds of a's share (a quarter of
        // this budget)...
        let budget = BodyBudget::new(4 * MIN_BUDGET, WAIT);
        let (bytes, _held) = budget
            .read("a", Body::from(big.clone()), length)
            .await
            .unwrap();
        assert_eq!(bytes.len(), MAX_BODY);
        let refused = budget.read("a", chunked(MAX_BODY), None).await.err();
        assert_eq!(refused, Some(Refused::UserBusy));
        // ... and of the smallest budget, all but its first 256 KiB from the
        // three quarters not kept for first reservations.
        let budget = BodyBudget::new(MIN_BUDGET, WAIT);
        let (_, held) = budget
            .read("a", Body::from(big.clone()), length)
            .await
            .unwrap();
        let refused = budget
            .read("b", Body::from(big.clone()), length)
            .await
            .err();
        assert_eq!(refused, Some(Refused::ProcessBusy));
        drop(held);
        let (bytes, _held) = budget.read("b", chunked(MAX_BODY), None).await.unwrap();
        assert_eq!(&bytes[..], &big[..]);
        let refused = budget
            .read("c", Body::empty(), Some(MAX_BODY as u64 + 1))
            .await;
        assert_eq!(refused.err(), Some(Refused::TooLarge));
    }

    #[tokio::test]
    async fn a_users_first_small_call_finds_room_in_a_budget_others_hold() {
        let budget = BodyBudget::new(MIN_BUDGET, WAIT);
        let big = vec![b' '; MAX_BODY];
        let held = budget
            .read("a", Body::from(big), Some(MAX_BODY as u64))
            .await;
        let _a = held.unwrap();
        // A third of the budget is free, but not of the three quarters that
        // all but a user's first 256 KiB come from.
        let mid = vec![b' '; MAX_BODY * 3 / 8];
        let length = Some(mid.len() as u64);
        let refused = budget.read("b", Body::from(mid), length).await.err();
        assert_eq!(refused, Some(Refused::ProcessBusy));
        let small = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}"#;
        let mut calls = Vec::new();
        for user in ["b", "c", "d"] {
            let body = Body::from(&small[..]);
            let read = budget.read(user, body, Some(small.len() as u64)).await;
            calls.push(read.unwrap());
        }
    }

    #[tokio::test]
    async fn a_length_announced_and_not_sent_holds_nothing_of_the_budget() {
        let budget = Arc::new(BodyBudget::new(MIN_BUDGET, WAIT));
        let length = Some(MAX_BODY as u64);
        let mut announced = tokio::task::JoinSet::new();
        for user in ["a", "b", "c"] {
            let budget = Arc::clone(&budget);
            let never: Body =
                Body::from_stream(futures_util::stream::pending::<Result<Bytes, std::io::Error>>());
            announced.spawn(async move { budget.read(user, never, length).await.is_ok() });
        }
        tokio::task::yield_now().await;
        let big = vec![b' '; MAX_BODY];
        let read = budget.read("d", Body::from(big), length).await;
        assert!(read.is_ok(), "{:?}", read.err());
        announced.abort_all();
    }

    #[tokio::test]
    async fn a_body_of_many_small_values_costs_what_it_parses_into() {
        let budget = BodyBudget::new(MIN_BUDGET, WAIT);
        let zeros = format!("[{}0]", "0,".repeat(500_000));
        let refused = budget
            .read("a", Body::from(zeros.clone()), Some(zeros.len() as u64))
            .await
            .err();
        assert_eq!(refused, Some(Refused::TooLarge));
    }
}
