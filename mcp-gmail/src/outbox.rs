//! Sending and drafting: a message composed (`mail::compose`) in the
//! thread it answers, then handed to Gmail.

use std::sync::Arc;
use std::time::SystemTime;

use model::Identity;
use sidecar::call::{ToolError, quoted};
use zeroize::Zeroizing;

use crate::grant::{Access, OpenedGrant};
use crate::mail::{compose, read};
use crate::schema::ComposeArgs;
use crate::upstream::{Failure, Upstream, valid_id};
use providers::gmail::{GmailClient, GmailError};

/// At most this many Message-IDs are carried in a reply's `References`.
const MAX_REFERENCES: usize = 20;

/// Composes and sends (or saves as a draft) one message.
pub async fn compose(
    upstream: &Upstream,
    who: &Identity,
    args: &ComposeArgs,
    access: Access,
) -> Result<(OpenedGrant, Composed), ToolError> {
    upstream
        .with_gmail(
            who,
            access,
            "message or thread by that id".into(),
            |gmail, token, from| {
                Box::pin(async move {
                    let (gmail, token) = (&gmail, &token);
                    let reply = reply_context(gmail, token, args).await?;
                    let outgoing = compose::Outgoing {
                        from: &from,
                        to: &args.to,
                        cc: args.cc.as_deref(),
                        bcc: args.bcc.as_deref(),
                        subject: &args.subject,
                        body: &args.body,
                        in_reply_to: reply.in_reply_to.as_deref(),
                        references: reply.references.as_deref(),
                    };
                    let raw = compose::compose(&outgoing, SystemTime::now()).map_err(|e| {
                        ToolError::deny(format!("The message cannot be sent: {e}."))
                    })?;
                    Ok(match access {
                        Access::Draft => {
                            let draft = gmail.draft(token, raw, reply.thread_id).await?;
                            let message = draft.message.unwrap_or_default();
                            Composed {
                                draft_id: draft.id,
                                message_id: message.id.unwrap_or_default(),
                                thread_id: message.thread_id.unwrap_or_default(),
                            }
                        }
                        _ => {
                            let sent = gmail.send(token, raw, reply.thread_id).await?;
                            Composed {
                                draft_id: None,
                                message_id: sent.id.unwrap_or_default(),
                                thread_id: sent.thread_id.unwrap_or_default(),
                            }
                        }
                    })
                })
            },
        )
        .await
}

/// What a send or a draft produced.
pub struct Composed {
    pub draft_id: Option<String>,
    pub message_id: String,
    pub thread_id: String,
}

/// The threading of a reply: the Gmail thread, and the `In-Reply-To` and
/// `References` headers.
#[derive(Default)]
struct ReplyContext {
    thread_id: Option<String>,
    in_reply_to: Option<String>,
    references: Option<String>,
}

/// Works out the threading of a reply from the thread and/or the message it
/// answers: a Gmail message id is looked up; an RFC Message-ID is used as is
/// (a bare one gets its angle brackets);
/// a thread alone answers its latest message.
async fn reply_context(
    gmail: &GmailClient,
    token: &Arc<Zeroizing<String>>,
    args: &ComposeArgs,
) -> Result<ReplyContext, Failure> {
    const HEADERS: &[&str] = &["Message-ID", "References"];
    if let Some(thread) = &args.thread_id {
        valid_id("thread_id", thread)?;
    }
    let answered = match (args.in_reply_to.as_deref(), args.thread_id.as_deref()) {
        (None, None) => return Ok(ReplyContext::default()),
        // An RFC Message-ID, with its angle brackets or bare (a Gmail id
        // has no `@`).
        (Some(id), thread) if id.trim_start().starts_with('<') || id.contains('@') => {
            let id = id.trim();
            let id = if id.starts_with('<') {
                id.to_string()
            } else {
                format!("<{id}>")
            };
            return Ok(ReplyContext {
                thread_id: thread.map(str::to_string),
                in_reply_to: Some(id.clone()),
                references: Some(id),
            });
        }
        (Some(id), _) => {
            valid_id("in_reply_to", id)?;
            gmail.message(token, id, "metadata", HEADERS).await?
        }
        (None, Some(thread)) => gmail
            .thread(token, thread, "metadata", HEADERS)
            .await?
            .messages
            .and_then(|m| m.into_iter().last())
            .ok_or(GmailError::NotFound)?,
    };
    let thread_id = answered.thread_id.clone().unwrap_or_default();
    if let Some(wanted) = &args.thread_id
        && *wanted != thread_id
    {
        return Err(ToolError::deny(format!(
            "Message {} is not in thread {}; pass the thread_id gmail_search lists for it, or leave thread_id out.",
            quoted(args.in_reply_to.as_deref().unwrap_or_default()),
            quoted(wanted)
        ))
        .into());
    }
    // Headers of received mail: malformed ids are dropped, not refused.
    let payload = answered.payload.unwrap_or_default();
    let message_id = read::header(&payload, "Message-ID")
        .map(|id| id.trim().to_string())
        .filter(|id| compose::is_message_id(id));
    let mut chain: Vec<String> = read::header(&payload, "References")
        .unwrap_or_default()
        .split_whitespace()
        .filter(|id| compose::is_message_id(id))
        .map(str::to_string)
        .collect();
    chain.extend(message_id.clone());
    let skip = chain.len().saturating_sub(MAX_REFERENCES);
    let references = (!chain.is_empty()).then(|| chain[skip..].join(" "));
    Ok(ReplyContext {
        thread_id: Some(thread_id),
        in_reply_to: message_id,
        references,
    })
}
