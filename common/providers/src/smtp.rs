//! Email through the user's own SMTP server: submission with STARTTLS
//! (RFC 3207, port 587) or TLS from the first byte (RFC 8314, port 465),
//! AUTH PLAIN or LOGIN (RFC 4954) only once the connection is encrypted,
//! the server's certificate verified against the public roots and the CA
//! of `SMTP_CA_PATH` when set (a private server's, a test's: [`Roots`]).
//!
//! One attempt per call, every wait inside the caller's deadline. Its
//! failure says what SMTP said ([`SmtpError`]): a 4xx reply or a
//! connection lost before the message was handed over may be tried again;
//! a 5xx reply is final; 535 is refused credentials; a connection lost
//! once the message's final `.` was sent leaves the outcome unknown (the
//! server may have taken it), so it is never retried blindly.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use lettre::message::header::{self, ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{
    AsyncSmtpConnection, Certificate, CertificateStore, TlsParameters,
};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::ClientId;
use tokio::time::Instant;
use zeroize::Zeroizing;

/// How a connection to the server is encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// Plain at first, then STARTTLS before anything else (port 587).
    StartTls,
    /// TLS from the first byte (port 465).
    Tls,
}

impl Security {
    /// From a config's `smtp_security` (`starttls`, the default, or `tls`).
    pub fn from_config(value: Option<&str>) -> Self {
        match value {
            Some("tls") => Self::Tls,
            _ => Self::StartTls,
        }
    }

    /// The port a config without `smtp_port` submits to.
    pub fn default_port(self) -> u16 {
        match self {
            Self::StartTls => 587,
            Self::Tls => 465,
        }
    }
}

/// A user's SMTP login: where, how, and with which credentials.
pub struct Login {
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub username: String,
    pub password: Zeroizing<String>,
}

impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Login")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// One message to send.
#[derive(Debug)]
pub struct Email<'a> {
    pub from: &'a str,
    pub to: &'a str,
    pub subject: &'a str,
    /// The plain-text part.
    pub text: &'a str,
    /// The HTML part.
    pub html: &'a str,
    /// The notification's id: the `Message-ID` is derived from it, so that
    /// a retry carries the same one.
    pub id: &'a str,
    pub date: SystemTime,
}

/// Why a message was not sent, or may not have been. Names the server's
/// reply (its secrets masked), never the password.
#[derive(Debug, thiserror::Error)]
pub enum SmtpError {
    /// A 4xx reply (421, 450, 451, 452, ...): try again later.
    #[error("the SMTP server answered {code}, try later: {reply}")]
    Transient { code: u16, reply: String },
    /// A 5xx reply: final.
    #[error("the SMTP server refused the message ({code}): {reply}")]
    Rejected { code: u16, reply: String },
    /// 535 (or 534/538): the server refused the credentials.
    #[error("the SMTP server refused the credentials ({code}): {reply}")]
    Credentials { code: u16, reply: String },
    /// `starttls` was asked and the server does not offer it: nothing was
    /// sent in the clear.
    #[error(
        "the SMTP server does not offer STARTTLS: refused before sending the credentials over an unencrypted connection"
    )]
    NoStartTls,
    /// The server's certificate did not verify, or TLS failed.
    #[error("TLS with the SMTP server failed (its certificate must verify): {0}")]
    Tls(String),
    /// No connection, or one lost before the message was handed over.
    #[error("cannot reach the SMTP server: {0}")]
    Unreachable(String),
    /// Lost once the message's end was sent: it may have been taken.
    #[error(
        "the connection to the SMTP server was lost after the message was sent: it may have been delivered ({0})"
    )]
    Unknown(String),
    /// A `from` or `to` address that is not one.
    #[error("{0}")]
    Address(String),
}

impl SmtpError {
    /// Another attempt may follow: nothing of the message was taken.
    pub fn retryable(&self) -> bool {
        matches!(self, Self::Transient { .. } | Self::Unreachable(_))
    }
}

/// What the server said when it took a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The message's `Message-ID` (`<id@from-domain>`).
    pub message_id: String,
    /// The server's answer to the message (often its queue id).
    pub reply: String,
}

/// Sends `email` through `login`'s server at `addr` (its host already
/// resolved and checked by the caller, which connects nowhere else), its
/// certificate verified against `roots`, all within `deadline`.
pub async fn send(
    login: &Login,
    addr: SocketAddr,
    email: &Email<'_>,
    roots: &Roots,
    deadline: Instant,
) -> Result<Sent, SmtpError> {
    let handed_over = AtomicBool::new(false);
    let attempt = attempt(login, addr, email, roots, &handed_over);
    match tokio::time::timeout_at(deadline, attempt).await {
        Ok(result) => result.map_err(|e| mask(e, login)),
        Err(_) if handed_over.load(Ordering::Relaxed) => Err(SmtpError::Unknown(
            "no answer to the message before the deadline".into(),
        )),
        Err(_) => Err(SmtpError::Unreachable(
            "no answer before the deadline".into(),
        )),
    }
}

/// Whether `login`'s server at `addr` takes its credentials, sending no
/// message: connect, TLS, AUTH and QUIT, within `deadline`; `hello_domain`
/// names this client (the sender's domain).
pub async fn check_login(
    login: &Login,
    addr: SocketAddr,
    hello_domain: &str,
    roots: &Roots,
    deadline: Instant,
) -> Result<(), SmtpError> {
    let checked = async {
        let mut connection = authenticated(login, addr, hello_domain, roots).await?;
        let _ = connection.quit().await;
        Ok(())
    };
    match tokio::time::timeout_at(deadline, checked).await {
        Ok(result) => result.map_err(|e| mask(e, login)),
        Err(_) => Err(SmtpError::Unreachable(
            "no answer before the deadline".into(),
        )),
    }
}

/// A connection to `login`'s server at `addr`, encrypted (implicit TLS, or
/// STARTTLS, which the server must offer) and authenticated: the
/// credentials never cross an unencrypted connection.
async fn authenticated(
    login: &Login,
    addr: SocketAddr,
    hello_domain: &str,
    roots: &Roots,
) -> Result<AsyncSmtpConnection, SmtpError> {
    let hello = ClientId::Domain(hello_domain.to_string());
    let tls = roots.tls_parameters(&login.host)?;
    let implicit = (login.security == Security::Tls).then(|| tls.clone());
    let mut connection =
        AsyncSmtpConnection::connect_tokio1(addr, Some(PER_STEP), &hello, implicit, None)
            .await
            .map_err(before_message)?;
    if login.security == Security::StartTls {
        if !connection.can_starttls() {
            connection.abort().await;
            return Err(SmtpError::NoStartTls);
        }
        connection
            .starttls(tls, &hello)
            .await
            .map_err(before_message)?;
    }
    if !connection.is_encrypted() {
        connection.abort().await;
        return Err(SmtpError::NoStartTls);
    }
    let credentials = Credentials::new(login.username.clone(), login.password.to_string());
    connection
        .auth(&[Mechanism::Plain, Mechanism::Login], &credentials)
        .await
        .map_err(|e| match e.status().map(u16::from) {
            Some(code @ (534 | 535 | 538)) => SmtpError::Credentials {
                code,
                reply: reply_of(&e),
            },
            _ => before_message(e),
        })?;
    Ok(connection)
}

async fn attempt(
    login: &Login,
    addr: SocketAddr,
    email: &Email<'_>,
    roots: &Roots,
    handed_over: &AtomicBool,
) -> Result<Sent, SmtpError> {
    let (from, to) = (mailbox(email.from, "from")?, mailbox(email.to, "to")?);
    let message_id = format!("<{}@{}>", email.id, from.email.domain());
    let message = message(email, &from, &to, &message_id)?;
    let mut connection = authenticated(login, addr, from.email.domain(), roots).await?;
    connection
        .command(Mail::new(Some(from.email.clone()), vec![]))
        .await
        .map_err(before_message)?;
    connection
        .command(Rcpt::new(to.email.clone(), vec![]))
        .await
        .map_err(before_message)?;
    connection.command(Data).await.map_err(before_message)?;
    handed_over.store(true, Ordering::Relaxed);
    let accepted = connection.message(&message).await.map_err(|e| {
        if e.status().is_some() {
            before_message(e)
        } else {
            SmtpError::Unknown(e.to_string())
        }
    })?;
    // The message is taken: a failing QUIT changes nothing.
    let _ = connection.quit().await;
    Ok(Sent {
        message_id,
        reply: accepted.message().collect::<Vec<_>>().join(" "),
    })
}

/// How long one step (connecting, one command's answer) may take at most,
/// inside the caller's deadline.
const PER_STEP: Duration = Duration::from_secs(30);

/// The message's bytes: `multipart/alternative` (plain text, then HTML),
/// `From`, `To`, the subject encoded as RFC 2047 where it must be, `Date`,
/// a `Message-ID` derived from the notification id, and
/// `Auto-Submitted: auto-generated` (RFC 3834).
fn message(
    email: &Email<'_>,
    from: &Mailbox,
    to: &Mailbox,
    message_id: &str,
) -> Result<Vec<u8>, SmtpError> {
    let parts = MultiPart::alternative()
        .singlepart(
            SinglePart::builder()
                .header(ContentType::TEXT_PLAIN)
                .body(email.text.to_string()),
        )
        .singlepart(
            SinglePart::builder()
                .header(ContentType::TEXT_HTML)
                .body(email.html.to_string()),
        );
    let built = lettre::Message::builder()
        .from(from.clone())
        .to(to.clone())
        .subject(email.subject)
        .date(email.date)
        .message_id(Some(message_id.to_string()))
        .header(AutoSubmitted)
        .multipart(parts)
        .map_err(|e| SmtpError::Address(format!("the message cannot be built: {e}")))?;
    Ok(built.formatted())
}

/// `Auto-Submitted: auto-generated` (RFC 3834): auto-responders do not
/// answer it.
#[derive(Debug, Clone, Copy)]
struct AutoSubmitted;

impl header::Header for AutoSubmitted {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Auto-Submitted")
    }

    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self)
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "auto-generated".into())
    }
}

fn mailbox(address: &str, which: &str) -> Result<Mailbox, SmtpError> {
    address.trim().parse().map_err(|_| {
        SmtpError::Address(format!(
            "the email config's {which}_address is not an email address"
        ))
    })
}

/// The CAs a server's certificate may chain to: the public roots, and one
/// more for private servers and tests (`SMTP_CA_PATH`).
#[derive(Debug, Clone, Default)]
pub struct Roots {
    /// The extra CA, PEM.
    extra: Option<Vec<u8>>,
}

impl Roots {
    /// The public roots, and the CA in the PEM file `SMTP_CA_PATH` when set.
    pub fn from_env() -> Result<Self, SmtpError> {
        match std::env::var_os("SMTP_CA_PATH").filter(|p| !p.is_empty()) {
            Some(path) => Self::with_ca_file(Path::new(&path)),
            None => Ok(Self::default()),
        }
    }

    /// The public roots and the CA in the PEM file at `path`.
    pub fn with_ca_file(path: &Path) -> Result<Self, SmtpError> {
        let pem = std::fs::read(path)
            .map_err(|e| SmtpError::Tls(format!("cannot read SMTP_CA_PATH: {e}")))?;
        Certificate::from_pem(&pem)
            .map_err(|_| SmtpError::Tls("SMTP_CA_PATH holds no PEM certificate".into()))?;
        Ok(Self { extra: Some(pem) })
    }

    /// What TLS verifies: `host`'s name, against these roots.
    fn tls_parameters(&self, host: &str) -> Result<TlsParameters, SmtpError> {
        let mut builder = TlsParameters::builder(host.to_string())
            .certificate_store(CertificateStore::WebpkiRoots);
        if let Some(pem) = &self.extra {
            let ca = Certificate::from_pem(pem)
                .map_err(|_| SmtpError::Tls("SMTP_CA_PATH holds no PEM certificate".into()))?;
            builder = builder.add_root_certificate(ca);
        }
        builder
            .build_rustls()
            .map_err(|e| SmtpError::Tls(e.to_string()))
    }
}

/// A failure before the message was handed over: a reply (4xx may be
/// tried again, 5xx not), TLS, or the connection.
fn before_message(e: lettre::transport::smtp::Error) -> SmtpError {
    match e.status().map(u16::from) {
        Some(code) if (400..500).contains(&code) => SmtpError::Transient {
            code,
            reply: reply_of(&e),
        },
        Some(code) => SmtpError::Rejected {
            code,
            reply: reply_of(&e),
        },
        None if e.is_tls() || is_tls_failure(&e) => SmtpError::Tls(reply_of(&e)),
        None => SmtpError::Unreachable(reply_of(&e)),
    }
}

/// A connection that failed in TLS (a certificate that did not verify,
/// during STARTTLS too).
fn is_tls_failure(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(e) = cause {
        let inner = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map(|inner| inner as &(dyn std::error::Error + 'static));
        if e.is::<rustls::Error>() || inner.is_some_and(|i| i.is::<rustls::Error>()) {
            return true;
        }
        cause = e.source();
    }
    false
}

/// The server's words in a negative reply, or what lies under any other
/// failure.
fn reply_of(e: &lettre::transport::smtp::Error) -> String {
    use std::error::Error as _;
    e.source()
        .map_or_else(|| e.to_string(), ToString::to_string)
}

/// `e` with any trace of the password masked (a server that echoes what it
/// was sent).
fn mask(e: SmtpError, login: &Login) -> SmtpError {
    use base64::Engine as _;
    let password = login.password.as_str();
    if password.is_empty() {
        return e;
    }
    let plain = base64::engine::general_purpose::STANDARD
        .encode(format!("\0{}\0{password}", login.username));
    let login_b64 = base64::engine::general_purpose::STANDARD.encode(password);
    let clean = |text: String| {
        [password, plain.as_str(), login_b64.as_str()]
            .iter()
            .fold(text, |text, secret| text.replace(secret, "********"))
    };
    match e {
        SmtpError::Transient { code, reply } => SmtpError::Transient {
            code,
            reply: clean(reply),
        },
        SmtpError::Rejected { code, reply } => SmtpError::Rejected {
            code,
            reply: clean(reply),
        },
        SmtpError::Credentials { code, reply } => SmtpError::Credentials {
            code,
            reply: clean(reply),
        },
        SmtpError::Tls(text) => SmtpError::Tls(clean(text)),
        SmtpError::Unreachable(text) => SmtpError::Unreachable(clean(text)),
        SmtpError::Unknown(text) => SmtpError::Unknown(clean(text)),
        other => other,
    }
}
