//! MCP over streamable HTTP (rmcp's `StreamableHttpService`), behind a
//! capability-token check.
//!
//! Every HTTP request to `/mcp/<server>` carries `Authorization: Bearer
//! <token>`. Before its body is read, [`check`] re-reads the token's row
//! (known, not expired, not revoked, this server among its servers); the
//! request then takes one of its user's turns (`MCP_MAX_IN_FLIGHT_PER_USER`),
//! its body is read inside the memory budget ([`super::budget`]), it takes
//! one of the process's turns (`MCP_MAX_IN_FLIGHT`, a quarter of them kept
//! for users' first requests: [`Pool`]), and a tool call is
//! counted where the token is checked once more, as it runs. The agent's
//! [`Identity`] goes in the request's extensions, where
//! [`IdentitySource::Token`](super::IdentitySource::Token) finds it for the handler, which
//! then checks the grant exactly as on stdio. A refused token is a 401 (with
//! `WWW-Authenticate: Bearer`) or a 403, never a tool result; no verdict is
//! cached, so a revocation takes effect on the next request, and on a tool
//! call still waiting for its body or its turn.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rmcp::ServerHandler;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};

use model::Identity;
use store::{Prefetched, SidecarStore, TokenRefusal, capability_hash};

use super::Backing;
use super::budget::{self, BodyBudget, Refused};
use super::kept::Kept;
use crate::fair::{Pool, Shares};

pub use crate::budget::MAX_BODY;

/// The tool calls a token may make in a minute unless
/// `MCP_MAX_CALLS_PER_MINUTE` says otherwise.
pub const DEFAULT_MAX_CALLS_PER_MINUTE: i64 = 600;

/// The requests one process serves at once unless `MCP_MAX_IN_FLIGHT` says
/// otherwise. rmcp holds about 80 KiB for each request it serves; past this
/// many, requests wait their turn with only their head and body read. 128
/// keeps a process under 64 MiB with 1,000 agents calling flat out
/// (docs/performance.md); a call waiting on its provider holds its turn, so
/// a process whose calls mostly wait on slow providers wants more.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 128;

/// The requests of one user one process serves at once (reading their
/// bodies included) unless `MCP_MAX_IN_FLIGHT_PER_USER` says otherwise: an
/// eighth of [`DEFAULT_MAX_IN_FLIGHT`], so that one user's slow calls (a
/// webhook that answers late) leave the other users most of the turns.
pub const DEFAULT_MAX_IN_FLIGHT_PER_USER: usize = 16;

/// How long a request waits for one of its user's turns, for the bytes of
/// its body, or for a turn among the process's requests in flight, before it
/// is refused (429 past its user's share, 503 when the whole process's
/// budget or turns are taken).
const SHARE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The seconds a refused request is told to wait (`Retry-After`).
const RETRY_AFTER: u32 = 2;

/// The transport settings every MCP endpoint of one process shares.
#[derive(Clone)]
pub struct HttpConfig {
    rmcp: StreamableHttpServerConfig,
    /// Tool calls per token per minute; `None`: no limit.
    max_calls_per_minute: Option<i64>,
    /// The turns to be served, shared by every endpoint, a quarter kept for
    /// users' first requests; `None`: no limit.
    in_flight: Option<Arc<Pool>>,
    /// Each user's turns, from before the body is read; `None`: no limit.
    per_user: Option<Arc<Shares>>,
    /// The bytes of request bodies read and parsed at once.
    bodies: Arc<BodyBudget>,
    /// How long a body may take to arrive whole (`HTTP_BODY_TIMEOUT_MS`).
    body_deadline: std::time::Duration,
}

/// A count from the environment variable `name` (of `what`, for its error):
/// `default` when unset or empty, `None` for 0 (no limit), at most `max`.
fn limit_from_env(
    name: &str,
    default: usize,
    max: usize,
    what: &str,
) -> anyhow::Result<Option<usize>> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => match v.trim().parse::<usize>() {
            Ok(0) => Ok(None),
            Ok(n) if n <= max => Ok(Some(n)),
            _ => anyhow::bail!("{name} must be a number of {what} (0: no limit)"),
        },
        _ => Ok(Some(default)),
    }
}

impl HttpConfig {
    /// For a server bound to `bound`: `Host` must be a loopback name, the
    /// bound address, or one of `MCP_ALLOWED_HOSTS`; a request with an
    /// `Origin` must come from the server's own loopback origin or one of
    /// `MCP_ALLOWED_ORIGINS` (both comma-separated); a request without one
    /// (not a browser) passes. A token makes at most
    /// `MCP_MAX_CALLS_PER_MINUTE` tool calls a minute, the process serves at
    /// most `MCP_MAX_IN_FLIGHT` requests at once, a user at most
    /// `MCP_MAX_IN_FLIGHT_PER_USER` (0: no limit), and the bodies read at
    /// once take at most `MCP_BODY_BUDGET_BYTES`.
    pub fn from_env(bound: SocketAddr) -> anyhow::Result<Self> {
        let listed = |name: &str| -> Vec<String> {
            std::env::var(name)
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
                .collect()
        };
        let port = bound.port();
        let mut hosts: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
        if !bound.ip().is_unspecified() {
            hosts.push(bound.ip().to_string());
        }
        hosts.extend(listed("MCP_ALLOWED_HOSTS"));
        let mut origins: Vec<String> = ["localhost", "127.0.0.1", "[::1]"]
            .iter()
            .map(|host| format!("http://{host}:{port}"))
            .collect();
        origins.extend(listed("MCP_ALLOWED_ORIGINS"));
        let rmcp = StreamableHttpServerConfig::default()
            .with_allowed_hosts(hosts)
            .with_allowed_origins(origins)
            .enforce_origin_validation()
            .with_max_request_body_bytes(MAX_BODY)
            // Every request is served on its own, whatever protocol version
            // the client speaks: no MCP session lives in a process, so any
            // replica serves any request and no session id can be taken
            // over. The answer to a plain call is one JSON body.
            .with_legacy_session_mode(false)
            .with_json_response(true);
        let max_calls_per_minute = limit_from_env(
            "MCP_MAX_CALLS_PER_MINUTE",
            DEFAULT_MAX_CALLS_PER_MINUTE as usize,
            i64::MAX as usize,
            "tool calls",
        )?;
        let in_flight = limit_from_env(
            "MCP_MAX_IN_FLIGHT",
            DEFAULT_MAX_IN_FLIGHT,
            tokio::sync::Semaphore::MAX_PERMITS,
            "requests served at once",
        )?;
        let per_user = limit_from_env(
            "MCP_MAX_IN_FLIGHT_PER_USER",
            DEFAULT_MAX_IN_FLIGHT_PER_USER,
            u32::MAX as usize,
            "requests of one user served at once",
        )?;
        let body_budget = match std::env::var("MCP_BODY_BUDGET_BYTES") {
            Ok(v) if !v.trim().is_empty() => match v.trim().parse::<usize>() {
                Ok(n) if n >= budget::MIN_BUDGET => n,
                _ => anyhow::bail!(
                    "MCP_BODY_BUDGET_BYTES must be a number of bytes, at least {} ({} MiB)",
                    budget::MIN_BUDGET,
                    budget::MIN_BUDGET >> 20
                ),
            },
            _ => budget::DEFAULT_BUDGET,
        };
        Ok(Self {
            rmcp,
            max_calls_per_minute: max_calls_per_minute.map(|n| n as i64),
            in_flight: in_flight.map(|n| Pool::new(u32::try_from(n).unwrap_or(u32::MAX), 1)),
            per_user: per_user.map(|n| Shares::new(n as u32)),
            bodies: Arc::new(BodyBudget::new(body_budget, SHARE_WAIT)),
            body_deadline: super::connections::Limits::from_env()?.body_deadline,
        })
    }
}

/// What the token check of one endpoint needs: its server's name, the
/// store, and the process's limits.
#[derive(Clone)]
struct Gate {
    server: &'static str,
    tokens: Backing,
    max_calls_per_minute: Option<i64>,
    in_flight: Option<Arc<Pool>>,
    per_user: Option<Arc<Shares>>,
    bodies: Arc<BodyBudget>,
    body_deadline: std::time::Duration,
}

/// The route `/mcp/<server>` serving `handler` (built with
/// [`IdentitySource::Token`](super::IdentitySource::Token)) over streamable HTTP, behind the
/// token check: the handshake of 2025-11-25 and the stateless protocol of
/// 2026-07-28, each request served statelessly.
/// `tokens` opens the store the tokens are checked in.
pub fn mount<S>(server: &'static str, handler: S, tokens: Backing, config: &HttpConfig) -> Router
where
    S: ServerHandler + Clone + Send + Sync + 'static,
{
    let service = StreamableHttpService::new(
        move || Ok(handler.clone()),
        Arc::new(NeverSessionManager::default()),
        config.rmcp.clone(),
    );
    Router::new()
        .route_service(&format!("/mcp/{server}"), service)
        .route_layer(axum::middleware::from_fn_with_state(
            Gate {
                server,
                tokens,
                max_calls_per_minute: config.max_calls_per_minute,
                in_flight: config.in_flight.clone(),
                per_user: config.per_user.clone(),
                bodies: Arc::clone(&config.bodies),
                body_deadline: config.body_deadline,
            },
            check,
        ))
}

/// The token check in front of an endpoint: 401 or 403 here, 429 past the
/// token's tool calls of the minute or its user's share, or the request goes
/// on with the token's [`Identity`] and without the token, when its turn
/// comes among the process's requests in flight.
async fn check(State(gate): State<Gate>, request: Request, next: Next) -> Response {
    let Some(token) = bearer(request.headers()).map(str::to_string) else {
        return refused(&gate, TokenRefusal::Unknown, None, false);
    };
    if capability_hash(&token).is_none() {
        return refused(&gate, TokenRefusal::Unknown, None, true);
    }
    let store = match gate.tokens.store().await {
        Ok(store) => store,
        Err(e) => return unavailable(&gate, e.detail.unwrap_or(e.message)),
    };
    // The token first: no body is read for a request without a live one.
    let capability = match store.capability(&token).await {
        Ok(Some(capability)) => capability,
        Ok(None) => return refused(&gate, TokenRefusal::Unknown, None, true),
        Err(e) => return unavailable(&gate, e.to_string()),
    };
    if let Err(refusal) = capability.admits(gate.server) {
        return refused(&gate, refusal, Some(&capability.session_id), true);
    }
    let session = capability.session_id.as_str();
    // One of the user's turns, held until the answer is sent, its body read
    // inside it.
    let user_turn = match &gate.per_user {
        Some(users) => match users.take(&capability.user_id, 1, SHARE_WAIT).await {
            Some(turn) => Some(turn),
            None => return not_served(&gate, session, Refused::UserBusy),
        },
        None => None,
    };
    tracing::debug!(
        server = gate.server,
        session,
        "token live; reading the request"
    );
    // A body is read inside the budget, within its deadline, and a tool call
    // counted; its bytes stay reserved until the answer is sent.
    let (mut request, call, bytes) = if request.method() == Method::POST {
        match tool_call(&gate, &capability.user_id, session, request).await {
            Ok((request, call, bytes)) => (request, call, Some(bytes)),
            Err(response) => return response,
        }
    } else {
        (request, false, None)
    };
    request.headers_mut().remove(header::AUTHORIZATION);
    // A turn among the process's requests in flight, within the same wait:
    // any free one for the user's first, else one past the kept quarter.
    let turn = match &gate.in_flight {
        Some(turns) => match turns.take(&capability.user_id, 1, SHARE_WAIT).await {
            Some(turn) => Some(turn),
            None => return not_served(&gate, session, Refused::NoTurn),
        },
        None => None,
    };
    // A tool call is checked again as it runs: counted, and its grant's rows
    // read, in one transaction, only while its token is still live.
    if call {
        let minute = unix_seconds() / 60;
        match store
            .count_call_with_snapshot(&token, minute, &capability.user_id)
            .await
        {
            Ok(Some((calls, _))) if gate.max_calls_per_minute.is_some_and(|l| calls > l) => {
                let limit = gate.max_calls_per_minute.unwrap_or_default();
                return rate_limited(&gate, session, limit);
            }
            Ok(Some((_, snapshot))) => {
                request.extensions_mut().insert(Prefetched {
                    user_id: capability.user_id.clone(),
                    snapshot,
                });
            }
            Ok(None) => return no_longer_live(&gate, store, &token, session).await,
            Err(e) => return unavailable(&gate, e.to_string()),
        }
    }
    request.extensions_mut().insert(Identity {
        user_id: capability.user_id.clone(),
        profile_id: capability.profile_id.clone(),
        session_id: Some(capability.session_id.clone()),
    });
    // The turns and the bytes are given back once the answer is sent (or
    // dropped): answers that a client does not read hold turns, so they
    // are at most `MCP_MAX_IN_FLIGHT`, a user's at most its share.
    next.run(request)
        .await
        .map(|body| Body::new(Kept::new(body, (user_turn, turn, bytes))))
}

/// The refusal of a token that was live when its request came and no longer
/// is as its call runs: why, read once more.
async fn no_longer_live(gate: &Gate, store: &SidecarStore, token: &str, session: &str) -> Response {
    let refusal = match store.capability(token).await {
        Ok(Some(capability)) => capability.admits(gate.server).err(),
        _ => None,
    };
    refused(
        gate,
        refusal.unwrap_or(TokenRefusal::Unknown),
        Some(session),
        true,
    )
}

/// Reads the body of `request` for `user` inside the budget (at most
/// [`MAX_BODY`], within `HTTP_BODY_TIMEOUT_MS`) and tells whether it is a tool
/// call; the request comes back whole, with the reservation of its bytes.
async fn tool_call(
    gate: &Gate,
    user: &str,
    session: &str,
    request: Request,
) -> Result<(Request, bool, budget::Reservation), Response> {
    let (parts, body) = request.into_parts();
    let length = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let read = tokio::time::timeout(gate.body_deadline, gate.bodies.read(user, body, length));
    let (bytes, reserved) = match read.await {
        Ok(Ok(read)) => read,
        Ok(Err(why)) => return Err(not_served(gate, session, why)),
        Err(_) => {
            return Err(error(
                StatusCode::REQUEST_TIMEOUT,
                &format!(
                    "the request body did not arrive within {} seconds",
                    gate.body_deadline.as_secs()
                ),
            ));
        }
    };
    let call = is_tool_call(&bytes);
    Ok((
        Request::from_parts(parts, Body::from(bytes)),
        call,
        reserved,
    ))
}

/// The answer to a request whose body was not read or not served: 413 for
/// a body too large, 429 past its user's share, 503 past the process's
/// budget (both with `Retry-After`), 400 for a body cut short.
fn not_served(gate: &Gate, session: &str, why: Refused) -> Response {
    let (status, message, reason) = match why {
        Refused::TooLarge => (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the request body is larger than {} MiB, or holds more JSON values than one request may",
                MAX_BODY >> 20
            ),
            "body too large",
        ),
        Refused::UserBusy => (
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "this user's agents have as many requests in flight as one user may; try again in {RETRY_AFTER} seconds"
            ),
            "past the user's share",
        ),
        Refused::ProcessBusy => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the service is reading as many requests as it may; try again in {RETRY_AFTER} seconds"
            ),
            "past the process's body budget",
        ),
        Refused::NoTurn => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the service is serving as many requests as it may; try again in {RETRY_AFTER} seconds"
            ),
            "no turn among the requests in flight",
        ),
        Refused::Broken => (
            StatusCode::BAD_REQUEST,
            "the request body could not be read whole".to_string(),
            "body cut short",
        ),
    };
    tracing::warn!(
        server = gate.server,
        session,
        reason,
        "refused an MCP request"
    );
    let mut response = error(status, &message);
    if matches!(
        why,
        Refused::UserBusy | Refused::ProcessBusy | Refused::NoTurn
    ) {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER));
    }
    response
}

/// Whether a JSON-RPC message is a `tools/call`. What does not read as one
/// message (a batch, a duplicate key, no JSON) counts as one too: a body
/// rmcp might still take as a call never escapes the count.
fn is_tool_call(body: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Message<'a> {
        #[serde(borrow, default)]
        method: Option<std::borrow::Cow<'a, str>>,
    }
    match serde_json::from_slice::<Message>(body) {
        Ok(message) => message.method.as_deref() == Some("tools/call"),
        Err(_) => true,
    }
}

fn unix_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The answer past a token's tool calls of the minute: 429, with the
/// seconds until the next minute in `Retry-After`.
fn rate_limited(gate: &Gate, session: &str, limit: i64) -> Response {
    tracing::warn!(
        server = gate.server,
        session,
        limit,
        "refused a tool call past the token's calls of the minute"
    );
    let wait = 60 - unix_seconds() % 60;
    let mut response = error(
        StatusCode::TOO_MANY_REQUESTS,
        &format!(
            "this agent made more than {limit} tool calls this minute; try again in {wait} seconds"
        ),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(wait));
    response
}

/// The token of an `Authorization: Bearer <token>` header, if there is one
/// (the MCP endpoints' and the REST API's).
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|token| !token.is_empty())
}

/// The answer to a refused token, logged without the token.
fn refused(gate: &Gate, refusal: TokenRefusal, session: Option<&str>, presented: bool) -> Response {
    tracing::warn!(
        server = gate.server,
        reason = if presented {
            refusal.as_str()
        } else {
            "no token"
        },
        session,
        "refused an MCP request"
    );
    let (status, message) = match refusal {
        TokenRefusal::Unknown if !presented => (
            StatusCode::UNAUTHORIZED,
            "send this agent's capability token as 'Authorization: Bearer <token>'".to_string(),
        ),
        TokenRefusal::Unknown => (
            StatusCode::UNAUTHORIZED,
            "the capability token is not valid".to_string(),
        ),
        TokenRefusal::Expired => (
            StatusCode::UNAUTHORIZED,
            "the capability token has expired; the platform must mint a new one".to_string(),
        ),
        TokenRefusal::Revoked => (
            StatusCode::UNAUTHORIZED,
            "the capability token was revoked".to_string(),
        ),
        TokenRefusal::NotGranted => (
            StatusCode::FORBIDDEN,
            format!(
                "this capability token does not grant the {} server",
                gate.server
            ),
        ),
    };
    let mut response = error(status, &message);
    if status == StatusCode::UNAUTHORIZED {
        let challenge = if presented {
            "Bearer error=\"invalid_token\""
        } else {
            "Bearer"
        };
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        );
    }
    response
}

fn unavailable(gate: &Gate, detail: String) -> Response {
    tracing::error!(server = gate.server, error = %detail, "cannot check a capability token");
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "the integrations store is not answering; try again shortly",
    )
}

fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        axum::Json(serde_json::json!({"error": {"message": message}})),
    )
        .into_response()
}

/// `GET /healthz`: the process is serving.
pub async fn healthz() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({"status": "ok"}))
}

#[cfg(test)]
mod tests {
    use super::is_tool_call;

    #[test]
    fn a_tool_call_counts_however_it_is_spelled() {
        assert!(is_tool_call(
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}"#
        ));
        assert!(is_tool_call(br#"{"method":"tools\u002fcall"}"#));
        assert!(is_tool_call(br#"{"method":"ping","method":"tools/call"}"#));
        assert!(is_tool_call(br#"[{"method":"tools/call"}]"#));
        assert!(!is_tool_call(
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#
        ));
        assert!(!is_tool_call(
            br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#
        ));
    }
}
