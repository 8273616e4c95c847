//! MCP over streamable HTTP (rmcp's `StreamableHttpService`), behind a
//! capability-token check.
//!
//! Every HTTP request to `/mcp/<server>` carries `Authorization: Bearer
//! <token>`. Before rmcp reads the body, [`check`] re-reads the token's row
//! (known, not expired, not revoked, this server among its servers) and puts
//! the agent's [`Identity`] in the request's extensions, where
//! [`Caller::Token`](super::Caller::Token) finds it for the handler, which
//! then checks the grant exactly as on stdio. A refused token is a 401 (with
//! `WWW-Authenticate: Bearer`) or a 403, never a tool result; no verdict is
//! cached, so a revocation takes effect on the next request.

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
use tokio::sync::Semaphore;

use super::call::Prefetched;
use super::{Backing, Identity};
use crate::store::Refusal;
use crate::store::capabilities::capability_hash;

/// The largest request body an MCP endpoint reads.
pub const MAX_BODY: usize = 4 * 1024 * 1024;

/// How long a request's body may take to arrive.
const BODY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

/// The tool calls a token may make in a minute unless
/// `MCP_MAX_CALLS_PER_MINUTE` says otherwise.
pub const DEFAULT_MAX_CALLS_PER_MINUTE: i64 = 600;

/// The requests one process serves at once unless `MCP_MAX_IN_FLIGHT` says
/// otherwise. rmcp holds about 80 KiB for each request it serves; past this
/// many, requests wait their turn with only their head and body read. 128
/// keeps a process under 64 MiB with 1,000 agents calling flat out (README,
/// "Benchmarks"); a call waiting on its provider holds its turn, so a
/// process whose calls mostly wait on slow providers wants more.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 128;

/// The transport settings every MCP endpoint of one process shares.
#[derive(Clone)]
pub struct HttpConfig {
    rmcp: StreamableHttpServerConfig,
    /// Tool calls per token per minute; `None`: no limit.
    max_calls_per_minute: Option<i64>,
    /// The turns to be served, shared by every endpoint; `None`: no limit.
    in_flight: Option<Arc<Semaphore>>,
}

impl HttpConfig {
    /// For a server bound to `bound`: `Host` must be a loopback name, the
    /// bound address, or one of `MCP_ALLOWED_HOSTS`; a request with an
    /// `Origin` must come from the server's own loopback origin or one of
    /// `MCP_ALLOWED_ORIGINS` (both comma-separated); a request without one
    /// (not a browser) passes. A token makes at most
    /// `MCP_MAX_CALLS_PER_MINUTE` tool calls a minute, and the process
    /// serves at most `MCP_MAX_IN_FLIGHT` requests at once (0: no limit).
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
        let max_calls_per_minute = match std::env::var("MCP_MAX_CALLS_PER_MINUTE") {
            Ok(v) if !v.trim().is_empty() => match v.trim().parse::<i64>() {
                Ok(0) => None,
                Ok(n) if n > 0 => Some(n),
                _ => anyhow::bail!(
                    "MCP_MAX_CALLS_PER_MINUTE must be a number of tool calls (0: no limit)"
                ),
            },
            _ => Some(DEFAULT_MAX_CALLS_PER_MINUTE),
        };
        let in_flight = match std::env::var("MCP_MAX_IN_FLIGHT") {
            Ok(v) if !v.trim().is_empty() => match v.trim().parse::<usize>() {
                Ok(0) => None,
                Ok(n) if n <= Semaphore::MAX_PERMITS => Some(n),
                _ => anyhow::bail!(
                    "MCP_MAX_IN_FLIGHT must be a number of requests served at once (0: no limit)"
                ),
            },
            _ => Some(DEFAULT_MAX_IN_FLIGHT),
        };
        Ok(Self {
            rmcp,
            max_calls_per_minute,
            in_flight: in_flight.map(|n| Arc::new(Semaphore::new(n))),
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
    in_flight: Option<Arc<Semaphore>>,
}

/// The route `/mcp/<server>` serving `handler` (built with
/// [`Caller::Token`](super::Caller::Token)) over streamable HTTP, behind the
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
            },
            check,
        ))
}

/// The token check in front of an endpoint: 401 or 403 here, 429 past the
/// token's tool calls of the minute, or the request goes on with the
/// token's [`Identity`] and without the token, when its turn comes among
/// the process's requests in flight.
async fn check(State(gate): State<Gate>, request: Request, next: Next) -> Response {
    let Some(token) = bearer(request.headers()).map(str::to_string) else {
        return refused(&gate, Refusal::Unknown, None, false);
    };
    if capability_hash(&token).is_none() {
        return refused(&gate, Refusal::Unknown, None, true);
    }
    let store = match gate.tokens.store().await {
        Ok(store) => store,
        Err(e) => return unavailable(&gate, e.detail.unwrap_or(e.message)),
    };
    // The token first: no body is read for a request without a live one.
    let capability = match store.capability(&token).await {
        Ok(Some(capability)) => capability,
        Ok(None) => return refused(&gate, Refusal::Unknown, None, true),
        Err(e) => return unavailable(&gate, e.to_string()),
    };
    if let Err(refusal) = capability.admits(gate.server) {
        return refused(&gate, refusal, Some(&capability.session_id), true);
    }
    // A body is read within its deadline, and a tool call counted.
    let (mut request, call) = if request.method() == Method::POST {
        match tool_call(request).await {
            Ok(read) => read,
            Err(response) => return response,
        }
    } else {
        (request, false)
    };
    request.headers_mut().remove(header::AUTHORIZATION);
    // Never closed: a turn always comes.
    let _turn = match &gate.in_flight {
        Some(turns) => turns.acquire().await.ok(),
        None => None,
    };
    // A tool call is counted, and its grant's rows read, in one transaction.
    if let Some(limit) = gate.max_calls_per_minute.filter(|_| call) {
        let minute = unix_seconds() / 60;
        match store
            .count_call_with_snapshot(&token, minute, &capability.user_id)
            .await
        {
            Ok(Some((calls, _))) if calls > limit => {
                return rate_limited(&gate, &capability.session_id, limit);
            }
            Ok(Some((_, snapshot))) => {
                request.extensions_mut().insert(Prefetched {
                    user_id: capability.user_id.clone(),
                    snapshot,
                });
            }
            Ok(None) => return refused(&gate, Refusal::Unknown, None, true),
            Err(e) => return unavailable(&gate, e.to_string()),
        }
    }
    request.extensions_mut().insert(Identity {
        user_id: capability.user_id,
        profile_id: capability.profile_id,
        session_id: Some(capability.session_id),
    });
    next.run(request).await
}

/// Reads the body of `request` (at most [`MAX_BODY`], within
/// [`BODY_DEADLINE`]) and tells whether it is a tool call; the request comes
/// back whole.
async fn tool_call(request: Request) -> Result<(Request, bool), Response> {
    let (parts, body) = request.into_parts();
    let read = tokio::time::timeout(BODY_DEADLINE, axum::body::to_bytes(body, MAX_BODY));
    let bytes = match read.await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(_)) => {
            return Err(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the request body could not be read whole, or is larger than 4 MiB",
            ));
        }
        Err(_) => {
            return Err(error(
                StatusCode::REQUEST_TIMEOUT,
                "the request body did not arrive within 30 seconds",
            ));
        }
    };
    let call = is_tool_call(&bytes);
    Ok((Request::from_parts(parts, Body::from(bytes)), call))
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
fn refused(gate: &Gate, refusal: Refusal, session: Option<&str>, presented: bool) -> Response {
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
        Refusal::Unknown if !presented => (
            StatusCode::UNAUTHORIZED,
            "send this agent's capability token as 'Authorization: Bearer <token>'".to_string(),
        ),
        Refusal::Unknown => (
            StatusCode::UNAUTHORIZED,
            "the capability token is not valid".to_string(),
        ),
        Refusal::Expired => (
            StatusCode::UNAUTHORIZED,
            "the capability token has expired; the platform must mint a new one".to_string(),
        ),
        Refusal::Revoked => (
            StatusCode::UNAUTHORIZED,
            "the capability token was revoked".to_string(),
        ),
        Refusal::NotGranted => (
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
