//! `providers::smtp` against a real SMTP server nobody here wrote
//! (`aiosmtpd`, `fakes::smtp`), on loopback with a test CA: what arrives,
//! parsed back; what each reply means; TLS and AUTH refused where they
//! must be.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use fakes::smtp::{SmtpOptions, SmtpServer};
use providers::smtp::{self, Email, Login, Roots, Security, SmtpError};
use zeroize::Zeroizing;

/// A server under a fresh directory, and the roots that trust its CA.
fn server(options: &SmtpOptions) -> (tempfile::TempDir, SmtpServer, Roots) {
    let dir = tempfile::tempdir().unwrap();
    let server = SmtpServer::start(dir.path(), options).unwrap();
    let roots = Roots::with_ca_file(&server.ca).unwrap();
    (dir, server, roots)
}

fn login(server: &SmtpServer, options: &SmtpOptions, security: Security) -> Login {
    Login {
        host: "localhost".into(),
        port: server.port,
        security,
        username: options.username.clone(),
        password: Zeroizing::new(options.password.clone()),
    }
}

fn email() -> Email<'static> {
    Email {
        from: "alerts@example.com",
        to: "me@example.com",
        subject: "Loyer payé ✓",
        text: "Rent: **1,200 €** paid",
        html: "<p>Rent: <strong>1,200 €</strong> paid</p>",
        id: "ntf_0123456789abcdefghijk",
        date: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
    }
}

/// Sends [`email`] through `server` with its own login over STARTTLS.
async fn starttls(
    server: &SmtpServer,
    options: &SmtpOptions,
    roots: &Roots,
) -> Result<smtp::Sent, SmtpError> {
    send(server, &login(server, options, Security::StartTls), roots).await
}

async fn send(server: &SmtpServer, login: &Login, roots: &Roots) -> Result<smtp::Sent, SmtpError> {
    let addr = SocketAddr::from(([127, 0, 0, 1], server.port));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    smtp::send(login, addr, &email(), roots, deadline).await
}

#[tokio::test]
async fn a_message_through_starttls_arrives_whole_and_parses_back() {
    let options = SmtpOptions::starttls();
    let (_dir, server, roots) = server(&options);
    let sent = starttls(&server, &options, &roots).await.unwrap();
    assert!(sent.reply.contains("queued"), "{sent:?}");
    assert_eq!(sent.message_id, "<ntf_0123456789abcdefghijk@example.com>");
    let messages = server.messages();
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    assert_eq!(m["mail_from"], "alerts@example.com");
    assert_eq!(m["rcpt_tos"], serde_json::json!(["me@example.com"]));
    assert_eq!(m["content_type"], "multipart/alternative");
    let headers = &m["headers"];
    assert_eq!(headers["subject"], "Loyer payé ✓", "decoded from RFC 2047");
    assert_eq!(headers["from"], "alerts@example.com");
    assert_eq!(headers["to"], "me@example.com");
    assert_eq!(headers["auto-submitted"], "auto-generated");
    assert_eq!(
        headers["message-id"],
        "<ntf_0123456789abcdefghijk@example.com>"
    );
    assert!(
        headers["date"].as_str().unwrap().contains("14 Nov 2023"),
        "{headers}"
    );
    let parts = m["parts"].as_array().unwrap();
    assert_eq!(parts[0]["type"], "text/plain");
    assert_eq!(
        parts[0]["content"].as_str().unwrap().trim(),
        "Rent: **1,200 €** paid"
    );
    assert_eq!(parts[1]["type"], "text/html");
    assert!(
        parts[1]["content"]
            .as_str()
            .unwrap()
            .contains("<strong>1,200 €</strong>")
    );
    let auth: Vec<_> = server
        .events()
        .into_iter()
        .filter(|e| e["event"] == "auth")
        .collect();
    assert_eq!(auth.len(), 1);
    assert_eq!(
        (auth[0]["ok"].as_bool(), auth[0]["tls"].as_bool()),
        (Some(true), Some(true))
    );
}

#[tokio::test]
async fn a_message_through_tls_from_the_first_byte_arrives() {
    let options = SmtpOptions {
        security: "tls",
        ..SmtpOptions::starttls()
    };
    let (_dir, server, roots) = server(&options);
    send(&server, &login(&server, &options, Security::Tls), &roots)
        .await
        .unwrap();
    assert_eq!(server.messages().len(), 1);
}

#[tokio::test]
async fn a_wrong_password_is_refused_credentials_and_names_no_secret() {
    let options = SmtpOptions::starttls();
    let (_dir, server, roots) = server(&options);
    let mut wrong = login(&server, &options, Security::StartTls);
    wrong.password = Zeroizing::new("not-the-password".into());
    let error = send(&server, &wrong, &roots).await.unwrap_err();
    assert!(
        matches!(error, SmtpError::Credentials { code: 535, .. }),
        "{error:?}"
    );
    assert!(!error.retryable());
    assert!(!error.to_string().contains("not-the-password"), "{error}");
    assert!(server.messages().is_empty());
}

#[tokio::test]
async fn each_reply_means_what_smtp_says() {
    let options = SmtpOptions {
        replies: vec!["451", "554", "drop"],
        ..SmtpOptions::starttls()
    };
    let (_dir, server, roots) = server(&options);
    let login = login(&server, &options, Security::StartTls);
    let busy = send(&server, &login, &roots).await.unwrap_err();
    assert!(
        matches!(busy, SmtpError::Transient { code: 451, .. }),
        "{busy:?}"
    );
    assert!(busy.retryable());
    let refused = send(&server, &login, &roots).await.unwrap_err();
    assert!(
        matches!(refused, SmtpError::Rejected { code: 554, .. }),
        "{refused:?}"
    );
    assert!(!refused.retryable());
    assert!(
        refused.to_string().contains("rejected by policy"),
        "{refused}"
    );
    let lost = send(&server, &login, &roots).await.unwrap_err();
    assert!(matches!(lost, SmtpError::Unknown(_)), "{lost:?}");
    assert!(
        !lost.retryable(),
        "may have been taken: never retried blindly"
    );
    assert_eq!(server.messages().len(), 1, "the dropped one was taken");
    send(&server, &login, &roots).await.unwrap();
    assert_eq!(server.messages().len(), 2);
}

#[tokio::test]
async fn no_starttls_offered_means_no_credentials_sent() {
    let options = SmtpOptions {
        security: "none",
        ..SmtpOptions::starttls()
    };
    let (_dir, server, roots) = server(&options);
    let error = starttls(&server, &options, &roots).await.unwrap_err();
    assert!(matches!(error, SmtpError::NoStartTls), "{error:?}");
    assert!(
        !server.events().iter().any(|e| e["event"] == "auth"),
        "no AUTH over a clear connection"
    );
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused() {
    let options = SmtpOptions::starttls();
    let (_dir, server, _) = server(&options);
    let elsewhere = tempfile::tempdir().unwrap();
    let other_ca = fakes::tls::TestPki::generate(elsewhere.path()).unwrap();
    let roots = Roots::with_ca_file(&other_ca.ca).unwrap();
    let error = starttls(&server, &options, &roots).await.unwrap_err();
    assert!(matches!(error, SmtpError::Tls(_)), "{error:?}");
    assert!(!server.events().iter().any(|e| e["event"] == "auth"));
}
