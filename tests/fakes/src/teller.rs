//! A fake Teller API: two enrollments (PNC with three accounts, one of them
//! holding 320 transactions; Chase with two), HTTP Basic auth with the access
//! token, Teller's error shape, and an optional mutual-TLS mode; and a
//! stand-in for Teller Connect's script (`teller_connect.js`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::faults::{self, Faults};
use crate::tls::TestPki;

/// The PNC enrollment's access token.
pub const PNC_TOKEN: &str = "test_token_pnc";
/// The Chase enrollment's access token.
pub const CHASE_TOKEN: &str = "test_token_chase";
/// The account with 320 transactions.
pub const BUSY_ACCOUNT: &str = "acc_pnc_checking";

struct Account {
    id: &'static str,
    name: &'static str,
    kind: &'static str,
    subtype: &'static str,
    last_four: &'static str,
    ledger: &'static str,
    available: Option<&'static str>,
    transactions: Vec<Value>,
}

struct Enrollment {
    id: &'static str,
    institution: (&'static str, &'static str),
    accounts: Vec<Account>,
    /// `enrollment.disconnected...` code once the bank login broke.
    disconnected: Option<String>,
    revoked: bool,
}

#[derive(Default)]
struct Bank {
    by_token: HashMap<String, Enrollment>,
}

type Shared = Arc<Mutex<Bank>>;

/// A running fake Teller on loopback.
pub struct FakeTeller {
    base_url: String,
    bank: Shared,
    faults: Faults,
    pki: Option<TestPki>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeTeller {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeTeller {
    /// Starts the fake over plain HTTP (Teller's sandbox needs no certificate).
    pub async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (bank, faults, app) = app();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            base_url: format!("http://{addr}"),
            bank,
            faults,
            pki: None,
            server,
        })
    }

    /// Starts the fake over TLS that requires a client certificate signed by a
    /// CA generated now; the CA and the client pair are written into `dir`.
    pub async fn start_mtls(dir: &std::path::Path) -> anyhow::Result<Self> {
        let pki = TestPki::generate(dir)?;
        let config = axum_server::tls_rustls::RustlsConfig::from_config(pki.server_config()?);
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr: SocketAddr = listener.local_addr()?;
        let (bank, faults, app) = app();
        let server = axum_server::from_tcp_rustls(listener, config)?;
        let server = tokio::spawn(async move {
            let _ = server.serve(app.into_make_service()).await;
        });
        Ok(Self {
            base_url: format!("https://{addr}"),
            bank,
            faults,
            pki: Some(pki),
            server,
        })
    }

    /// Where to point `TELLER_API_BASE`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Where to point `TELLER_CONNECT_URL`: a stand-in for Teller Connect's
    /// script, whose enrollments are the fake's own.
    pub fn connect_url(&self) -> String {
        format!("{}/connect/connect.js", self.base_url)
    }

    /// The test PKI in mutual-TLS mode.
    pub fn pki(&self) -> Option<&TestPki> {
        self.pki.as_ref()
    }

    /// Recorded requests and fault injection.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Breaks the bank login behind `token`: calls answer 404 with `code`
    /// (an `enrollment.disconnected...` code).
    pub fn disconnect(&self, token: &str, code: &str) {
        if let Some(e) = self.bank.lock().unwrap().by_token.get_mut(token) {
            e.disconnected = Some(code.into());
        }
    }

    /// Revokes `token` as if the user had disconnected at Teller: calls answer 403.
    pub fn revoke(&self, token: &str) {
        if let Some(e) = self.bank.lock().unwrap().by_token.get_mut(token) {
            e.revoked = true;
        }
    }

    /// Whether `token` was revoked (by `DELETE /accounts` or [`Self::revoke`]).
    pub fn is_revoked(&self, token: &str) -> bool {
        self.bank
            .lock()
            .unwrap()
            .by_token
            .get(token)
            .is_some_and(|e| e.revoked)
    }
}

fn app() -> (Shared, Faults, Router) {
    let bank: Shared = Arc::new(Mutex::new(seed()));
    let faults = Faults::default();
    let router = Router::new()
        .route("/accounts", get(list_accounts).delete(revoke_enrollment))
        .route("/accounts/{id}", get(get_account).delete(revoke_account))
        .route("/accounts/{id}/balances", get(balances))
        .route("/accounts/{id}/details", get(details))
        .route("/accounts/{id}/transactions", get(transactions))
        .route("/accounts/{id}/transactions/{txn}", get(transaction))
        .route("/identity", get(identity))
        .route(
            "/connect/connect.js",
            get(|| async {
                (
                    [(axum::http::header::CONTENT_TYPE, "text/javascript")],
                    include_str!("teller_connect.js"),
                )
            }),
        )
        .with_state(bank.clone())
        .layer(axum::middleware::from_fn_with_state(
            faults.clone(),
            faults::layer,
        ));
    (bank, faults, router)
}

/// A Teller error response: `{"error": {"code", "message"}}` with a status.
struct Fail {
    status: StatusCode,
    code: String,
    message: &'static str,
}

impl IntoResponse for Fail {
    fn into_response(self) -> Response {
        (
            self.status,
            axum::Json(json!({"error": {"code": self.code, "message": self.message}})),
        )
            .into_response()
    }
}

fn error(status: StatusCode, code: &str, message: &'static str) -> Fail {
    Fail {
        status,
        code: code.into(),
        message,
    }
}

/// The enrollment the request's Basic credentials open, or Teller's error.
fn with_enrollment<T>(
    bank: &Shared,
    headers: &HeaderMap,
    f: impl FnOnce(&mut Enrollment) -> Result<T, Fail>,
) -> Result<T, Fail> {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|pair| pair.split_once(':').map(|(user, _)| user.to_string()))
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            error(
                StatusCode::UNAUTHORIZED,
                "missing_credentials",
                "Missing access token",
            )
        })?;
    let mut bank = bank.lock().unwrap();
    let enrollment = bank
        .by_token
        .get_mut(&token)
        .filter(|e| !e.revoked)
        .ok_or_else(|| {
            error(
                StatusCode::FORBIDDEN,
                "invalid_access_token",
                "The access token is invalid or has been revoked",
            )
        })?;
    if let Some(code) = &enrollment.disconnected {
        return Err(error(
            StatusCode::NOT_FOUND,
            code,
            "The enrollment is disconnected; the user must reconnect",
        ));
    }
    f(enrollment)
}

fn account<'a>(e: &'a Enrollment, id: &str) -> Result<&'a Account, Fail> {
    e.accounts.iter().find(|a| a.id == id).ok_or_else(|| {
        error(
            StatusCode::NOT_FOUND,
            "not_found",
            "The requested account was not found",
        )
    })
}

fn account_json(e: &Enrollment, a: &Account) -> Value {
    json!({
        "id": a.id, "enrollment_id": e.id, "name": a.name, "type": a.kind, "subtype": a.subtype,
        "status": "open", "currency": "USD", "last_four": a.last_four,
        "institution": {"id": e.institution.0, "name": e.institution.1},
        "links": {"self": format!("https://api.teller.io/accounts/{}", a.id),
                  "balances": format!("https://api.teller.io/accounts/{}/balances", a.id),
                  "transactions": format!("https://api.teller.io/accounts/{}/transactions", a.id)}
    })
}

fn reply(result: Result<Value, Fail>) -> Response {
    match result {
        Ok(v) => axum::Json(v).into_response(),
        Err(f) => f.into_response(),
    }
}

/// 204 on success, Teller's error otherwise.
fn no_content(result: Result<(), Fail>) -> Response {
    match result {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(f) => f.into_response(),
    }
}

async fn list_accounts(State(bank): State<Shared>, headers: HeaderMap) -> Response {
    reply(with_enrollment(&bank, &headers, |e| {
        Ok(Value::Array(
            e.accounts.iter().map(|a| account_json(e, a)).collect(),
        ))
    }))
}

async fn get_account(
    State(bank): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    reply(with_enrollment(&bank, &headers, |e| {
        Ok(account_json(e, account(e, &id)?))
    }))
}

async fn revoke_enrollment(State(bank): State<Shared>, headers: HeaderMap) -> Response {
    no_content(with_enrollment(&bank, &headers, |e| {
        e.revoked = true;
        Ok(())
    }))
}

async fn revoke_account(
    State(bank): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    no_content(with_enrollment(&bank, &headers, |e| {
        account(e, &id)?;
        e.accounts.retain(|a| a.id != id);
        Ok(())
    }))
}

async fn balances(
    State(bank): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    reply(with_enrollment(&bank, &headers, |e| {
        let a = account(e, &id)?;
        Ok(
            json!({"account_id": a.id, "ledger": a.ledger, "available": a.available,
                  "links": {"self": format!("https://api.teller.io/accounts/{}/balances", a.id)}}),
        )
    }))
}

async fn details(
    State(bank): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    reply(with_enrollment(&bank, &headers, |e| {
        let a = account(e, &id)?;
        Ok(
            json!({"account_id": a.id, "account_number": format!("14299928{}", a.last_four),
                  "routing_numbers": {"ach": "066474405", "wire": null},
                  "links": {"self": format!("https://api.teller.io/accounts/{}/details", a.id)}}),
        )
    }))
}

#[derive(Deserialize)]
struct TransactionQuery {
    count: Option<usize>,
    from_id: Option<String>,
    start_date: Option<String>,
    end_date: Option<String>,
}

async fn transactions(
    State(bank): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<TransactionQuery>,
) -> Response {
    reply(with_enrollment(&bank, &headers, |e| {
        let a = account(e, &id)?;
        let mut list: Box<dyn Iterator<Item = &Value>> = Box::new(a.transactions.iter());
        if let Some(from) = &q.from_id {
            let at = a
                .transactions
                .iter()
                .position(|t| t["id"] == from.as_str())
                .ok_or_else(|| {
                    error(
                        StatusCode::BAD_REQUEST,
                        "bad_request",
                        "from_id is not a transaction of this account",
                    )
                })?;
            list = Box::new(a.transactions[at + 1..].iter());
        }
        let in_range = |t: &&Value| {
            let date = t["date"].as_str().unwrap_or_default();
            q.start_date.as_deref().is_none_or(|s| date >= s)
                && q.end_date.as_deref().is_none_or(|s| date <= s)
        };
        let page: Vec<Value> = list
            .filter(in_range)
            .take(q.count.unwrap_or(usize::MAX))
            .cloned()
            .collect();
        Ok(Value::Array(page))
    }))
}

async fn transaction(
    State(bank): State<Shared>,
    headers: HeaderMap,
    Path((id, txn)): Path<(String, String)>,
) -> Response {
    reply(with_enrollment(&bank, &headers, |e| {
        let a = account(e, &id)?;
        a.transactions
            .iter()
            .find(|t| t["id"] == txn.as_str())
            .cloned()
            .ok_or_else(|| {
                error(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    "The requested transaction was not found",
                )
            })
    }))
}

async fn identity(State(bank): State<Shared>, headers: HeaderMap) -> Response {
    reply(with_enrollment(&bank, &headers, |e| {
        Ok(
            json!([{"account": account_json(e, &e.accounts[0]), "owners": [{"type": "person", "names": [{"type": "name", "data": "Amouzou Test"}]}]}]),
        )
    }))
}

fn seed() -> Bank {
    let account = |id, name, kind, subtype, last_four, ledger, available, n| Account {
        id,
        name,
        kind,
        subtype,
        last_four,
        ledger,
        available,
        transactions: history(id, n),
    };
    let pnc = Enrollment {
        id: "enr_pnc",
        institution: ("pnc", "PNC"),
        accounts: vec![
            account(
                BUSY_ACCOUNT,
                "Virtual Wallet Checking",
                "depository",
                "checking",
                "7346",
                "4698.93",
                Some("4301.07"),
                320,
            ),
            account(
                "acc_pnc_savings",
                "Growth Savings",
                "depository",
                "savings",
                "1180",
                "12050.00",
                Some("12050.00"),
                12,
            ),
            account(
                "acc_pnc_card",
                "Cash Rewards Visa",
                "credit",
                "credit_card",
                "5512",
                "-842.17",
                None,
                40,
            ),
        ],
        disconnected: None,
        revoked: false,
    };
    let chase = Enrollment {
        id: "enr_chase",
        institution: ("chase", "Chase"),
        accounts: vec![
            account(
                "acc_chase_checking",
                "Total Checking",
                "depository",
                "checking",
                "9921",
                "1520.44",
                Some("1499.10"),
                60,
            ),
            account(
                "acc_chase_card",
                "Sapphire Preferred",
                "credit",
                "credit_card",
                "4410",
                "-2210.09",
                Some("7789.91"),
                25,
            ),
        ],
        disconnected: None,
        revoked: false,
    };
    let mut bank = Bank::default();
    bank.by_token.insert(PNC_TOKEN.into(), pnc);
    bank.by_token.insert(CHASE_TOKEN.into(), chase);
    bank
}

/// `n` transactions, newest first, two a day back from 2026-11-20: the
/// newest five pending, several categories and counterparties.
fn history(account: &str, n: usize) -> Vec<Value> {
    const KINDS: [(&str, &str, &str, &str, i64); 7] = [
        (
            "groceries",
            "WHOLE FOODS MARKET",
            "card_payment",
            "Whole Foods Market",
            -6_412,
        ),
        (
            "dining",
            "BLUE BOTTLE COFFEE",
            "card_payment",
            "Blue Bottle Coffee",
            -725,
        ),
        ("transport", "UBER TRIP", "card_payment", "Uber", -2_390),
        ("utilities", "CON EDISON", "ach", "Con Edison", -11_804),
        ("income", "ACME CORP PAYROLL", "ach", "Acme Corp", 412_500),
        ("service", "ATM WITHDRAWAL", "atm", "CARDTRONICS", -4_247),
        (
            "shopping",
            "AMAZON MKTPLACE",
            "card_payment",
            "Amazon",
            -3_999,
        ),
    ];
    let today = days_from_civil(2026, 11, 20);
    (0..n)
        .map(|i| {
            let (category, description, kind, counterparty, cents) = KINDS[i % KINDS.len()];
            let cents = cents + (i as i64 % 13) * if cents < 0 { -7 } else { 11 };
            json!({
                "id": format!("txn_{account}_{i:04}"),
                "account_id": account,
                "amount": format!("{}{}.{:02}", if cents < 0 { "-" } else { "" }, cents.abs() / 100, cents.abs() % 100),
                "date": civil_from_days(today - (i as i64) / 2),
                "description": description,
                "status": if i < 5 { "pending" } else { "posted" },
                "type": kind,
                "running_balance": null,
                "details": {
                    "processing_status": if i < 5 { "pending" } else { "complete" },
                    "category": category,
                    "counterparty": {"name": counterparty, "type": "organization"}
                },
                "links": {"self": format!("https://api.teller.io/accounts/{account}/transactions/txn_{account}_{i:04}"), "account": format!("https://api.teller.io/accounts/{account}")}
            })
        })
        .collect()
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> String {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        assert_eq!(civil_from_days(days_from_civil(2026, 11, 20)), "2026-11-20");
        assert_eq!(
            civil_from_days(days_from_civil(2026, 3, 1) - 1),
            "2026-02-28"
        );
        assert_eq!(
            civil_from_days(days_from_civil(2024, 3, 1) - 1),
            "2024-02-29"
        );
    }
}
