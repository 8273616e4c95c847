//! The `notify` MCP server: `notify_user`, audited on every call.

use std::sync::Arc;

use model::{Decision, Identity};
use rmcp::handler::server::common::Extension;
use rmcp::handler::server::common::schema_for_output;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, tool, tool_handler, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;
use sidecar::call::{self, ToolError, note};
use sidecar::{Backing, IdentitySource, schema};
use tokio::sync::OnceCell;

use crate::deliver::{Providers, Source, Urgency};
use crate::notifier::{Notifier, NotifyError, Request, Sent};

const SERVER: &str = "notify";

/// The notify MCP server: for the one running agent of its spawn
/// environment (stdio), or for each HTTP request's verified token.
#[derive(Clone)]
pub struct NotifyServer {
    inner: Arc<Inner>,
    tool_router: ToolRouter<Self>,
}

struct Inner {
    identity_source: IdentitySource,
    backing: Backing,
    notifier: OnceCell<Notifier>,
}

/// The arguments of `notify_user`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NotifyArgs {
    /// What the user should know, in markdown (bold, italics, links, code).
    /// At most 20,000 characters.
    pub message: String,
    /// Where to send it: slack, telegram, email or webhook, or
    /// telegram:<integration_id> for one bot. Omit it for the user's default.
    pub channel: Option<String>,
    /// low (silent where possible), normal (default) or high.
    pub urgency: Option<UrgencyArg>,
    /// A short title.
    pub title: Option<String>,
    /// Telegram and Slack: let the user continue this session from the chat
    /// (Telegram: "Reply here" / "Keep my chat" buttons; Slack: replies in
    /// the message's thread).
    pub claim_thread: Option<bool>,
    /// Telegram and Slack: what the thread is about, shown when it is claimed.
    /// At most 64 characters.
    #[schemars(length(max = crate::notifier::MAX_LABEL_CHARS))]
    pub claim_thread_label: Option<String>,
    /// Repeating a call with the same key within 24 hours sends nothing and
    /// returns the first result.
    pub idempotency_key: Option<String>,
}

/// `urgency` as an agent may send it: a value other than low, normal or
/// high is sent as normal and the result says so (the product's server took
/// any). Its schema is [`Urgency`]'s.
#[derive(Debug)]
pub struct UrgencyArg {
    pub urgency: Urgency,
    /// What was sent instead of low, normal or high.
    pub unknown: Option<String>,
}

impl<'de> Deserialize<'de> for UrgencyArg {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        Ok(match Urgency::deserialize(&value) {
            Ok(urgency) => Self {
                urgency,
                unknown: None,
            },
            Err(_) => Self {
                urgency: Urgency::Normal,
                unknown: Some(match value {
                    serde_json::Value::String(text) => text,
                    other => other.to_string(),
                }),
            },
        })
    }
}

impl JsonSchema for UrgencyArg {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        Urgency::schema_name()
    }

    fn schema_id() -> std::borrow::Cow<'static, str> {
        Urgency::schema_id()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        Urgency::json_schema(generator)
    }
}

impl NotifyServer {
    /// A server for `identity_source` over `backing`; nothing is opened until the
    /// first tool call.
    pub fn new(identity_source: IdentitySource, backing: Backing) -> Self {
        Self {
            inner: Arc::new(Inner {
                identity_source,
                backing,
                notifier: OnceCell::new(),
            }),
            tool_router: Self::router(),
        }
    }

    /// The tool definitions, as `tools/list` returns them.
    pub fn tools() -> Vec<rmcp::model::Tool> {
        Self::router().list_all()
    }

    /// The tools, their schemas made portable for every client.
    fn router() -> ToolRouter<Self> {
        schema::portable(Self::tool_router())
    }

    async fn notifier(&self) -> Result<&Notifier, String> {
        self.inner
            .notifier
            .get_or_try_init(|| async {
                let unavailable = |e: ToolError| {
                    tracing::warn!(
                        error = e.detail.as_deref().unwrap_or_default(),
                        "{}",
                        e.message
                    );
                    e.message
                };
                let backing = &self.inner.backing;
                let store = backing.store().await.map_err(unavailable)?.clone();
                let keyring = backing.keyring().await.map_err(unavailable)?.clone();
                Ok(Notifier::new(store, keyring, Providers::from_env()))
            })
            .await
    }
}

fn outcome(integration: Option<&str>, decision: Decision) {
    note(|n| {
        n.integration_id = integration.map(str::to_string);
        n.decision = Some(decision);
    });
}

#[tool_router(router = tool_router)]
impl NotifyServer {
    /// Send the user a notification through one of their connected channels
    /// (Slack, Telegram, Email, Webhook) that this agent may use. Use it when
    /// the user must know or act: a long task finished or failed, a decision
    /// is needed. Do not use it for progress chatter.
    #[tool(
        annotations(title = "Notify the user", read_only_hint = false, destructive_hint = false, open_world_hint = true),
        output_schema = schema_for_output::<Sent>()
    )]
    async fn notify_user(
        &self,
        Extension(who): Extension<Identity>,
        Parameters(args): Parameters<NotifyArgs>,
    ) -> CallToolResult {
        let notifier = match self.notifier().await {
            Ok(n) => n,
            Err(message) => {
                outcome(None, Decision::Error);
                return CallToolResult::error(vec![ContentBlock::text(message)]);
            }
        };
        let request = Request {
            message: args.message,
            channel: args.channel,
            urgency: args.urgency.as_ref().map(|u| u.urgency).unwrap_or_default(),
            title: args.title,
            claim_thread: args.claim_thread.unwrap_or(false),
            claim_thread_label: args.claim_thread_label,
            idempotency_key: args.idempotency_key,
        };
        match notifier.notify(&who, &request, Source::Agent).await {
            Ok(sent) => {
                outcome(Some(&sent.integration_id), Decision::Allow);
                let text = if sent.replayed {
                    format!(
                        "Notification sent via {} (earlier, with this idempotency_key; not sent again)",
                        sent.channel
                    )
                } else {
                    format!("Notification sent via {}", sent.channel)
                };
                let text = match args.urgency.and_then(|u| u.unknown) {
                    Some(unknown) => format!(
                        "{text} (urgency {} is not low, normal or high: sent as normal)",
                        call::quoted(&unknown)
                    ),
                    None => text,
                };
                let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
                result.structured_content = schema::structured(&sent).ok();
                result
            }
            Err(e) => {
                let decision = match &e {
                    NotifyError::Delivery { .. } | NotifyError::Unavailable(_) => Decision::Error,
                    _ => Decision::Deny,
                };
                outcome(e.integration_id(), decision);
                CallToolResult::error(vec![ContentBlock::text(e.to_string())])
            }
        }
    }
}

#[tool_handler(
    router = self.tool_router,
    name = "notify",
    instructions = "Notify the user through their connected channels with notify_user."
)]
impl ServerHandler for NotifyServer {
    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let notifier = self.notifier().await.ok();
        let auditor = call::Auditor {
            store: notifier.map(|n| n.store()),
            identity_source: &self.inner.identity_source,
            server: SERVER,
        };
        call::audited(self, &self.tool_router, request, context, auditor).await
    }
}
