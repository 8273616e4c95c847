//! The `gmail` MCP server: one handler, its tools in one router.

use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use futures::StreamExt as _;
use futures::future::BoxFuture;
use model::Identity;
use model::{IntegrationType, Status};
use providers::gmail::api::Message;
use rmcp::handler::server::common::Extension;
use rmcp::handler::server::common::schema_for_output;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ListToolsResult,
    PaginatedRequestParams, ResourceContents, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, tool, tool_handler, tool_router};
use sidecar::call::{self, ToolError, note, quoted, reply};
use sidecar::{Backing, Caller, schema};
use store::{GrantError, SidecarStore};
use tokio::sync::OnceCell;
use vault::Keyring;
use zeroize::Zeroizing;

use crate::grant::{Access, Mailbox};
use crate::mail::{compose, read};
use crate::schema::*;
use providers::gmail::{GmailClient, GmailError};
use providers::google::{self as oauth, OAuthConfig, OAuthError};

const SERVER: &str = "gmail";
/// Attachments larger than this are refused.
const MAX_ATTACHMENT: u64 = 5 * 1024 * 1024;
/// The most characters of a text attachment returned.
const MAX_ATTACHMENT_CHARS: usize = 20_000;
/// No `metadataHeaders` filter: `full` messages carry every header.
const ALL_HEADERS: &[&str] = &[];
/// Message metadata fetched at once for a search page.
const SEARCH_FETCHES: usize = 5;

/// The gmail MCP server: for the one running agent of its spawn
/// environment (stdio), or for each HTTP request's verified token.
#[derive(Clone)]
pub struct GmailServer {
    inner: Arc<Inner>,
    tool_router: ToolRouter<Self>,
}

struct Inner {
    caller: Caller,
    backing: Backing,
    gmail: OnceCell<GmailClient>,
    oauth: OnceCell<(reqwest::Client, OAuthConfig)>,
}

/// A failed step of a tool: Gmail's answer, or our own refusal.
enum Failure {
    Gmail(GmailError),
    Tool(ToolError),
}

impl From<GmailError> for Failure {
    fn from(e: GmailError) -> Self {
        Self::Gmail(e)
    }
}

impl From<ToolError> for Failure {
    fn from(e: ToolError) -> Self {
        Self::Tool(e)
    }
}

/// Which tool needs which access.
fn access_of(tool: &str) -> Access {
    match tool {
        "gmail_send_message" => Access::Send,
        "gmail_create_draft" => Access::Draft,
        _ => Access::Read,
    }
}

/// Refuses an id that is not shaped like Gmail's: ids go into the request
/// path, where `../` or `?` would reach another endpoint.
fn valid_id(name: &str, id: &str) -> Result<(), ToolError> {
    let ok = !id.is_empty()
        && id.len() <= 256
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ToolError::deny(format!(
            "{name} {} is not a Gmail id; use the ids gmail_search and gmail_read_message return.",
            quoted(id)
        )))
    }
}

/// At most this many Message-IDs are carried in a reply's `References`.
const MAX_REFERENCES: usize = 20;

fn max_chars(requested: Option<i64>) -> usize {
    requested.unwrap_or(4_000).clamp(1, 20_000) as usize
}

impl GmailServer {
    /// A server for `caller` over `backing`; nothing is opened until the
    /// first request.
    pub fn new(caller: Caller, backing: Backing) -> Self {
        let inner = Inner {
            caller,
            backing,
            gmail: OnceCell::new(),
            oauth: OnceCell::new(),
        };
        Self {
            inner: Arc::new(inner),
            tool_router: Self::router(),
        }
    }

    /// Every tool definition, whatever a grant allows.
    pub fn tools() -> Vec<Tool> {
        Self::router().list_all()
    }

    /// The tools, their schemas made portable for every client.
    fn router() -> ToolRouter<Self> {
        schema::portable(Self::tool_router())
    }

    async fn store(&self) -> Result<&SidecarStore, ToolError> {
        self.inner.backing.store().await
    }

    async fn keyring(&self) -> Result<&Keyring, ToolError> {
        self.inner.backing.keyring().await.map(Arc::as_ref)
    }

    async fn gmail(&self) -> &GmailClient {
        self.inner
            .gmail
            .get_or_init(|| async { GmailClient::from_env() })
            .await
    }

    async fn oauth(&self) -> Result<&(reqwest::Client, OAuthConfig), ToolError> {
        let timeout = self.gmail().await.timeout();
        self.inner
            .oauth
            .get_or_try_init(|| async {
                Ok((oauth::http_client(timeout)?, OAuthConfig::from_env()))
            })
            .await
            .map_err(|e: OAuthError| ToolError::error(format!("mcp-gmail is misconfigured: {e}.")))
    }

    /// The user's Gmail integration if it is granted to this profile and
    /// allows `access`, opened; the same answer whether it exists or not.
    async fn mailbox(&self, who: &Identity, access: Access) -> Result<Mailbox, ToolError> {
        let mailbox = self.granted_mailbox(who).await?;
        if !mailbox.allows(access) {
            return Err(ToolError::deny(access.missing()));
        }
        Ok(mailbox)
    }

    /// The user's Gmail integration if it is granted to this profile, opened.
    async fn granted_mailbox(&self, who: &Identity) -> Result<Mailbox, ToolError> {
        let store = self.store().await?;
        let keyring = self.keyring().await?;
        let opened = store
            .open_granted(keyring, who, IntegrationType::Gmail, |_| true)
            .await;
        let mailbox = match opened {
            Ok(Some((integration, config))) => Mailbox::new(integration, config),
            Ok(None) => {
                return Err(ToolError::deny(
                    "No Gmail account is available to this agent. The user can connect Gmail in Settings → Integrations and grant it to this agent.",
                ));
            }
            Err(GrantError::Open(e)) => {
                note(|n| n.integration_id = Some(e.integration_id().to_string()));
                return Err(ToolError::error(
                    "The stored Gmail credentials cannot be read; ask the operator to check the keyring.",
                )
                .with_detail(e));
            }
            Err(GrantError::Store(e)) => {
                return Err(ToolError::error(
                    "The integrations store is not answering; try again shortly.",
                )
                .with_detail(e));
            }
        };
        note(|n| n.integration_id = Some(mailbox.integration.id.clone()));
        Ok(mailbox)
    }

    /// The access token for this call: the stored one while fresh; else (or
    /// when `renew`) a new one from Google, written back encrypted.
    async fn token(
        &self,
        mailbox: &mut Mailbox,
        renew: bool,
    ) -> Result<Arc<Zeroizing<String>>, ToolError> {
        if !renew && let Some(token) = mailbox.fresh_token() {
            return Ok(Arc::new(token));
        }
        let refresh_token = mailbox.refresh_token().ok_or_else(|| {
            ToolError::error(
                "This Gmail connection has no refresh token; the user must reconnect Gmail.",
            )
        })?;
        let (http, config) = self.oauth().await?;
        let grant = match oauth::refresh(http, config, &refresh_token).await {
            Ok(grant) => grant,
            Err(OAuthError::InvalidGrant) => {
                return Err(self.dead_grant(mailbox, "invalid_grant").await);
            }
            Err(e @ OAuthError::Misconfigured(_)) => {
                return Err(ToolError::error(format!(
                    "mcp-gmail is misconfigured: {e}."
                )));
            }
            Err(e) => {
                return Err(ToolError::error(
                    "Google's sign-in service is not answering; try again later.",
                )
                .with_detail(e));
            }
        };
        self.write_back(mailbox, &grant).await;
        Ok(Arc::new(grant.access_token))
    }

    /// Keeps a refreshed token in the store for the next call, unless another
    /// writer changed the row first (its token is as good as ours).
    async fn write_back(&self, mailbox: &mut Mailbox, grant: &oauth::Grant) {
        let (Ok(store), Ok(keyring)) = (self.store().await, self.keyring().await) else {
            return;
        };
        let Some(config) = mailbox.with_grant(grant) else {
            return;
        };
        let i = &mailbox.integration;
        let sealed = keyring.seal_config(&i.id, &i.user_id, IntegrationType::Gmail, &config);
        match store.swap_config(&i.id, &i.sealed, &sealed).await {
            Ok(true) => {
                mailbox.integration.sealed = sealed;
                mailbox.config = config;
            }
            Ok(false) => {
                tracing::debug!(integration = %i.id, "the grant changed meanwhile; the refreshed token is not stored")
            }
            Err(e) => {
                tracing::warn!(integration = %i.id, error = %e, "could not store the refreshed token")
            }
        }
    }

    /// Marks the grant `needs_reauth` and tells the agent so.
    async fn dead_grant(&self, mailbox: &Mailbox, why: &str) -> ToolError {
        if let Ok(store) = self.store().await
            && let Err(e) = store
                .set_status(
                    &mailbox.integration.id,
                    &mailbox.integration.sealed,
                    Status::NeedsReauth,
                )
                .await
        {
            tracing::warn!(integration = %mailbox.integration.id, error = %e, "could not mark the integration needs_reauth");
        }
        ToolError::error(format!(
            "The Gmail connection of {} is no longer valid: the user must reconnect Gmail in Settings → Integrations.",
            mailbox.email
        ))
        .with_detail(why)
    }

    /// Runs `call` against Gmail for the granted mailbox, with one refresh
    /// and one retry when Gmail refuses the token; `item` names what a 404
    /// was about.
    /// `call` gets the client, the token and the mailbox's address.
    async fn with_gmail<'c, T>(
        &self,
        who: &Identity,
        access: Access,
        item: String,
        call: impl Fn(GmailClient, Arc<Zeroizing<String>>, String) -> BoxFuture<'c, Result<T, Failure>>,
    ) -> Result<(Mailbox, T), ToolError> {
        let mut mailbox = self.mailbox(who, access).await?;
        let gmail = self.gmail().await;
        let token = self.token(&mut mailbox, false).await?;
        // One deadline for all of the tool's requests (a search's fetches).
        let email = mailbox.email.clone();
        let bounded = async |token| {
            tokio::time::timeout(gmail.timeout(), call(gmail.clone(), token, email.clone()))
                .await
                .unwrap_or(Err(Failure::Gmail(GmailError::Timeout)))
        };
        let result = match bounded(token).await {
            Err(Failure::Gmail(GmailError::Unauthorized)) => {
                let token = self.token(&mut mailbox, true).await?;
                bounded(token).await
            }
            other => other,
        };
        match result {
            Ok(value) => Ok((mailbox, value)),
            Err(Failure::Tool(e)) => Err(e),
            Err(Failure::Gmail(e)) => Err(Self::gmail_failure(&item, e)),
        }
    }

    /// Turns a Gmail failure into a sentence the agent can act on.
    fn gmail_failure(item: &str, e: GmailError) -> ToolError {
        let message = match &e {
            GmailError::Unauthorized => {
                "Gmail refused a freshly issued access token; try again later.".into()
            }
            GmailError::RateLimited { retry_after } => format!(
                "Gmail is rate limiting requests; try again in {} seconds.",
                retry_after.unwrap_or(30)
            ),
            GmailError::NotFound => {
                return ToolError::deny(format!(
                    "Gmail has no {item}; call gmail_search to find message and thread ids."
                ))
                .with_detail(e);
            }
            GmailError::Rejected(why) => {
                return ToolError::deny(format!("Gmail rejected the request: {why}"))
                    .with_detail(e);
            }
            GmailError::Forbidden(why) => format!("Gmail refused the request: {why}"),
            GmailError::Upstream(status) => {
                format!("Gmail is not answering right now (HTTP {status}); try again later.")
            }
            GmailError::Timeout => "Gmail did not answer in time; try again later.".into(),
            GmailError::Connect(_) => "Gmail could not be reached; try again later.".into(),
            GmailError::BadResponse => {
                "Gmail sent a response that could not be read; try again later.".into()
            }
        };
        ToolError::error(message).with_detail(e)
    }

    /// Composes and sends (or saves as a draft) one message.
    async fn compose(
        &self,
        who: &Identity,
        args: &ComposeArgs,
        access: Access,
    ) -> Result<(Mailbox, Composed), ToolError> {
        self.with_gmail(
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
}

/// What a send or a draft produced.
struct Composed {
    draft_id: Option<String>,
    message_id: String,
    thread_id: String,
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

/// One message as the agent reads it.
fn message_out(message: &Message, max_chars: usize) -> MessageOut {
    let payload = message.payload.clone().unwrap_or_default();
    let header = |name: &str| read::header(&payload, name);
    let body = read::body(&payload, max_chars);
    MessageOut {
        message_id: message.id.clone().unwrap_or_default(),
        thread_id: message.thread_id.clone().unwrap_or_default(),
        subject: header("Subject").unwrap_or_default(),
        from: header("From").unwrap_or_default(),
        to: header("To").unwrap_or_default(),
        cc: header("Cc"),
        date: header("Date").unwrap_or_default(),
        labels: message.label_ids.clone().unwrap_or_default(),
        body: body.text,
        truncated: body.truncated,
        attachments: read::attachments(&payload)
            .into_iter()
            .map(|a| AttachmentOut {
                attachment_id: a.attachment_id,
                filename: a.filename,
                mime_type: a.mime_type,
                size: a.size,
            })
            .collect(),
    }
}

/// A message as readable text: headers, attachments, then the body.
fn message_text(m: &MessageOut) -> String {
    let mut text = format!("From: {}\nTo: {}\n", m.from, m.to);
    if let Some(cc) = &m.cc {
        text += &format!("Cc: {cc}\n");
    }
    text += &format!(
        "Date: {}\nSubject: {}\nLabels: {}\nMessage: {} (thread {})\n",
        m.date,
        m.subject,
        m.labels.join(", "),
        m.message_id,
        m.thread_id
    );
    for a in &m.attachments {
        text += &format!(
            "Attachment: {} ({}, {} bytes, attachment_id {})\n",
            a.filename, a.mime_type, a.size, a.attachment_id
        );
    }
    text + "\n" + &m.body
}

/// Whether an attachment is text the agent can read inline.
fn is_text(mime_type: &str, filename: &str) -> bool {
    let mime = mime_type.to_ascii_lowercase();
    mime.starts_with("text/")
        || ["application/json", "application/xml", "application/csv"].contains(&mime.as_str())
        || [".txt", ".csv", ".json", ".md", ".xml", ".ics"]
            .iter()
            .any(|ext| filename.to_ascii_lowercase().ends_with(ext))
}

#[tool_router(router = tool_router)]
impl GmailServer {
    /// Search the user's mailbox with Gmail search syntax ("from:", "to:",
    /// "subject:", "newer_than:7d", "has:attachment", "label:", ...). Returns
    /// sender, subject, date and snippet per message, newest first; read one
    /// with gmail_read_message.
    #[tool(
        annotations(title = "Search mail", read_only_hint = true, open_world_hint = true),
        output_schema = schema_for_output::<SearchOut>()
    )]
    async fn gmail_search(
        &self,
        Extension(who): Extension<Identity>,
        Parameters(args): Parameters<SearchArgs>,
    ) -> CallToolResult {
        call::outcome(async move {
            let args = &args;
            let max = args.max_results.unwrap_or(10).clamp(1, 50) as u32;
            if let Some(page) = &args.page_token {
                valid_id("page_token", page)?;
            }
            let (_, (list, metas)) = self
                .with_gmail(
                    &who,
                    Access::Read,
                    "such page of results".into(),
                    |gmail, token, _| {
                        Box::pin(async move {
                            let (gmail, token) = (&gmail, &token);
                            let list = gmail
                                .search(token, &args.query, max, args.page_token.as_deref())
                                .await?;
                            let ids: Vec<String> = list
                                .messages
                                .iter()
                                .flatten()
                                .filter_map(|m| m.id.clone())
                                .collect();
                            let metas: Vec<_> = futures::stream::iter(ids)
                                .map(|id| async move {
                                    gmail
                                        .message(
                                            token,
                                            &id,
                                            "metadata",
                                            &["From", "Subject", "Date"],
                                        )
                                        .await
                                })
                                .buffered(SEARCH_FETCHES)
                                .collect()
                                .await;
                            let mut found = Vec::new();
                            for meta in metas {
                                match meta {
                                    Ok(m) => found.push(m),
                                    // Deleted since the search: not a match any more.
                                    Err(GmailError::NotFound) => {}
                                    Err(e) => return Err(e.into()),
                                }
                            }
                            Ok((list, found))
                        })
                    },
                )
                .await?;
            let messages: Vec<MessageSummary> = metas
                .iter()
                .map(|m| {
                    let payload = m.payload.clone().unwrap_or_default();
                    let header = |name| read::header(&payload, name).unwrap_or_default();
                    MessageSummary {
                        message_id: m.id.clone().unwrap_or_default(),
                        thread_id: m.thread_id.clone().unwrap_or_default(),
                        from: header("From"),
                        subject: header("Subject"),
                        date: header("Date"),
                        snippet: read::html_to_text(m.snippet.as_deref().unwrap_or_default()),
                    }
                })
                .collect();
            let mut text = messages
                .iter()
                .map(|m| {
                    format!(
                        "{} | {} | {} | {}\n  {} (thread {})",
                        m.date, m.from, m.subject, m.snippet, m.message_id, m.thread_id
                    )
                })
                .collect::<Vec<_>>()
                .join("\n");
            if messages.is_empty() {
                text = "No messages match.".into();
            }
            if let Some(next) = &list.next_page_token {
                text += &format!("\nMore: pass page_token=\"{next}\" for the next page.");
            }
            reply(
                text,
                &SearchOut {
                    messages,
                    result_size_estimate: list.result_size_estimate.unwrap_or(0),
                    next_page_token: list.next_page_token,
                },
            )
        })
        .await
    }

    /// Read one message: headers, labels, attachments (ids, names, sizes)
    /// and the body as text, cut at max_chars (default 4000) with a marker.
    #[tool(
        annotations(title = "Read a message", read_only_hint = true, open_world_hint = true),
        output_schema = schema_for_output::<MessageOut>()
    )]
    async fn gmail_read_message(
        &self,
        Extension(who): Extension<Identity>,
        Parameters(args): Parameters<ReadMessageArgs>,
    ) -> CallToolResult {
        call::outcome(async move {
            let args = &args;
            valid_id("message_id", &args.message_id)?;
            let item = format!("message {}", quoted(&args.message_id));
            let (_, message) = self
                .with_gmail(&who, Access::Read, item, |gmail, token, _| {
                    Box::pin(async move {
                        let (gmail, token) = (&gmail, &token);
                        let message = gmail
                            .message(token, &args.message_id, "full", ALL_HEADERS)
                            .await?;
                        Ok(message)
                    })
                })
                .await?;
            let out = message_out(&message, max_chars(args.max_chars));
            reply(message_text(&out), &out)
        })
        .await
    }

    /// Read a whole conversation, oldest message first, each as
    /// gmail_read_message shows it (body cut at max_chars per message).
    #[tool(
        annotations(title = "Read a thread", read_only_hint = true, open_world_hint = true),
        output_schema = schema_for_output::<ThreadOut>()
    )]
    async fn gmail_read_thread(
        &self,
        Extension(who): Extension<Identity>,
        Parameters(args): Parameters<ReadThreadArgs>,
    ) -> CallToolResult {
        call::outcome(async move {
            let args = &args;
            valid_id("thread_id", &args.thread_id)?;
            let item = format!("thread {}", quoted(&args.thread_id));
            let (_, thread) = self
                .with_gmail(&who, Access::Read, item, |gmail, token, _| {
                    Box::pin(async move {
                        let (gmail, token) = (&gmail, &token);
                        let thread = gmail
                            .thread(token, &args.thread_id, "full", ALL_HEADERS)
                            .await?;
                        Ok(thread)
                    })
                })
                .await?;
            let limit = max_chars(args.max_chars);
            let messages: Vec<MessageOut> = thread
                .messages
                .iter()
                .flatten()
                .map(|m| message_out(m, limit))
                .collect();
            let text = messages
                .iter()
                .map(message_text)
                .collect::<Vec<_>>()
                .join("\n\n----------\n\n");
            reply(
                text,
                &ThreadOut {
                    thread_id: thread.id.unwrap_or_else(|| args.thread_id.clone()),
                    messages,
                },
            )
        })
        .await
    }

    /// List the mailbox's labels (system and user), sorted by name, with the
    /// ids that messages' labels refer to.
    #[tool(
        annotations(title = "List labels", read_only_hint = true, open_world_hint = true),
        output_schema = schema_for_output::<LabelsOut>()
    )]
    async fn gmail_list_labels(&self, Extension(who): Extension<Identity>) -> CallToolResult {
        call::outcome(async move {
            let (_, labels) = self
                .with_gmail(&who, Access::Read, "labels".into(), |gmail, token, _| {
                    Box::pin(async move {
                        let (gmail, token) = (&gmail, &token);
                        let labels = gmail.labels(token).await?;
                        Ok(labels)
                    })
                })
                .await?;
            let mut labels: Vec<LabelOut> = labels
                .into_iter()
                .map(|l| LabelOut {
                    name: l.name.unwrap_or_default(),
                    id: l.id.unwrap_or_default(),
                    kind: l.type_.unwrap_or_default(),
                })
                .collect();
            labels.sort_by(|a, b| {
                a.name
                    .to_lowercase()
                    .cmp(&b.name.to_lowercase())
                    .then(a.name.cmp(&b.name))
            });
            let text = labels
                .iter()
                .map(|l| format!("{} ({}, {})", l.name, l.id, l.kind))
                .collect::<Vec<_>>()
                .join("\n");
            reply(text, &LabelsOut { labels })
        })
        .await
    }

    /// Fetch one attachment of a message: text files come back as text (cut
    /// at 20000 characters), others as an embedded resource. Refused above
    /// 5 MiB.
    #[tool(
        annotations(title = "Get an attachment", read_only_hint = true, open_world_hint = true),
        output_schema = schema_for_output::<AttachmentContentOut>()
    )]
    async fn gmail_get_attachment(
        &self,
        Extension(who): Extension<Identity>,
        Parameters(args): Parameters<AttachmentArgs>,
    ) -> CallToolResult {
        call::outcome(async move {
            let args = &args;
            valid_id("message_id", &args.message_id)?;
            valid_id("attachment_id", &args.attachment_id)?;
            let item = format!(
                "attachment {} in message {}",
                quoted(&args.attachment_id),
                quoted(&args.message_id)
            );
            let (_, (meta, data)) = self
                .with_gmail(&who, Access::Read, item, |gmail, token, _| Box::pin(async move {
                    let (gmail, token) = (&gmail, &token);
                    let message = gmail.message(token, &args.message_id, "full", ALL_HEADERS).await?;
                    let listed = read::attachments(&message.payload.unwrap_or_default());
                    if let Some(a) = listed.iter().find(|a| a.attachment_id == args.attachment_id)
                        && a.size > MAX_ATTACHMENT
                    {
                        return Ok((Some(a.clone()), Err(a.size)));
                    }
                    let body = gmail
                        .attachment(token, &args.message_id, &args.attachment_id)
                        .await?;
                    let data = body.data.unwrap_or_default();
                    // Gmail re-issues attachment ids on each read: an id the
                    // message no longer lists is matched by its size.
                    let size = data.len() as u64;
                    let meta = listed
                        .iter()
                        .find(|a| a.attachment_id == args.attachment_id)
                        .or_else(|| {
                            let same: Vec<_> = listed.iter().filter(|a| a.size == size).collect();
                            (same.len() == 1).then(|| same[0])
                        })
                        .cloned();
                    Ok((meta, if size > MAX_ATTACHMENT { Err(size) } else { Ok(data) }))
                }))
                .await?;
            let (filename, mime_type, content_type) = meta.map_or_else(
                || ("attachment".to_string(), "application/octet-stream".to_string(), None),
                |a| (a.filename, a.mime_type, a.content_type),
            );
            let data = data.map_err(|size| {
                ToolError::deny(format!(
                    "{filename} is {:.1} MiB; attachments above 5 MiB are not returned. Ask the user to open it in Gmail.",
                    size as f64 / (1024.0 * 1024.0)
                ))
            })?;
            let size = data.len() as u64;
            let mut out = AttachmentContentOut {
                message_id: args.message_id.clone(),
                attachment_id: args.attachment_id.clone(),
                filename: filename.clone(),
                mime_type: mime_type.clone(),
                size,
                text: None,
                truncated: false,
            };
            if is_text(&mime_type, &filename) {
                let text = read::decode_text(&data, content_type.as_deref().or(Some(&mime_type)));
                let body = read::truncate(&text, MAX_ATTACHMENT_CHARS);
                out.truncated = body.truncated;
                out.text = Some(body.text.clone());
                return reply(format!("{filename} ({mime_type}, {size} bytes):\n\n{}", body.text), &out);
            }
            let mut result = reply(
                format!("{filename} ({mime_type}, {size} bytes) is attached as an embedded resource."),
                &out,
            )?;
            let uri = format!("gmail://messages/{}/attachments/{}", args.message_id, filename);
            result.content.push(ContentBlock::resource(
                ResourceContents::blob(STANDARD.encode(&data), uri).with_mime_type(mime_type),
            ));
            Ok(result)
        })
        .await
    }

    /// Send an email from the user's Gmail address. Sends immediately and
    /// cannot be undone: only when the user asked for this message to go out.
    /// To reply, pass the thread_id and/or in_reply_to of the message answered.
    #[tool(
        annotations(title = "Send an email", read_only_hint = false, destructive_hint = false, idempotent_hint = false, open_world_hint = true),
        output_schema = schema_for_output::<SentOut>()
    )]
    async fn gmail_send_message(
        &self,
        Extension(who): Extension<Identity>,
        Parameters(args): Parameters<ComposeArgs>,
    ) -> CallToolResult {
        call::outcome(async move {
            let (mailbox, sent) = self.compose(&who, &args, Access::Send).await?;
            let out = SentOut {
                message_id: sent.message_id,
                thread_id: sent.thread_id,
            };
            reply(
                format!(
                    "Sent from {} to {} (message {}, thread {}).",
                    mailbox.email, args.to, out.message_id, out.thread_id
                ),
                &out,
            )
        })
        .await
    }

    /// Save an email as a draft in the user's Gmail, for the user to review
    /// and send. Same arguments as gmail_send_message.
    #[tool(
        annotations(title = "Create a draft", read_only_hint = false, destructive_hint = false, idempotent_hint = false, open_world_hint = true),
        output_schema = schema_for_output::<DraftOut>()
    )]
    async fn gmail_create_draft(
        &self,
        Extension(who): Extension<Identity>,
        Parameters(args): Parameters<ComposeArgs>,
    ) -> CallToolResult {
        call::outcome(async move {
            let (_, draft) = self.compose(&who, &args, Access::Draft).await?;
            let out = DraftOut {
                draft_id: draft.draft_id.unwrap_or_default(),
                message_id: draft.message_id,
                thread_id: draft.thread_id,
            };
            reply(
                format!(
                    "Draft {} saved (message {}, thread {}); the user can review and send it in Gmail.",
                    out.draft_id, out.message_id, out.thread_id
                ),
                &out,
            )
        })
        .await
    }
}

#[tool_handler(
    router = self.tool_router,
    name = "gmail",
    instructions = "The user's Gmail: search and read mail, list labels, fetch attachments, and (when the grant allows) send mail and create drafts. Prefer a draft unless the user asked for the message to be sent."
)]
impl ServerHandler for GmailServer {
    /// Only the tools the user's grant allows: no send or draft tools for a
    /// read-only grant. With no readable grant, every tool (each call says why
    /// it is refused).
    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let who = self.inner.caller.identity(&context)?;
        let mut tools = self.tool_router.list_all();
        if let Ok(mailbox) = self.granted_mailbox(&who).await {
            tools.retain(|t| mailbox.allows(access_of(&t.name)));
        }
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let auditor = call::Auditor {
            store: self.store().await.ok(),
            caller: &self.inner.caller,
            server: SERVER,
        };
        call::audited(self, &self.tool_router, request, context, auditor).await
    }
}
