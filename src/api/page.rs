//! The Settings → Integrations page: HTML, CSS and a small script embedded
//! in the binary (`src/api/page/`). The page is static and holds nothing of
//! the user's: it loads everything from the REST API with the session
//! cookie, so `/settings/*` needs no sign-in and serves no data.

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use super::AppState;

const INDEX: &str = include_str!("page/index.html");
const SIGN_IN: &str = include_str!("page/sign-in.html");
const APP_JS: &str = include_str!("page/app.js");
const SIGN_IN_JS: &str = include_str!("page/sign-in.js");
const APP_CSS: &str = include_str!("page/app.css");

/// Where the page lives.
pub const PATH: &str = "/settings/integrations";

/// The page's routes: `/` and `/settings` redirect to it, the query kept
/// (an OAuth callback's `?connected=gmail`).
pub fn routes() -> Router<AppState> {
    let files: [(&str, &'static str, &'static str); 5] = [
        (PATH, INDEX, "text/html; charset=utf-8"),
        ("/settings/sign-in", SIGN_IN, "text/html; charset=utf-8"),
        (
            "/settings/assets/app.js",
            APP_JS,
            "text/javascript; charset=utf-8",
        ),
        (
            "/settings/assets/sign-in.js",
            SIGN_IN_JS,
            "text/javascript; charset=utf-8",
        ),
        (
            "/settings/assets/app.css",
            APP_CSS,
            "text/css; charset=utf-8",
        ),
    ];
    files.into_iter().fold(
        Router::new()
            .route("/", get(to_page))
            .route("/settings", get(to_page)),
        |router, (path, body, content_type)| {
            router.route(path, get(move |state| asset(state, body, content_type)))
        },
    )
}

async fn to_page(RawQuery(query): RawQuery) -> Redirect {
    match query {
        Some(query) if !query.is_empty() => Redirect::to(&format!("{PATH}?{query}")),
        _ => Redirect::to(PATH),
    }
}

/// `body` as `content_type`, with a policy that runs only this server's
/// scripts (and Teller Connect's), in no frame, sending no referrer.
async fn asset(
    State(state): State<AppState>,
    body: &'static str,
    content_type: &'static str,
) -> Response {
    let (_, _, connect_url) = state.connect.teller_connect();
    let teller = origin(connect_url);
    let policy = format!(
        "default-src 'self'; script-src 'self' {teller}; frame-src {teller} https://teller.io https://*.teller.io; \
         connect-src 'self'; img-src 'self' data:; style-src 'self'; object-src 'none'; \
         base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    );
    let mut response = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    let headers = response.headers_mut();
    if let Ok(policy) = HeaderValue::from_str(&policy) {
        headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    for (name, value) in [
        (header::CACHE_CONTROL, "no-cache"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// The `scheme://host[:port]` of `url`, for a policy; `'none'`-safe when it
/// has none.
fn origin(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return String::new();
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let safe = host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
    if !safe || !matches!(scheme, "http" | "https") {
        return String::new();
    }
    format!("{scheme}://{host}")
}
