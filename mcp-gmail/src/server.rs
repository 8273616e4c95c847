//! The `gmail` MCP server: one handler, its tools in one router.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use futures::StreamExt as _;
use model::Identity;
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
use sidecar::call::{self, ToolError, quoted, reply};
use sidecar::{Backing, IdentitySource, schema};

use crate::grant::Access;
use crate::mail::read;
use crate::outbox;
use crate::render::{is_text, max_chars, message_out, message_text};
use crate::schema::*;
use crate::upstream::{Upstream, valid_id};
use providers::gmail::GmailError;

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
    identity_source: IdentitySource,
    upstream: Upstream,
}

/// Which tool needs which access.
fn access_of(tool: &str) -> Access {
    match tool {
        "gmail_send_message" => Access::Send,
        "gmail_create_draft" => Access::Draft,
        _ => Access::Read,
    }
}

impl GmailServer {
    /// A server for `identity_source` over `backing`; nothing is opened until the
    /// first request.
    pub fn new(identity_source: IdentitySource, backing: Backing) -> Self {
        let inner = Inner {
            identity_source,
            upstream: Upstream::new(backing),
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

    fn upstream(&self) -> &Upstream {
        &self.inner.upstream
    }
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
                .upstream()
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
                .upstream()
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
                .upstream()
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
                .upstream()
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
                .upstream()
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
            let (mailbox, sent) =
                outbox::compose(self.upstream(), &who, &args, Access::Send).await?;
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
            let (_, draft) = outbox::compose(self.upstream(), &who, &args, Access::Draft).await?;
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
        let who = self.inner.identity_source.identity(&context)?;
        let mut tools = self.tool_router.list_all();
        if let Ok(mailbox) = self.upstream().granted(&who).await {
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
            store: self.upstream().store().await.ok(),
            identity_source: &self.inner.identity_source,
            server: SERVER,
        };
        call::audited(self, &self.tool_router, request, context, auditor).await
    }
}
