//! Request bodies: JSON of a known shape, at most [`MAX_BODY`] bytes, with
//! an error that says what is wrong and never repeats a value it was sent.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::AppState;
use super::auth::{Authenticated, Caller};
use super::error::ApiError;

/// The largest request body accepted.
pub const MAX_BODY: usize = 64 * 1024;

/// A JSON body deserialized into `T` (whose unknown fields are refused).
/// Revocation takes effect at the moment of use: on a request whose caller
/// was checked before its body (which may take `HTTP_BODY_TIMEOUT_MS`), the
/// caller is checked again once the body has arrived, and a token revoked
/// or a session ended meanwhile is 401 with nothing done.
pub struct Payload<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for Payload<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        let (mut parts, body) = request.into_parts();
        let request = Request::from_parts(parts.clone(), body);
        let bytes = Bytes::from_request(request, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "PAYLOAD_TOO_LARGE",
                    format!("the body is larger than {} KiB", MAX_BODY / 1024),
                )
            } else {
                ApiError::invalid("the body could not be read")
            }
        })?;
        if parts.extensions.get::<Authenticated>().is_some() {
            Caller::from_request_parts(&mut parts, state).await?;
        }
        serde_json::from_slice(&bytes)
            .map(Payload)
            .map_err(|e| ApiError::invalid(describe(&e)))
    }
}

/// A page of a cursor-paged list (`?after=&limit=`): the last `seq`
/// already read (default 0) and how many to read (default 100, 1 to 1000).
pub fn page(after: Option<i64>, limit: Option<i64>) -> (i64, i64) {
    (
        after.unwrap_or(0).max(0),
        limit.unwrap_or(100).clamp(1, 1000),
    )
}

/// A query string deserialized into `T` (unknown parameters refused).
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| Params(value))
            .map_err(|_| {
                ApiError::invalid(
                    "the query string has an unknown, repeated or malformed parameter",
                )
            })
    }
}

/// serde_json's complaint without the values it quotes: a wrongly typed
/// field may hold a secret.
fn describe(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let at = format!("at line {} column {}", e.line(), e.column());
    let text = e.to_string();
    let text = text.strip_suffix(&format!(" {at}")).unwrap_or(&text);
    match e.classify() {
        Category::Syntax | Category::Eof => format!("the body is not valid JSON ({text} {at})"),
        Category::Data
            if text.starts_with("invalid type")
                || text.starts_with("invalid value")
                || text.starts_with("unknown variant") =>
        {
            let expected = text
                .split_once(", expected")
                .map_or(String::new(), |(_, x)| format!(": expected{x}"));
            format!("a field has the wrong type {at}{expected}")
        }
        _ => format!("the body does not have the expected fields: {text} ({at})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Shape {
        enabled: Option<bool>,
        label: Option<String>,
    }

    #[test]
    fn errors_say_what_is_wrong_without_the_values() {
        let cases = [
            (r#"{"enabled": "SECRET-1"}"#, "wrong type"),
            (r#"{"label": 12345678}"#, "wrong type"),
            (r#"{"password": "SECRET-2"}"#, "unknown field `password`"),
            (r#"{"enabled": tru"#, "not valid JSON"),
            (r#"[1, 2]"#, "expected"),
        ];
        for (body, needle) in cases {
            let e = serde_json::from_str::<Shape>(body).unwrap_err();
            let message = describe(&e);
            assert!(message.contains(needle), "{body}: {message}");
            assert!(
                !message.contains("SECRET") && !message.contains("12345678"),
                "{message}"
            );
        }
    }
}
