//! A fake Gmail API and Google OAuth server on one loopback port.
//!
//! Gmail under `gmail/v1/users/{me|EMAIL}/...` (`messages`, `messages/{id}`,
//! `messages/{id}/attachments/{id}`, `threads/{id}`, `labels`, `profile`,
//! `messages/send`, `drafts`) and `upload/gmail/v1/users/{user}/...` (the
//! multipart upload form of `messages/send` and `drafts`), with Bearer access
//! tokens and Google's `{"error": {"code", "message", "errors", "status"}}`
//! shape. OAuth at `/token` (the `refresh_token` grant, and the
//! `authorization_code` grant with PKCE for codes from
//! [`FakeGmail::authorize`]) and `/revoke`. The mailbox is seeded with the
//! messages named by the `MSG_*` constants.

mod mailbox;
mod oauth;
mod send;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{DefaultBodyLimit, Path, RawQuery, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE;
use serde_json::{Value, json};

use crate::faults::{self, Faults};
use crate::http::{Served, serve};
use mailbox::{Format, Mailbox, Message};
use oauth::Grants;
use send::{Kind, Outbox};

/// The mailbox's address (also accepted as `userId` in paths).
pub const EMAIL: &str = "vz.finance@example.com";
/// The OAuth client the token endpoint knows.
pub const CLIENT_ID: &str = "418206473611-fakegmail0sidecar.apps.googleusercontent.com";
/// The secret of [`CLIENT_ID`].
pub const CLIENT_SECRET: &str = "GOCSPX-fake-gmail-client-secret";
/// The refresh token of the user's grant.
pub const REFRESH_TOKEN: &str = "1//0gFakeGmailRefreshToken-vzFinance-CgYIARAAGBASNwF";
/// The `scope` of minted access tokens.
pub const SCOPES: &str = "https://www.googleapis.com/auth/gmail.readonly https://www.googleapis.com/auth/gmail.send https://www.googleapis.com/auth/gmail.compose";

/// Plain text from Ana ("Lunch on Friday?"), INBOX and UNREAD.
pub const MSG_PLAIN: &str = "18e2b7c40a1f3d01";
/// The thread of [`MSG_PLAIN`] and [`MSG_LUNCH_REPLY`].
pub const THREAD_LUNCH: &str = MSG_PLAIN;
/// Our reply to Ana ("Re: Lunch on Friday?"), SENT.
pub const MSG_LUNCH_REPLY: &str = "18e2ba1f6c0d4e02";
/// HTML only, from the bank ("Your statement is ready"), INBOX and `Label_1`.
pub const MSG_HTML: &str = "18e305aa91b27c03";
/// multipart/mixed: alternative (Latin-1 plain, HTML), a CSV and a PDF
/// ("Rechnung für März"), INBOX and `Label_2`.
pub const MSG_NESTED: &str = "18e35c0e7f4a2b04";
/// Body data without base64 padding, Subject still an RFC 2047 encoded-word
/// ("Überweisung bestätigt"), INBOX and UNREAD.
pub const MSG_UNPADDED: &str = "18e3a8d25e6b1f05";
/// About 30,000 characters of plain text ("Quarterly report").
pub const MSG_LONG: &str = "18e41a3c8d9e0a06";
/// A 6 MiB `scan.tiff` attachment ("Scan from the office printer").
pub const MSG_BIG_ATTACHMENT: &str = "18e4603b2c1d5f07";
/// `expenses.csv` of [`MSG_NESTED`].
pub const ATTACHMENT_CSV: &str = "ANGjdJ8wExpensesCsvK3v9Qz1";
/// `invoice.pdf` of [`MSG_NESTED`].
pub const ATTACHMENT_PDF: &str = "ANGjdJ9xInvoicePdfT2m7Lp4";
/// `scan.tiff` of [`MSG_BIG_ATTACHMENT`], 6 MiB.
pub const ATTACHMENT_BIG: &str = "ANGjdJ-yScanTiffBigR8w0Hs6";

/// Bodies up to this size are read (Gmail takes 35 MB uploads).
const BODY_LIMIT: usize = 40 * 1024 * 1024;

/// A message accepted by `messages.send` or `drafts.create`.
#[derive(Debug, Clone)]
pub struct Sent {
    /// The message id (for a draft: the draft id, `r<digits>`).
    pub id: String,
    pub thread_id: String,
    /// The RFC 2822 message, as sent.
    pub raw: Vec<u8>,
    /// Whether it came through the multipart upload form.
    pub upload: bool,
}

/// The state the handlers share.
#[derive(Clone)]
struct Fake {
    mailbox: Arc<Mailbox>,
    grants: Arc<Mutex<Grants>>,
    outbox: Arc<Mutex<Outbox>>,
}

/// A running fake Gmail + Google OAuth on loopback.
pub struct FakeGmail {
    served: Served,
    fake: Fake,
    faults: Faults,
}

impl FakeGmail {
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with_html(Vec::new()).await
    }

    /// Like [`Self::start`], with one more HTML-only message in the inbox
    /// per `(id, html)` (an id is 16 hex digits).
    pub async fn start_with_html(extra: Vec<(&'static str, String)>) -> anyhow::Result<Self> {
        let fake = Fake {
            mailbox: Arc::new(Mailbox::seed(extra)),
            grants: Arc::default(),
            outbox: Arc::default(),
        };
        let faults = Faults::default();
        let users = "/gmail/v1/users/{user}";
        let uploads = "/upload/gmail/v1/users/{user}";
        let app = Router::new()
            .route(&format!("{users}/messages"), get(list_messages))
            .route(&format!("{users}/messages/{{id}}"), get(get_message))
            .route(
                &format!("{users}/messages/{{message}}/attachments/{{id}}"),
                get(get_attachment),
            )
            .route(&format!("{users}/threads/{{id}}"), get(get_thread))
            .route(&format!("{users}/labels"), get(labels))
            .route(&format!("{users}/profile"), get(profile))
            .route(
                &format!("{users}/messages/send"),
                post(|s, b| send::json_form(Kind::Send, s, b)),
            )
            .route(
                &format!("{users}/drafts"),
                post(|s, b| send::json_form(Kind::Draft, s, b)),
            )
            .route(
                &format!("{uploads}/messages/send"),
                post(|s, q, h, b| send::upload_form(Kind::Send, s, q, h, b)),
            )
            .route(
                &format!("{uploads}/drafts"),
                post(|s, q, h, b| send::upload_form(Kind::Draft, s, q, h, b)),
            )
            .route_layer(from_fn_with_state(fake.clone(), authorize))
            .route("/o/oauth2/v2/auth", get(oauth::consent))
            .route("/token", post(oauth::token))
            .route("/revoke", post(oauth::revoke))
            .with_state(fake.clone())
            .layer(DefaultBodyLimit::max(BODY_LIMIT))
            .layer(from_fn_with_state(faults.clone(), faults::layer));
        Ok(Self {
            served: serve(app).await?,
            fake,
            faults,
        })
    }

    /// Where to point `GMAIL_API_BASE` (with a trailing slash).
    pub fn api_base(&self) -> String {
        format!("http://{}/", self.served.addr)
    }

    /// Where to point `GOOGLE_TOKEN_URL`.
    pub fn token_url(&self) -> String {
        format!("http://{}/token", self.served.addr)
    }

    /// Where to point `GOOGLE_AUTHORIZE_URL`: the consent page.
    pub fn authorize_url(&self) -> String {
        format!("http://{}/o/oauth2/v2/auth", self.served.addr)
    }

    /// Where to point `GOOGLE_REVOKE_URL`.
    pub fn revoke_url(&self) -> String {
        format!("http://{}/revoke", self.served.addr)
    }

    /// Recorded requests and fault injection, over every route.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// The messages sent so far, oldest first.
    pub fn sent(&self) -> Vec<Sent> {
        self.fake.outbox.lock().unwrap().sent.clone()
    }

    /// The drafts created so far, oldest first.
    pub fn drafts(&self) -> Vec<Sent> {
        self.fake.outbox.lock().unwrap().drafts.clone()
    }

    /// The user consents on Google's authorize page to a request that carried
    /// `code_challenge` (`S256`) and `redirect_uri`: the single-use
    /// authorization code (`4/0A...`) Google redirects back with, valid 10
    /// minutes. `/token` exchanges it (`grant_type=authorization_code`) given
    /// the same `redirect_uri` and the matching `code_verifier`. Without
    /// `with_refresh_token` the answer has no `refresh_token` (the user had
    /// granted the app before); with it, [`REFRESH_TOKEN`] is returned and a
    /// killed or revoked grant lives again.
    pub fn authorize(
        &self,
        code_challenge: &str,
        redirect_uri: &str,
        with_refresh_token: bool,
    ) -> String {
        self.fake.grants.lock().unwrap().authorize(
            code_challenge,
            redirect_uri,
            with_refresh_token,
            oauth::CODE_LIFETIME,
        )
    }

    /// Successful `authorization_code` grants so far.
    pub fn exchanges(&self) -> usize {
        self.fake.grants.lock().unwrap().exchanges
    }

    /// Successful `refresh_token` grants so far.
    pub fn refreshes(&self) -> usize {
        self.fake.grants.lock().unwrap().refreshes
    }

    /// Every token posted to `/revoke`, oldest first.
    pub fn revoked(&self) -> Vec<String> {
        self.fake.grants.lock().unwrap().revoked.clone()
    }

    /// Mints an access token valid for `expires_in` seconds (to seed a stored
    /// configuration).
    pub fn issue_access_token(&self, expires_in: u64) -> String {
        self.fake.grants.lock().unwrap().mint(expires_in)
    }

    /// Every access token issued so far answers 401 from now on.
    pub fn expire_access_tokens(&self) {
        self.fake.grants.lock().unwrap().expire_all();
    }

    /// The refresh token answers `invalid_grant` from now on.
    pub fn kill_grant(&self) {
        self.fake.grants.lock().unwrap().kill();
    }

    /// The `expires_in` of the next minted tokens (3599 by default).
    pub fn set_expires_in(&self, secs: u64) {
        self.fake.grants.lock().unwrap().expires_in = secs;
    }
}

/// Google's API error body, e.g. `error(429, "rateLimitExceeded", "Too many
/// requests")` for a fault.
pub fn error(code: u16, reason: &str, message: &str) -> Value {
    let status = match code {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        500 => "INTERNAL",
        503 => "UNAVAILABLE",
        _ => "UNKNOWN",
    };
    json!({"error": {
        "code": code,
        "message": message,
        "errors": [{"message": message, "domain": "global", "reason": reason}],
        "status": status,
    }})
}

/// A Gmail error response.
#[derive(Debug)]
struct Fail {
    code: u16,
    body: Value,
}

impl IntoResponse for Fail {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code).unwrap_or(StatusCode::BAD_REQUEST);
        let mut response = (status, Json(self.body)).into_response();
        if self.code == 401 {
            response.headers_mut().insert(
                "www-authenticate",
                HeaderValue::from_static(
                    "Bearer realm=\"https://accounts.google.com/\", error=\"invalid_token\"",
                ),
            );
        }
        response
    }
}

type Answer = Result<Json<Value>, Fail>;

fn fail(code: u16, reason: &str, message: &str) -> Fail {
    Fail {
        code,
        body: error(code, reason, message),
    }
}

fn invalid(message: &str) -> Fail {
    fail(400, "invalidArgument", message)
}

fn not_found() -> Fail {
    fail(404, "notFound", "Requested entity was not found.")
}

/// 401: the header is missing (`Login Required`) or the token is not valid.
fn unauthenticated(missing: bool) -> Fail {
    let (top, message, reason) = if missing {
        (
            "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
            "Login Required.",
            "required",
        )
    } else {
        (
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
            "Invalid Credentials",
            "authError",
        )
    };
    let mut failure = fail(401, reason, top);
    failure.body["error"]["errors"][0] = json!({
        "message": message, "domain": "global", "reason": reason,
        "location": "Authorization", "locationType": "header",
    });
    failure
}

/// Middleware on the Gmail routes: a valid Bearer access token, then a
/// `userId` of `me` or [`EMAIL`].
async fn authorize(
    State(fake): State<Fake>,
    Path(path): Path<HashMap<String, String>>,
    request: Request,
    next: Next,
) -> Response {
    let bearer = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.strip_prefix("Bearer ").unwrap_or_default().trim());
    let valid = bearer.is_some_and(|token| fake.grants.lock().unwrap().is_valid(token));
    if !valid {
        return unauthenticated(bearer.is_none()).into_response();
    }
    let user = path.get("user").map(String::as_str).unwrap_or_default();
    if user == "me" || user.eq_ignore_ascii_case(EMAIL) {
        next.run(request).await
    } else if user.contains('@') {
        fail(403, "forbidden", &format!("Delegation denied for {EMAIL}")).into_response()
    } else {
        invalid("Invalid user id specified in request/Delegation denied").into_response()
    }
}

/// The query string's pairs, repeated keys kept.
fn params(query: Option<String>) -> Result<Vec<(String, String)>, Fail> {
    serde_urlencoded::from_str(query.as_deref().unwrap_or_default())
        .map_err(|_| invalid("Invalid query string"))
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn all<'a>(params: &'a [(String, String)], name: &'a str) -> impl Iterator<Item = String> + 'a {
    params
        .iter()
        .filter(move |(k, _)| k == name)
        .map(|(_, v)| v.clone())
}

/// The `format` and `metadataHeaders` parameters.
fn format(params: &[(String, String)]) -> Result<(Format, Vec<String>), Fail> {
    let format = Format::parse(param(params, "format"))
        .ok_or_else(|| invalid("Invalid value for format"))?;
    Ok((format, all(params, "metadataHeaders").collect()))
}

/// A message or thread id: Gmail's are hexadecimal.
fn check_id(id: &str) -> Result<(), Fail> {
    if !id.is_empty() && id.len() <= 32 && id.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(invalid("Invalid id value"))
    }
}

fn find_message<'a>(fake: &'a Fake, id: &str) -> Result<&'a Message, Fail> {
    check_id(id)?;
    fake.mailbox.message(id).ok_or_else(not_found)
}

/// Page tokens look like Gmail's: a large decimal number.
const PAGE_TOKEN_BASE: u64 = 13_370_000_000_000_000_000;

fn page_token(offset: usize) -> String {
    (PAGE_TOKEN_BASE + offset as u64).to_string()
}

fn page_offset(token: &str, total: usize) -> Option<usize> {
    let offset = token.parse::<u64>().ok()?.checked_sub(PAGE_TOKEN_BASE)?;
    usize::try_from(offset).ok().filter(|o| *o < total)
}

async fn list_messages(State(fake): State<Fake>, RawQuery(query): RawQuery) -> Answer {
    let params = params(query)?;
    let max = match param(&params, "maxResults") {
        None => 100,
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| invalid("Invalid value for maxResults"))?
            .clamp(1, 500),
    };
    let label_ids: Vec<String> = all(&params, "labelIds").collect();
    let found = fake
        .mailbox
        .search(param(&params, "q").unwrap_or_default(), &label_ids);
    let start = match param(&params, "pageToken") {
        None => 0,
        Some(token) => {
            page_offset(token, found.len()).ok_or_else(|| invalid("Invalid pageToken"))?
        }
    };
    let end = (start + max).min(found.len());
    let mut body = json!({"resultSizeEstimate": found.len()});
    if start < end {
        body["messages"] = found[start..end]
            .iter()
            .map(|m| json!({"id": m.id, "threadId": m.thread_id}))
            .collect();
    }
    if end < found.len() {
        body["nextPageToken"] = page_token(end).into();
    }
    Ok(Json(body))
}

async fn get_message(
    State(fake): State<Fake>,
    Path((_, id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Answer {
    let (format, headers) = format(&params(query)?)?;
    Ok(Json(find_message(&fake, &id)?.json(format, &headers)))
}

async fn get_thread(
    State(fake): State<Fake>,
    Path((_, id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Answer {
    let (format, headers) = format(&params(query)?)?;
    if format == Format::Raw {
        return Err(invalid(
            "Invalid value for format: raw is not supported for threads",
        ));
    }
    check_id(&id)?;
    let messages = fake.mailbox.thread(&id);
    let history = messages
        .iter()
        .map(|m| m.history_id)
        .max()
        .ok_or_else(not_found)?;
    let messages: Vec<Value> = messages.iter().map(|m| m.json(format, &headers)).collect();
    Ok(Json(
        json!({"id": id, "historyId": history.to_string(), "messages": messages}),
    ))
}

async fn get_attachment(
    State(fake): State<Fake>,
    Path((_, message, id)): Path<(String, String, String)>,
) -> Answer {
    let data = find_message(&fake, &message)?
        .attachment(&id)
        .ok_or_else(not_found)?;
    Ok(Json(json!({
        "attachmentId": id,
        "size": data.size(),
        "data": URL_SAFE.encode(data.bytes()),
    })))
}

async fn labels(State(fake): State<Fake>) -> Json<Value> {
    Json(fake.mailbox.labels())
}

async fn profile(State(fake): State<Fake>) -> Json<Value> {
    Json(fake.mailbox.profile())
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// One HTTP/1.1 request over a fresh connection: the status and the JSON body.
    async fn call(
        gmail: &FakeGmail,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, Value) {
        let mut stream = tokio::net::TcpStream::connect(gmail.served.addr)
            .await
            .unwrap();
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (name, value) in headers {
            request += &format!("{name}: {value}\r\n");
        }
        request += "\r\n";
        stream.write_all(request.as_bytes()).await.unwrap();
        stream.write_all(body).await.unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.unwrap();
        let response = String::from_utf8(response).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, serde_json::from_str(body).unwrap())
    }

    async fn refresh(gmail: &FakeGmail) -> (u16, Value) {
        let form = serde_urlencoded::to_string([
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
            ("refresh_token", REFRESH_TOKEN),
            ("grant_type", "refresh_token"),
        ])
        .unwrap();
        let headers = [("Content-Type", "application/x-www-form-urlencoded")];
        call(gmail, "POST", "/token", &headers, form.as_bytes()).await
    }

    async fn exchange(gmail: &FakeGmail, code: &str, verifier: &str) -> (u16, Value) {
        let form = serde_urlencoded::to_string([
            ("code", code),
            ("code_verifier", verifier),
            ("redirect_uri", "http://localhost:7878/callback"),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
            ("grant_type", "authorization_code"),
        ])
        .unwrap();
        let headers = [("Content-Type", "application/x-www-form-urlencoded")];
        call(gmail, "POST", "/token", &headers, form.as_bytes()).await
    }

    #[test]
    fn page_tokens_round_trip_and_reject_garbage() {
        assert_eq!(page_offset(&page_token(3), 7), Some(3));
        assert_eq!(page_offset(&page_token(7), 7), None);
        assert_eq!(page_offset("12", 7), None);
        assert_eq!(page_offset("abc", 7), None);
    }

    #[tokio::test]
    async fn serves_gmail_behind_oauth() {
        let gmail = FakeGmail::start().await.unwrap();
        let (status, token) = refresh(&gmail).await;
        assert_eq!(status, 200);
        assert_eq!(token["token_type"], "Bearer");
        let bearer = format!("Bearer {}", token["access_token"].as_str().unwrap());
        let auth = [("Authorization", bearer.as_str())];
        let users = format!("/gmail/v1/users/{EMAIL}");

        let (status, list) = call(
            &gmail,
            "GET",
            "/gmail/v1/users/me/messages?q=in%3Ainbox&maxResults=4&alt=json",
            &auth,
            b"",
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(list["messages"].as_array().unwrap().len(), 4);
        assert_eq!(list["messages"][0]["id"], MSG_BIG_ATTACHMENT);
        let next = list["nextPageToken"].as_str().unwrap();
        let path = format!("{users}/messages?q=in%3Ainbox&maxResults=4&pageToken={next}");
        let (_, rest) = call(&gmail, "GET", &path, &auth, b"").await;
        assert_eq!(rest["messages"].as_array().unwrap().len(), 2);
        assert!(rest["nextPageToken"].is_null());
        let (_, none) = call(
            &gmail,
            "GET",
            "/gmail/v1/users/me/messages?q=nothing+matches+this",
            &auth,
            b"",
        )
        .await;
        assert_eq!(none, json!({"resultSizeEstimate": 0}));

        let path = format!(
            "/gmail/v1/users/me/threads/{THREAD_LUNCH}?format=metadata&metadataHeaders=Subject"
        );
        let (status, thread) = call(&gmail, "GET", &path, &auth, b"").await;
        assert_eq!(status, 200);
        assert_eq!(thread["messages"][1]["id"], MSG_LUNCH_REPLY);

        let path = format!("/gmail/v1/users/me/messages/{MSG_NESTED}/attachments/{ATTACHMENT_CSV}");
        let (_, attachment) = call(&gmail, "GET", &path, &auth, b"").await;
        let csv = URL_SAFE
            .decode(attachment["data"].as_str().unwrap())
            .unwrap();
        assert!(csv.starts_with(b"date,description,amount"));

        let (status, missing) = call(
            &gmail,
            "GET",
            "/gmail/v1/users/me/messages/18e2b7c40a1f3dff",
            &auth,
            b"",
        )
        .await;
        assert_eq!(
            (status, missing["error"]["errors"][0]["reason"].clone()),
            (404, json!("notFound"))
        );
        let (status, _) = call(
            &gmail,
            "GET",
            "/gmail/v1/users/me/messages/not-an-id!",
            &auth,
            b"",
        )
        .await;
        assert_eq!(status, 400);
        let (status, _) = call(
            &gmail,
            "GET",
            "/gmail/v1/users/someone@example.com/profile",
            &auth,
            b"",
        )
        .await;
        assert_eq!(status, 403);

        let raw = "To: ana@example.com\r\nSubject: Re: Lunch on Friday?\r\n\r\nSee you!\r\n";
        let body = format!(
            "\r\n--BOUNDARY\r\ncontent-type: application/json\r\n\r\n{{\"threadId\":\"{THREAD_LUNCH}\"}}\r\n--BOUNDARY\r\ncontent-type: message/rfc822\r\n\r\n{raw}\r\n--BOUNDARY--\r\n"
        );
        let headers = [
            auth[0],
            ("Content-Type", "multipart/related;boundary=BOUNDARY"),
        ];
        let path = "/upload/gmail/v1/users/me/messages/send?alt=json&uploadType=multipart";
        let (status, sent) = call(&gmail, "POST", path, &headers, body.as_bytes()).await;
        assert_eq!(
            (status, sent["threadId"].clone()),
            (200, json!(THREAD_LUNCH))
        );
        assert_eq!(sent["labelIds"], json!(["SENT"]));
        let (status, _) = call(&gmail, "POST", path, &headers, b"not multipart").await;
        assert_eq!(status, 400);

        let draft = json!({"message": {"raw": URL_SAFE.encode("Subject: draft\r\n\r\nHi"), "threadId": "18e2b7c40a1f3dff"}});
        let headers = [auth[0], ("Content-Type", "application/json")];
        let (status, created) = call(
            &gmail,
            "POST",
            "/gmail/v1/users/me/drafts",
            &headers,
            draft.to_string().as_bytes(),
        )
        .await;
        assert_eq!(status, 200);
        assert!(created["id"].as_str().unwrap().starts_with('r'));
        assert_eq!(
            created["message"]["threadId"], created["message"]["id"],
            "unknown thread: a new one"
        );
        let sent = gmail.sent();
        assert_eq!(
            (sent.len(), sent[0].raw.as_slice(), sent[0].upload),
            (1, raw.as_bytes(), true)
        );
        assert_eq!(gmail.drafts()[0].id, created["id"].as_str().unwrap());

        gmail.expire_access_tokens();
        let (status, denied) = call(&gmail, "GET", "/gmail/v1/users/me/labels", &auth, b"").await;
        assert_eq!(
            (status, denied["error"]["status"].clone()),
            (401, json!("UNAUTHENTICATED"))
        );
        let form = format!("token={}", REFRESH_TOKEN.replace('/', "%2F"));
        let (status, _) = call(
            &gmail,
            "POST",
            "/revoke",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            form.as_bytes(),
        )
        .await;
        assert_eq!(status, 200);
        let (status, dead) = refresh(&gmail).await;
        assert_eq!(
            (status, dead["error"].clone()),
            (400, json!("invalid_grant"))
        );
        assert_eq!(
            (gmail.refreshes(), gmail.revoked()),
            (1, vec![REFRESH_TOKEN.to_string()])
        );
    }

    #[tokio::test]
    async fn connecting_again_with_pkce_revives_the_grant() {
        let gmail = FakeGmail::start().await.unwrap();
        gmail.kill_grant();
        let verifier = "kV3nM0q_Zr8sT1uW4xY7a-b.c~dE2fG5hJ6iK9lL0mNoPq";
        let code = gmail.authorize(
            &oauth::s256(verifier),
            "http://localhost:7878/callback",
            true,
        );
        let (status, wrong) = exchange(&gmail, &code, &verifier.replace('k', "K")).await;
        assert_eq!(
            (status, wrong["error"].as_str()),
            (400, Some("invalid_grant"))
        );
        let (status, token) = exchange(&gmail, &code, verifier).await;
        assert_eq!(status, 200);
        assert_eq!(token["refresh_token"], REFRESH_TOKEN);
        let bearer = format!("Bearer {}", token["access_token"].as_str().unwrap());
        let auth = [("Authorization", bearer.as_str())];
        let (status, profile) = call(&gmail, "GET", "/gmail/v1/users/me/profile", &auth, b"").await;
        assert_eq!(
            (status, profile["emailAddress"].as_str()),
            (200, Some(EMAIL))
        );
        let (status, _) = refresh(&gmail).await;
        assert_eq!(status, 200);
        let (status, _) = exchange(&gmail, &code, verifier).await;
        assert_eq!(status, 400);
        assert_eq!((gmail.exchanges(), gmail.refreshes()), (1, 1));
    }
}
