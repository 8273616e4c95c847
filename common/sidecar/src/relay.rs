//! The relay: a stdio sidecar that holds no store and no keyring. Started
//! with `INTEGRATIONS_URL` and `INTEGRATIONS_TOKEN` (`resolver plan
//! --transport relay`), it forwards every MCP message read on stdin to
//! `<INTEGRATIONS_URL>/mcp/<server>` with the session's capability token and
//! writes the service's answers to stdout, so the agent's process tree holds
//! only its own session's credential.
//!
//! Lines pass the guard of stdio mode (a line that is not JSON, or is longer
//! than 4 MiB, is answered here). Each message is its own HTTP request, sent
//! at once (a `ping` does not wait behind a slow tool call) and bounded by
//! [`DEADLINE`]; each answer is written as one whole line, whether it came as
//! a JSON body or as the events of a `text/event-stream`. A refusal of the
//! service (401, 403, 429, 503) becomes a JSON-RPC error for that request
//! carrying the service's own sentence, and a service that cannot be reached
//! a JSON-RPC error naming its URL; the relay goes on serving either way.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{Response, StatusCode, Url};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{OwnedRwLockWriteGuard, RwLock, mpsc};
use tokio::task::JoinSet;
use zeroize::Zeroizing;

use super::stdio::guarded_stdio_joined;

/// How long one relayed message may take, its answer read to the end. Longer
/// than any tool's own worst case: a Gmail call is two attempts of
/// `GMAIL_TIMEOUT_MS` (20 s), each after a token refresh of at most 20 s.
pub const DEADLINE: Duration = Duration::from_secs(90);

/// The largest answer the relay holds in memory; a larger one is dropped
/// with an error.
const MAX_ANSWER: usize = 16 * 1024 * 1024;

/// How long connecting to the service may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the last replies may take to reach stdout once stdin has ended.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// The JSON-RPC error code of a request the service refused (its HTTP
/// status in `data.http_status`).
const REFUSED: i64 = -32001;

/// The JSON-RPC error code of a request that did not reach the service, or
/// got no answer from it.
const UNREACHABLE: i64 = -32000;

const PROTOCOL_VERSION: &str = "mcp-protocol-version";
const SESSION_ID: &str = "mcp-session-id";
const MCP_METHOD: &str = "mcp-method";
const MCP_NAME: &str = "mcp-name";

/// The first protocol version whose requests also name their method (and
/// the tool, prompt or resource) in headers (SEP-2243).
const STANDARD_HEADERS: &str = "2026-07-28";

/// The `_meta` member that carries a request's own protocol version.
const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";

/// The relay of one sidecar to its endpoint of the service.
pub struct Relay {
    http: reqwest::Client,
    endpoint: Url,
    /// The endpoint as errors and logs name it: without user or password.
    shown: String,
    server: &'static str,
    authorization: HeaderValue,
    negotiated: Arc<RwLock<Negotiated>>,
}

/// What the service said that later requests repeat.
#[derive(Default)]
struct Negotiated {
    /// The protocol version of the `initialize` result.
    version: Option<HeaderValue>,
    /// `Mcp-Session-Id`, if the service ever hands one out.
    session: Option<HeaderValue>,
}

impl Relay {
    /// The relay of sidecar `server` (`teller`) when `INTEGRATIONS_URL` is
    /// set, `None` when it is not. The token is read from
    /// `INTEGRATIONS_TOKEN` only, and no error names it.
    pub fn from_env(server: &'static str) -> Option<Result<Self, String>> {
        let base = std::env::var("INTEGRATIONS_URL")
            .ok()
            .filter(|v| !v.is_empty())?;
        let token = Zeroizing::new(std::env::var("INTEGRATIONS_TOKEN").unwrap_or_default());
        Some(Self::new(server, &base, &token))
    }

    fn new(server: &'static str, base: &str, token: &str) -> Result<Self, String> {
        let token = token.trim();
        if token.is_empty() {
            return Err(
                "INTEGRATIONS_URL is set but INTEGRATIONS_TOKEN is not: the relay needs \
                 this agent's capability token (resolver plan --transport relay)"
                    .into(),
            );
        }
        let not_a_token = || {
            "INTEGRATIONS_TOKEN is not a capability token: it is printable ASCII without spaces"
                .to_string()
        };
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(not_a_token());
        }
        let mut authorization = HeaderValue::from_str(&Zeroizing::new(format!("Bearer {token}")))
            .map_err(|_| not_a_token())?;
        authorization.set_sensitive(true);
        let endpoint =
            model::endpoint::token_url(&format!("{}/mcp/{server}", base.trim_end_matches('/')))
                .ok_or(
                    "INTEGRATIONS_URL must be the base URL of the sidecars' service: \
                 https://, or http:// on loopback only, e.g. https://mcp.example.com",
                )?;
        let mut shown = endpoint.clone();
        let _ = shown.set_username("");
        let _ = shown.set_password(None);
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(DEADLINE)
            // The token goes to the endpoint and nowhere else.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the relay's HTTP client: {e}"))?;
        Ok(Self {
            http,
            endpoint,
            shown: shown.to_string(),
            server,
            authorization,
            negotiated: Arc::default(),
        })
    }

    /// Relays stdin to the service and its answers to stdout until stdin
    /// ends and every message in flight is answered.
    pub async fn serve_stdio(self) {
        tracing::debug!(endpoint = %self.shown, "relaying MCP messages");
        let (input, output, copier) = guarded_stdio_joined();
        self.serve(input, output).await;
        // The copier ends once the last reply is on stdout.
        let _ = tokio::time::timeout(FLUSH_TIMEOUT, copier).await;
    }

    /// Relays each line of `input` (JSON, as the guard passes it) and writes
    /// every answer to `output` as one line.
    async fn serve(
        self,
        input: impl AsyncRead + Unpin,
        output: impl AsyncWrite + Unpin + Send + 'static,
    ) {
        let relay = Arc::new(self);
        let (replies, mut outbox) = mpsc::channel::<Vec<u8>>(64);
        let writer = tokio::spawn(async move {
            let mut output = output;
            while let Some(line) = outbox.recv().await {
                if output.write_all(&line).await.is_err() {
                    break;
                }
            }
        });
        let mut input = BufReader::new(input);
        let mut in_flight = JoinSet::new();
        loop {
            let mut line = Vec::new();
            match input.read_until(b'\n', &mut line).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            while in_flight.try_join_next().is_some() {}
            let message = Message::parse(line);
            // An `initialize` goes alone: what follows it waits for the
            // version it negotiates.
            let held = match message.method.as_deref() {
                Some("initialize") => Some(Arc::clone(&relay.negotiated).write_owned().await),
                _ => None,
            };
            in_flight.spawn(Arc::clone(&relay).relay(message, held, replies.clone()));
        }
        while in_flight.join_next().await.is_some() {}
        drop(replies);
        let _ = writer.await;
    }

    /// One message to the service, and its answers (or the error that
    /// stands for them) to `replies`.
    async fn relay(
        self: Arc<Self>,
        message: Message,
        mut held: Option<OwnedRwLockWriteGuard<Negotiated>>,
        replies: mpsc::Sender<Vec<u8>>,
    ) {
        let headers = match &held {
            Some(_) => self.headers(&message, None),
            None => self.headers(&message, Some(&*self.negotiated.read().await)),
        };
        let id = message.id.clone();
        let sent = self
            .http
            .post(self.endpoint.clone())
            .headers(headers)
            .body(message.body)
            .send()
            .await;
        let mut out = Answers {
            id: id.as_ref(),
            replies: &replies,
            answered: false,
            initialize: held.is_some(),
            version: None,
        };
        let failure = match sent {
            Ok(response) => {
                self.keep_session(&response, held.as_deref_mut()).await;
                self.read(response, &mut out).await.err()
            }
            Err(e) => Some(self.unreachable(&e)),
        };
        if let (Some(negotiated), Some(version)) = (held.as_deref_mut(), out.version.take()) {
            negotiated.version = Some(version);
        }
        drop(held);
        let answered = out.answered;
        match (failure, id) {
            (Some(failure), Some(id)) if !answered => {
                let _ = replies.send(failure.line(&id)).await;
            }
            (None, Some(id)) if !answered => {
                let failure = Failure::unreachable(format!(
                    "the {} service at {} sent no answer to this request",
                    self.server, self.shown
                ));
                let _ = replies.send(failure.line(&id)).await;
            }
            (Some(failure), _) => {
                tracing::warn!(endpoint = %self.shown, error = %failure.message, "a relayed message failed");
            }
            (None, _) => {}
        }
    }

    /// The headers of `message`; `negotiated` is `None` for an `initialize`.
    fn headers(&self, message: &Message, negotiated: Option<&Negotiated>) -> HeaderMap {
        let mut headers = HeaderMap::with_capacity(7);
        headers.insert(reqwest::header::AUTHORIZATION, self.authorization.clone());
        headers.insert(
            ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let Some(negotiated) = negotiated else {
            return headers;
        };
        if let Some(session) = &negotiated.session {
            headers.insert(SESSION_ID, session.clone());
        }
        let version = message
            .version
            .as_deref()
            .and_then(|v| HeaderValue::from_str(v).ok())
            .or_else(|| negotiated.version.clone());
        if let Some(version) = version {
            let standard = version.to_str().is_ok_and(|v| v >= STANDARD_HEADERS);
            headers.insert(PROTOCOL_VERSION, version);
            if standard {
                if let Some(method) = message.method.as_deref().and_then(header_value) {
                    headers.insert(MCP_METHOD, method);
                }
                if let Some(name) = message.name.as_deref().and_then(header_value) {
                    headers.insert(MCP_NAME, name);
                }
            }
        }
        headers
    }

    /// Keeps an `Mcp-Session-Id` the service handed out, to send it back.
    async fn keep_session(&self, response: &Response, held: Option<&mut Negotiated>) {
        let Some(session) = response.headers().get(SESSION_ID) else {
            return;
        };
        match held {
            Some(negotiated) => negotiated.session = Some(session.clone()),
            None => {
                if self.negotiated.read().await.session.as_ref() != Some(session) {
                    self.negotiated.write().await.session = Some(session.clone());
                }
            }
        }
    }

    /// Writes the answers in `response`: its JSON body, or each event of its
    /// event stream. A refusal is the failure that stands for them, unless
    /// the service answered it in JSON-RPC itself.
    async fn read(&self, mut response: Response, out: &mut Answers<'_>) -> Result<(), Failure> {
        let status = response.status();
        let is_stream = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if status.is_success() && is_stream {
            let mut events = EventStream::default();
            while let Some(chunk) = response.chunk().await.map_err(|e| self.unreachable(&e))? {
                for data in events.push(&chunk) {
                    out.write(&data).await;
                }
                if events.held() > MAX_ANSWER {
                    return Err(self.too_large());
                }
            }
            return Ok(());
        }
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.unreachable(&e))? {
            if body.len() + chunk.len() > MAX_ANSWER {
                return Err(self.too_large());
            }
            body.extend_from_slice(&chunk);
        }
        if status.is_success() {
            if !body.iter().all(u8::is_ascii_whitespace) {
                out.write(&body).await;
            }
            return Ok(());
        }
        if is_json_rpc(&body) {
            out.write(&body).await;
            return Ok(());
        }
        Err(self.refused(status, &body, retry_after))
    }

    /// The failure of a refusal, in the service's own words when it gave
    /// them (`{"error": {"message": ...}}`).
    fn refused(&self, status: StatusCode, body: &[u8], retry_after: Option<u64>) -> Failure {
        #[derive(Deserialize)]
        struct ServiceError {
            error: ServiceErrorDetail,
        }
        #[derive(Deserialize)]
        struct ServiceErrorDetail {
            message: String,
        }
        let mut message = match serde_json::from_slice::<ServiceError>(body) {
            Ok(refusal) => refusal.error.message,
            Err(_) => {
                let (server, shown) = (self.server, &self.shown);
                let mut message = format!("the {server} service at {shown} answered HTTP {status}");
                let text: String = String::from_utf8_lossy(body)
                    .trim()
                    .chars()
                    .take(300)
                    .collect();
                if !text.is_empty() {
                    message.push_str(": ");
                    message.push_str(&text);
                }
                message
            }
        };
        let mut data = json!({"http_status": status.as_u16()});
        if let Some(seconds) = retry_after {
            message.push_str(&format!(" (retry after {seconds} s)"));
            data["retry_after_seconds"] = json!(seconds);
        }
        Failure {
            code: REFUSED,
            message,
            data,
        }
    }

    /// The failure of a request that got no HTTP answer.
    /// An answer past [`MAX_ANSWER`], dropped unread.
    fn too_large(&self) -> Failure {
        Failure::unreachable(format!(
            "the {} service at {} sent an answer larger than {} MiB; it was dropped",
            self.server,
            self.shown,
            MAX_ANSWER >> 20
        ))
    }

    fn unreachable(&self, e: &reqwest::Error) -> Failure {
        let (server, shown) = (self.server, &self.shown);
        Failure::unreachable(if e.is_timeout() {
            format!(
                "the {server} service at {shown} did not answer within {} s",
                DEADLINE.as_secs()
            )
        } else if e.is_connect() {
            format!(
                "cannot connect to the {server} service at {shown}: {}",
                cause(e)
            )
        } else {
            format!(
                "the request to the {server} service at {shown} failed: {}",
                cause(e)
            )
        })
    }
}

/// One message read on stdin: its bytes, and what its headers need.
struct Message {
    body: Vec<u8>,
    /// The id of a request (`None` for a notification or a response).
    id: Option<Value>,
    method: Option<String>,
    /// `Mcp-Name`: the tool or prompt, resource URI or task it is about.
    name: Option<String>,
    /// The protocol version in the request's own `_meta`.
    version: Option<String>,
}

impl Message {
    fn parse(body: Vec<u8>) -> Self {
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct Head {
            id: Option<Value>,
            method: Option<String>,
            params: Option<Params>,
        }
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct Params {
            name: Option<Value>,
            uri: Option<Value>,
            #[serde(rename = "taskId")]
            task_id: Option<Value>,
            #[serde(rename = "_meta")]
            meta: Option<serde_json::Map<String, Value>>,
        }
        // A message of another shape (a batch) is relayed as it is.
        let head: Head = serde_json::from_slice(&body).unwrap_or_default();
        let params = head.params.unwrap_or_default();
        let name = match head.method.as_deref() {
            Some("tools/call" | "prompts/get") => params.name,
            Some("resources/read" | "resources/subscribe" | "resources/unsubscribe") => params.uri,
            Some("tasks/get" | "tasks/update" | "tasks/cancel") => params.task_id,
            _ => None,
        };
        let text = |v: Option<Value>| match v {
            Some(Value::String(s)) => Some(s),
            _ => None,
        };
        Self {
            body,
            id: head.id.filter(|_| head.method.is_some()),
            name: text(name),
            version: text(
                params
                    .meta
                    .and_then(|mut m| m.remove(META_PROTOCOL_VERSION)),
            ),
            method: head.method,
        }
    }
}

/// Where the answers to one message go.
struct Answers<'a> {
    /// The request's id, if it is one.
    id: Option<&'a Value>,
    replies: &'a mpsc::Sender<Vec<u8>>,
    /// Whether the request's response has been written.
    answered: bool,
    /// Whether the request is an `initialize`.
    initialize: bool,
    /// The protocol version of its result.
    version: Option<HeaderValue>,
}

impl Answers<'_> {
    /// Writes one message of the service as one line; notes whether it is
    /// the request's response, and the version an `initialize` result names.
    async fn write(&mut self, message: &[u8]) {
        #[derive(Deserialize)]
        struct Head {
            #[serde(default)]
            id: Option<Value>,
            #[serde(default)]
            result: Option<IgnoredAny>,
            #[serde(default)]
            error: Option<IgnoredAny>,
        }
        #[derive(Deserialize)]
        struct Initialized {
            result: InitializeResult,
        }
        #[derive(Deserialize)]
        struct InitializeResult {
            #[serde(rename = "protocolVersion")]
            protocol_version: String,
        }
        let head = serde_json::from_slice::<Head>(message).ok();
        if head.is_none() && serde_json::from_slice::<IgnoredAny>(message).is_err() {
            tracing::warn!("the service sent a message that is not JSON; it is not relayed");
            return;
        }
        if let Some(head) = head
            && head.id.is_some()
            && head.id.as_ref() == self.id
            && (head.result.is_some() || head.error.is_some())
        {
            self.answered = true;
            if self.initialize {
                self.version = serde_json::from_slice::<Initialized>(message)
                    .ok()
                    .and_then(|i| HeaderValue::from_str(&i.result.protocol_version).ok());
            }
        }
        let _ = self.replies.send(one_line(message)).await;
    }
}

/// `message` as one line: a message with a line break in it (between its
/// tokens, as event data may be) is written again on one line.
fn one_line(message: &[u8]) -> Vec<u8> {
    let message = message.trim_ascii();
    let mut line = match message.iter().any(|&b| b == b'\n' || b == b'\r') {
        true => serde_json::from_slice::<Value>(message)
            .and_then(|v| serde_json::to_vec(&v))
            .unwrap_or_default(),
        false => message.to_vec(),
    };
    line.push(b'\n');
    line
}

/// Whether `body` is a JSON-RPC message (a refusal the service answered in
/// the protocol itself).
fn is_json_rpc(body: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Head {
        #[serde(rename = "jsonrpc")]
        _jsonrpc: IgnoredAny,
    }
    serde_json::from_slice::<Head>(body).is_ok()
}

/// A JSON-RPC error that stands for the service's answer to one request.
struct Failure {
    code: i64,
    message: String,
    data: Value,
}

impl Failure {
    fn unreachable(message: String) -> Self {
        Self {
            code: UNREACHABLE,
            message,
            data: Value::Null,
        }
    }

    /// The error response to request `id`, as one line.
    fn line(&self, id: &Value) -> Vec<u8> {
        let mut error = json!({"code": self.code, "message": self.message});
        if !self.data.is_null() {
            error["data"] = self.data.clone();
        }
        let mut line = serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": id, "error": error}))
            .unwrap_or_default();
        line.push(b'\n');
        line
    }
}

/// The innermost cause of `e` (e.g. "Connection refused (os error 111)").
fn cause(e: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

/// `value` as a SEP-2243 header value: as it is when it can travel so,
/// else `=?base64?<base64>?=`.
fn header_value(value: &str) -> Option<HeaderValue> {
    let wrapped = value.starts_with([' ', '\t'])
        || value.ends_with([' ', '\t'])
        || !value.chars().all(|c| (' '..='~').contains(&c))
        || (value.starts_with("=?base64?") && value.ends_with("?="));
    match wrapped {
        false => HeaderValue::from_str(value).ok(),
        true => HeaderValue::from_str(&format!(
            "=?base64?{}?=",
            base64::engine::general_purpose::STANDARD.encode(value)
        ))
        .ok(),
    }
}

/// The events of a `text/event-stream` as they arrive, chunk by chunk.
#[derive(Default)]
struct EventStream {
    /// The unfinished line.
    line: Vec<u8>,
    /// The data of the unfinished event.
    data: Option<Vec<u8>>,
}

impl EventStream {
    /// The bytes held for the unfinished line and event.
    fn held(&self) -> usize {
        self.line.len() + self.data.as_ref().map_or(0, Vec::len)
    }

    /// Takes `chunk`; returns the data of every event it completes.
    fn push(&mut self, chunk: &[u8]) -> Vec<Vec<u8>> {
        let mut events = Vec::new();
        let mut rest = chunk;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            self.line.extend_from_slice(&rest[..end]);
            rest = &rest[end + 1..];
            let line = std::mem::take(&mut self.line);
            let line = line.strip_suffix(b"\r").unwrap_or(&line);
            if line.is_empty() {
                events.extend(self.data.take().filter(|d| !d.is_empty()));
            } else if let Some(value) = line.strip_prefix(b"data:") {
                let value = value.strip_prefix(b" ").unwrap_or(value);
                let data = self.data.get_or_insert_with(Vec::new);
                if !data.is_empty() {
                    data.push(b'\n');
                }
                data.extend_from_slice(value);
            }
        }
        self.line.extend_from_slice(rest);
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_whole_across_chunks_and_line_endings() {
        let mut stream = EventStream::default();
        let mut events = Vec::new();
        for chunk in [
            &b"id: 0\nretry: 300\ndata:\n\n: a comment\r\nevent: mess"[..],
            b"age\r\ndata: {\"id\":1,\r\ndata: \"result\":{}}\r\n\r",
            b"\ndata: {\"id\":2}\n",
            b"\n",
        ] {
            events.extend(stream.push(chunk));
        }
        assert_eq!(events, [&b"{\"id\":1,\n\"result\":{}}"[..], b"{\"id\":2}"]);
        assert_eq!(one_line(&events[0]), b"{\"id\":1,\"result\":{}}\n");
    }

    #[test]
    fn headers_follow_the_protocol_version() {
        let relay = Relay::new("teller", "http://127.0.0.1:1/", "mct_x").unwrap();
        assert_eq!(relay.endpoint.as_str(), "http://127.0.0.1:1/mcp/teller");
        let call = |meta: &str| {
            Message::parse(
                format!(r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{{"name":"teller_list_enrollments"{meta}}}}}"#)
                    .into_bytes(),
            )
        };
        let negotiated = Negotiated {
            version: Some(HeaderValue::from_static("2025-11-25")),
            session: None,
        };
        let old = relay.headers(&call(""), Some(&negotiated));
        assert_eq!(old[PROTOCOL_VERSION], "2025-11-25");
        assert!(!old.contains_key(MCP_METHOD));
        assert_eq!(old[reqwest::header::AUTHORIZATION], "Bearer mct_x");
        let new = relay.headers(
            &call(r#","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}"#),
            Some(&negotiated),
        );
        assert_eq!(new[PROTOCOL_VERSION], "2026-07-28");
        assert_eq!(new[MCP_METHOD], "tools/call");
        assert_eq!(new[MCP_NAME], "teller_list_enrollments");
        let initialize = relay.headers(&call(""), None);
        assert!(!initialize.contains_key(PROTOCOL_VERSION));
        assert_eq!(
            header_value(" café").unwrap(),
            format!(
                "=?base64?{}?=",
                base64::engine::general_purpose::STANDARD.encode(" café")
            )
        );
    }

    /// A service answering each method in another way the protocol allows.
    async fn service() -> String {
        use axum::http::HeaderMap as Headers;
        use axum::response::IntoResponse;
        let answer = |headers: Headers, body: String| async move {
            let message: Value = serde_json::from_str(&body).unwrap();
            let id = &message["id"];
            let header = |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_string());
            let json = [(axum::http::header::CONTENT_TYPE, "application/json")];
            match message["method"].as_str().unwrap() {
                "initialize" => (
                    [("mcp-session-id", "sess-1"), ("content-type", "application/json")],
                    json!({"jsonrpc": "2.0", "id": id, "result": {"protocolVersion": "2025-11-25"}}).to_string(),
                )
                    .into_response(),
                "tools/call" => {
                    let progress = json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": 1, "progress": 1}});
                    let result = json!({"jsonrpc": "2.0", "id": id, "result": {
                        "session": header("mcp-session-id"),
                        "version": header("mcp-protocol-version"),
                        "authorization": header("authorization"),
                    }});
                    let pretty = serde_json::to_string_pretty(&result).unwrap().replace('\n', "\ndata: ");
                    (
                        [(axum::http::header::CONTENT_TYPE, "text/event-stream")],
                        format!("id: 0\ndata:\n\nevent: message\ndata: {progress}\n\ndata: {pretty}\n\n"),
                    )
                        .into_response()
                }
                "ping" => (
                    StatusCode::TOO_MANY_REQUESTS,
                    [("retry-after", "7"), ("content-type", "application/json")],
                    r#"{"error":{"message":"slow down"}}"#,
                )
                    .into_response(),
                "prompts/list" => (StatusCode::SERVICE_UNAVAILABLE, "upstream down").into_response(),
                // Answers past what the relay holds: a body, and an event that never ends.
                "completion/complete" => (json, " ".repeat(MAX_ANSWER + 1)).into_response(),
                "logging/setLevel" => (
                    [(axum::http::header::CONTENT_TYPE, "text/event-stream")],
                    format!("data: {}", "x".repeat(MAX_ANSWER + 1)),
                )
                    .into_response(),
                "resources/list" => (
                    StatusCode::BAD_REQUEST,
                    json,
                    json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32600, "message": "its own"}}).to_string(),
                )
                    .into_response(),
                // A notification, or a request answered with nothing.
                _ => StatusCode::ACCEPTED.into_response(),
            }
        };
        let app = axum::Router::new().route("/mcp/teller", axum::routing::post(answer));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        base
    }

    #[tokio::test]
    async fn every_shape_of_answer_becomes_whole_lines() {
        let relay = Relay::new("teller", &service().await, "mct_test").unwrap();
        let (mut client_in, relay_in) = tokio::io::duplex(1 << 16);
        let (relay_out, client_out) = tokio::io::duplex(1 << 16);
        let serving = tokio::spawn(relay.serve(relay_in, relay_out));
        let lines = [
            r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}"#,
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"teller_list_enrollments","_meta":{"progressToken":1}}}"#,
            r#"{"jsonrpc":"2.0","id":3,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":4,"method":"resources/list"}"#,
            r#"{"jsonrpc":"2.0","id":5,"method":"prompts/list"}"#,
            r#"{"jsonrpc":"2.0","id":6,"method":"tasks/list"}"#,
            r#"{"jsonrpc":"2.0","id":7,"method":"completion/complete","params":{}}"#,
            r#"{"jsonrpc":"2.0","id":8,"method":"logging/setLevel","params":{"level":"info"}}"#,
        ];
        client_in
            .write_all(format!("{}\n", lines.join("\n")).as_bytes())
            .await
            .unwrap();
        drop(client_in);
        let mut out = BufReader::new(client_out).lines();
        let mut by_id = std::collections::BTreeMap::new();
        let mut notifications = Vec::new();
        while let Some(line) = tokio::time::timeout(Duration::from_secs(30), out.next_line())
            .await
            .unwrap()
            .unwrap()
        {
            let message: Value = serde_json::from_str(&line).unwrap();
            match message["id"].as_i64() {
                Some(id) => assert!(by_id.insert(id, message).is_none(), "{line}"),
                None => notifications.push(message),
            }
        }
        serving.await.unwrap();
        assert_eq!(by_id[&1]["result"]["protocolVersion"], "2025-11-25");
        assert_eq!(notifications.len(), 1, "{notifications:?}");
        assert_eq!(notifications[0]["method"], "notifications/progress");
        assert_eq!(
            by_id[&2]["result"],
            json!({"session": "sess-1", "version": "2025-11-25", "authorization": "Bearer mct_test"})
        );
        let error = |id: i64| &by_id[&id]["error"];
        for id in [7, 8] {
            let message = error(id)["message"].as_str().unwrap();
            assert!(message.contains("larger than 16 MiB"), "{message}");
        }
        assert_eq!(error(3)["code"], REFUSED);
        assert_eq!(error(3)["message"], "slow down (retry after 7 s)");
        assert_eq!(
            error(3)["data"],
            json!({"http_status": 429, "retry_after_seconds": 7})
        );
        assert_eq!(error(4)["message"], "its own");
        assert_eq!(error(5)["code"], REFUSED);
        assert!(
            error(5)["message"]
                .as_str()
                .unwrap()
                .ends_with("/mcp/teller answered HTTP 503 Service Unavailable: upstream down"),
            "{}",
            error(5)
        );
        assert_eq!(error(6)["code"], UNREACHABLE);
        assert!(
            error(6)["message"]
                .as_str()
                .unwrap()
                .contains("sent no answer"),
            "{}",
            error(6)
        );
    }

    #[test]
    fn bad_settings_are_refused_without_the_token() {
        for (base, token) in [
            ("http://127.0.0.1:1", ""),
            ("http://127.0.0.1:1", "  "),
            ("ftp://host", "mct_secret"),
            ("not a url", "mct_secret"),
            ("https://host/?q=1", "mct_secret"),
            ("http://mcp.example.com", "mct_secret"),
            ("http://127.0.0.1:1", "mct_\u{e9}secret"),
            ("http://127.0.0.1:1", "mct_a secret"),
        ] {
            let Err(e) = Relay::new("teller", base, token) else {
                panic!("{base} accepted")
            };
            assert!(e.contains("INTEGRATIONS_"), "{e}");
            assert!(!e.contains("secret"), "{e}");
        }
    }
}
