//! Email through the user's own SMTP server (`providers::smtp`): the same
//! subject and parts as through Resend, to the address its host resolves
//! to once checked like a webhook's. A 4xx reply, or a connection lost
//! before the message was handed over, is tried again within the deadline;
//! a 5xx reply is final, with the server's words; 535 marks the integration
//! `needs_reauth`; a connection lost after the message's end is `unknown`,
//! and never sent again.

use std::time::SystemTime;

use providers::smtp::{self, Login, SmtpError};
use tokio::time::Instant;

use super::retry::{Attempt, retrying};
use super::{Delivered, Failure, Outgoing, Providers, email, webhook};
use crate::markdown;

pub(super) async fn send(
    p: &Providers,
    deadline: Instant,
    login: &Login,
    from: &str,
    to: &str,
    out: &Outgoing,
) -> Result<Delivered, Failure> {
    let roots = p.smtp_roots.as_ref().map_err(|e| Failure::new(e.clone()))?;
    let addr = webhook::checked_address(&login.host, login.port, p.allow_private)
        .await
        .map_err(|why| Failure::new(format!("the SMTP server is refused: {why}")))?;
    let (subject, text, html) = (
        email::subject(out),
        markdown::to_plain(&out.message),
        markdown::to_email_html(&out.message),
    );
    let message = smtp::Email {
        from,
        to,
        subject: &subject,
        text: &text,
        html: &html,
        id: &out.id,
        date: SystemTime::now(),
    };
    let (sent, attempts) = retrying(deadline, "The SMTP server", || async {
        judge(smtp::send(login, addr, &message, roots, deadline).await)
    })
    .await?;
    Ok(Delivered {
        provider_message_id: Some(sent.message_id),
        attempts,
        thread: None,
    })
}

/// Whether the user's SMTP server takes the credentials: a login, no
/// message (`from`'s domain names this client).
pub(super) async fn check(
    p: &Providers,
    deadline: Instant,
    login: &Login,
    from: &str,
) -> Result<(), Failure> {
    let roots = p.smtp_roots.as_ref().map_err(|e| Failure::new(e.clone()))?;
    let addr = webhook::checked_address(&login.host, login.port, p.allow_private)
        .await
        .map_err(|why| Failure::new(format!("the SMTP server is refused: {why}")))?;
    let domain = from.rsplit_once('@').map_or(from, |(_, domain)| domain);
    retrying(deadline, "The SMTP server", || async {
        judge(smtp::check_login(login, addr, domain, roots, deadline).await)
    })
    .await
    .map(|_| ())
}

/// What one attempt's outcome means for a delivery (or a login).
fn judge<T>(sent: Result<T, SmtpError>) -> Attempt<T> {
    match sent {
        Ok(sent) => Attempt::Done(sent),
        Err(SmtpError::Transient { code, reply }) => Attempt::Retry {
            after: None,
            why: format!("answered {code} ({reply})"),
        },
        Err(SmtpError::Unreachable(why)) => Attempt::Retry {
            after: None,
            why: format!("could not be reached ({why})"),
        },
        Err(SmtpError::Credentials { code, reply }) => Attempt::Fail(Failure::reauth(format!(
            "the SMTP server refused the credentials ({code}: {reply}): the user must update the Email integration's password in Settings → Integrations"
        ))),
        Err(e @ SmtpError::Unknown(_)) => Attempt::Fail(Failure {
            unknown: true,
            ..Failure::new(e.to_string())
        }),
        Err(
            e @ (SmtpError::Rejected { .. }
            | SmtpError::NoStartTls
            | SmtpError::Tls(_)
            | SmtpError::Address(_)),
        ) => Attempt::Fail(Failure::new(e.to_string())),
    }
}
