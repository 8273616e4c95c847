//! `messages.send` and `drafts.create`, in the JSON form (`raw` base64url) and
//! the upload form (`multipart/related`: JSON metadata, then the RFC 2822
//! message).

use std::collections::HashSet;

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use super::{Answer, Fail, Fake, Sent, invalid, params};

/// What the fake accepted so far.
#[derive(Default)]
pub(super) struct Outbox {
    pub(super) sent: Vec<Sent>,
    pub(super) drafts: Vec<Sent>,
    /// Threads started by sent messages and drafts.
    threads: HashSet<String>,
    next: u64,
}

/// Which call a request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Send,
    Draft,
}

impl Kind {
    /// Where a request keeps the Message: at the top level for a send, under
    /// `message` for a draft.
    fn message(self, request: &Value) -> &Value {
        match self {
            Kind::Send => request,
            Kind::Draft => &request["message"],
        }
    }
}

/// A part of a multipart body: its headers (names lowercased) and content.
#[derive(Debug)]
struct BodyPart {
    headers: Vec<(String, String)>,
    content: Vec<u8>,
}

impl BodyPart {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|window| window == needle)
        .map(|i| i + from)
}

/// The `boundary` parameter of a `multipart/*` content type.
fn boundary(content_type: &str) -> Option<&str> {
    let mut fields = content_type.split(';');
    let mime = fields.next()?.trim();
    if !mime.to_ascii_lowercase().starts_with("multipart/") {
        return None;
    }
    fields
        .find_map(|field| {
            let (name, value) = field.split_once('=')?;
            name.trim()
                .eq_ignore_ascii_case("boundary")
                .then(|| value.trim().trim_matches('"'))
        })
        .filter(|b| !b.is_empty())
}

/// Splits a multipart body (RFC 2046) into its parts: `None` if it is
/// malformed or has none.
fn parts(boundary: &str, body: &[u8]) -> Option<Vec<BodyPart>> {
    let delimiter = format!("\r\n--{boundary}").into_bytes();
    // The first delimiter may open the body, with no line break before it.
    let data = [b"\r\n", body].concat();
    let mut at = find(&data, &delimiter, 0)? + delimiter.len();
    let mut parts = Vec::new();
    loop {
        let rest = &data[at..];
        if rest.starts_with(b"--") {
            return (!parts.is_empty()).then_some(parts);
        }
        let line_end = find(rest, b"\r\n", 0)?;
        if !rest[..line_end].iter().all(|b| matches!(b, b' ' | b'\t')) {
            return None;
        }
        let start = at + line_end + 2;
        let end = find(&data, &delimiter, start)?;
        parts.push(part(&data[start..end])?);
        at = end + delimiter.len();
    }
}

/// A part: header lines, a blank line, then the content.
fn part(bytes: &[u8]) -> Option<BodyPart> {
    let (head, content) = if let Some(content) = bytes.strip_prefix(b"\r\n") {
        (&[][..], content)
    } else {
        let blank = find(bytes, b"\r\n\r\n", 0)?;
        (&bytes[..blank], &bytes[blank + 4..])
    };
    let headers = std::str::from_utf8(head)
        .ok()?
        .split("\r\n")
        .filter(|line| !line.is_empty())
        .map(|line| {
            let (name, value) = line.split_once(':')?;
            Some((name.trim().to_ascii_lowercase(), value.trim().to_string()))
        })
        .collect::<Option<_>>()?;
    Some(BodyPart {
        headers,
        content: content.to_vec(),
    })
}

/// The metadata and the raw message of an upload-form request.
fn upload(
    headers: &HeaderMap,
    query: Option<String>,
    body: &[u8],
) -> Result<(Value, Vec<u8>), Fail> {
    let params = params(query)?;
    if !params
        .iter()
        .any(|(k, v)| k == "uploadType" && v == "multipart")
    {
        return Err(invalid("Invalid uploadType: only multipart is supported"));
    }
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let malformed = || invalid("Invalid multipart request body");
    let parts = boundary(content_type)
        .and_then(|b| parts(b, body))
        .ok_or_else(malformed)?;
    let [metadata, message] = <[BodyPart; 2]>::try_from(parts).map_err(|_| malformed())?;
    let is_json = metadata
        .header("content-type")
        .is_some_and(|t| t.to_ascii_lowercase().starts_with("application/json"));
    let metadata: Value = serde_json::from_slice(&metadata.content)
        .ok()
        .filter(|v: &Value| is_json && v.is_object())
        .ok_or_else(malformed)?;
    Ok((metadata, message.content))
}

/// The request's JSON object.
fn json_body(body: &[u8]) -> Result<Value, Fail> {
    serde_json::from_slice::<Value>(body)
        .ok()
        .filter(Value::is_object)
        .ok_or_else(|| invalid("Invalid JSON payload received."))
}

/// The decoded `raw` of a Message (base64url, padded or not).
fn raw_field(message: &Value) -> Result<Vec<u8>, Fail> {
    let raw = message["raw"].as_str().unwrap_or_default();
    URL_SAFE_NO_PAD
        .decode(raw.trim_end_matches('='))
        .map_err(|_| invalid("Invalid value for ByteString: raw"))
}

/// The unfolded header fields of an RFC 2822 message.
fn header_fields(raw: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(raw);
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in text.split('\n').map(|l| l.trim_end_matches('\r')) {
        if line.is_empty() {
            break;
        }
        match (line.starts_with([' ', '\t']), fields.last_mut()) {
            (true, Some((_, value))) => value.push_str(line),
            _ => {
                if let Some((name, value)) = line.split_once(':') {
                    fields.push((name.trim().to_ascii_lowercase(), value.trim().into()));
                }
            }
        }
    }
    fields
}

fn has_recipient(raw: &[u8]) -> bool {
    header_fields(raw)
        .iter()
        .any(|(name, value)| matches!(name.as_str(), "to" | "cc" | "bcc") && !value.is_empty())
}

/// Accepts a message: records it and answers the Message (or Draft).
fn deliver(fake: &Fake, kind: Kind, thread_id: Option<&str>, raw: Vec<u8>, upload: bool) -> Answer {
    if raw.is_empty() {
        return Err(invalid(
            "'raw' RFC822 payload message string or uploading message via /upload/* URL required",
        ));
    }
    if kind == Kind::Send && !has_recipient(&raw) {
        return Err(invalid("Recipient address required"));
    }
    let mut outbox = fake.outbox.lock().unwrap();
    outbox.next += 1;
    let id = format!("{:016x}", 0x18e5_0000_0000_0000_u64 + outbox.next);
    let thread_id = thread_id
        .filter(|t| !fake.mailbox.thread(t).is_empty() || outbox.threads.contains(*t))
        .map_or_else(|| id.clone(), str::to_string);
    outbox.threads.insert(thread_id.clone());
    let label = if kind == Kind::Send { "SENT" } else { "DRAFT" };
    let message = json!({"id": id, "threadId": thread_id, "labelIds": [label]});
    if kind == Kind::Send {
        outbox.sent.push(Sent {
            id,
            thread_id,
            raw,
            upload,
        });
        return Ok(Json(message));
    }
    let draft_id = format!("r{}", 7_361_521_960_373_289_000_u64 + outbox.next);
    outbox.drafts.push(Sent {
        id: draft_id.clone(),
        thread_id,
        raw,
        upload,
    });
    Ok(Json(json!({"id": draft_id, "message": message})))
}

/// `POST gmail/v1/users/{user}/messages/send` or `.../drafts`, JSON form.
pub(super) async fn json_form(
    kind: Kind,
    State(fake): State<Fake>,
    body: axum::body::Bytes,
) -> Answer {
    let request = json_body(&body)?;
    let message = kind.message(&request);
    let raw = raw_field(message)?;
    deliver(&fake, kind, message["threadId"].as_str(), raw, false)
}

/// `POST upload/gmail/v1/users/{user}/messages/send` or `.../drafts`,
/// `uploadType=multipart`.
pub(super) async fn upload_form(
    kind: Kind,
    State(fake): State<Fake>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Answer {
    let (metadata, raw) = upload(&headers, query, &body)?;
    deliver(
        &fake,
        kind,
        kind.message(&metadata)["threadId"].as_str(),
        raw,
        true,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What google-apis-common's `MultiPartReader` writes.
    const BOUNDARY: &str = "MDuXWGyeE33QFXGchb2VFWc4Z7945d";

    fn google_body(metadata: &str, raw: &str) -> Vec<u8> {
        format!(
            "\r\n--{BOUNDARY}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{metadata}\
             \r\n--{BOUNDARY}\r\ncontent-type: message/rfc822\r\ncontent-length: {}\r\n\r\n{raw}\
             \r\n--{BOUNDARY}--\r\n",
            metadata.len(),
            raw.len()
        )
        .into_bytes()
    }

    #[test]
    fn parses_the_body_google_apis_common_sends() {
        let raw = "To: ana@example.com\r\nSubject: Hi\r\n\r\nHello\r\n-- \r\nsig\r\n";
        let body = google_body(r#"{"threadId":"18e2b7c40a1f3d01"}"#, raw);
        let content_type = format!("multipart/related;boundary={BOUNDARY}");
        let parts = parts(boundary(&content_type).unwrap(), &body).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].header("content-type"), Some("application/json"));
        assert_eq!(parts[0].content, br#"{"threadId":"18e2b7c40a1f3d01"}"#);
        assert_eq!(parts[1].header("content-type"), Some("message/rfc822"));
        assert_eq!(parts[1].content, raw.as_bytes());
    }

    #[test]
    fn parses_a_body_opening_with_the_delimiter_and_a_quoted_boundary() {
        let body =
            b"--xyz\r\nContent-Type: application/json\r\n\r\n{}\r\n--xyz\r\n\r\nraw\r\n--xyz--";
        let boundary = boundary("Multipart/Related; boundary=\"xyz\"").unwrap();
        let parts = parts(boundary, body).unwrap();
        assert_eq!(parts[0].content, b"{}");
        assert!(parts[1].headers.is_empty());
        assert_eq!(parts[1].content, b"raw");
    }

    #[test]
    fn rejects_malformed_multipart_bodies() {
        assert_eq!(boundary("application/json"), None);
        assert_eq!(boundary("multipart/related"), None);
        let unterminated = google_body("{}", "raw");
        let cut = &unterminated[..unterminated.len() - 6];
        assert!(parts(BOUNDARY, cut).is_none());
        assert!(parts("other", &google_body("{}", "raw")).is_none());
        assert!(parts(BOUNDARY, format!("--{BOUNDARY}--\r\n").as_bytes()).is_none());
        assert!(part(b"no blank line").is_none());
    }

    #[test]
    fn raw_accepts_padded_and_unpadded_base64url() {
        let raw = "To: a@b.example\r\n\r\nhi?>";
        let padded = base64::engine::general_purpose::URL_SAFE.encode(raw);
        assert!(padded.ends_with('='));
        for encoded in [padded.clone(), padded.trim_end_matches('=').to_string()] {
            assert_eq!(raw_field(&json!({"raw": encoded})).unwrap(), raw.as_bytes());
        }
        assert!(raw_field(&json!({"raw": "not base64!"})).is_err());
    }

    #[test]
    fn finds_recipients_in_folded_headers() {
        assert!(has_recipient(
            b"Subject: x\r\nTo:\r\n ana@example.com\r\n\r\nbody"
        ));
        assert!(!has_recipient(b"Subject: x\r\n\r\nTo: ana@example.com\r\n"));
    }
}
