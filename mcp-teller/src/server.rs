//! The `teller` MCP server: one handler, its tools in one router.

use std::sync::Arc;

use model::Identity;
use model::{Integration, IntegrationType, ReauthReason};
use rmcp::handler::server::common::Extension;
use rmcp::handler::server::common::schema_for_output;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolRequestParams, CallToolResponse, CallToolResult};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, tool, tool_handler, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sidecar::call::{self, ToolError, note, quoted, reply};
use sidecar::{Backing, IdentitySource, schema};
use store::{GrantError, SidecarStore};
use tokio::sync::OnceCell;
use vault::Keyring;
use zeroize::Zeroizing;

use providers::teller::{TellerClient, TellerConfig, TellerError, TransactionQuery};

const SERVER: &str = "teller";

/// The teller MCP server: for the one running agent of its spawn
/// environment (stdio), or for each HTTP request's verified token.
#[derive(Clone)]
pub struct TellerServer {
    inner: Arc<Inner>,
    tool_router: ToolRouter<Self>,
}

struct Inner {
    identity_source: IdentitySource,
    backing: Backing,
    client: OnceCell<TellerClient>,
}

// ---- arguments -------------------------------------------------------------

/// Arguments naming one enrollment.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrollmentArgs {
    /// The enrollment, as listed by teller_list_enrollments (e.g. "enr_...").
    pub enrollment_id: String,
}

/// Arguments naming one account of one enrollment.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountArgs {
    /// The enrollment, as listed by teller_list_enrollments.
    pub enrollment_id: String,
    /// The account, as listed by teller_list_accounts (e.g. "acc_...").
    pub account_id: String,
}

/// Arguments of teller_list_transactions.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TransactionsArgs {
    /// The enrollment, as listed by teller_list_enrollments.
    pub enrollment_id: String,
    /// The account, as listed by teller_list_accounts.
    pub account_id: String,
    /// How many transactions (newest first); default 50, at most 250.
    pub count: Option<i64>,
    /// Continue with transactions older than this one: pass the previous page's next_from_id.
    pub from_id: Option<String>,
    /// Only transactions on or after this date (YYYY-MM-DD).
    pub start_date: Option<String>,
    /// Only transactions on or before this date (YYYY-MM-DD).
    pub end_date: Option<String>,
}

// ---- results ---------------------------------------------------------------

#[derive(Debug, Serialize, JsonSchema)]
pub struct EnrollmentsOut {
    pub enrollments: Vec<EnrollmentOut>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct EnrollmentOut {
    pub enrollment_id: String,
    pub institution: String,
    /// When the user linked the bank (RFC 3339).
    pub linked_at: String,
    /// `active`, or `needs_reauth` when the user must reconnect the bank.
    pub status: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct AccountsOut {
    pub enrollment_id: String,
    pub accounts: Vec<AccountOut>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct AccountOut {
    pub account_id: String,
    pub name: String,
    /// `depository` or `credit`.
    #[serde(rename = "type")]
    pub kind: String,
    pub subtype: String,
    pub currency: String,
    pub last_four: String,
    pub institution: String,
    pub status: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct BalanceOut {
    pub account_id: String,
    /// Exact decimal string as Teller sent it; absent when Teller sent none.
    pub available: Option<String>,
    /// Exact decimal string as Teller sent it; absent when Teller sent none.
    pub ledger: Option<String>,
    pub currency: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct TransactionsOut {
    pub account_id: String,
    pub transactions: Vec<TransactionOut>,
    /// Pass as from_id to get the next, older page; absent when there is none.
    pub next_from_id: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct TransactionOut {
    pub id: String,
    pub date: String,
    /// Exact decimal string; negative is money out.
    pub amount: String,
    /// `posted` or `pending`.
    pub status: String,
    pub description: String,
    pub category: Option<String>,
    pub counterparty: Option<String>,
    pub running_balance: Option<String>,
}

#[derive(Serialize, JsonSchema)]
pub struct DetailsOut {
    pub account_id: String,
    pub account_number: String,
    pub routing_numbers: RoutingOut,
}

#[derive(Serialize, JsonSchema)]
pub struct RoutingOut {
    pub ach: Option<String>,
    pub wire: Option<String>,
}

// ---- the server ------------------------------------------------------------

impl TellerServer {
    /// A server for `identity_source` over `backing`; nothing is opened until the
    /// first tool call.
    pub fn new(identity_source: IdentitySource, backing: Backing) -> Self {
        let inner = Inner {
            identity_source,
            backing,
            client: OnceCell::new(),
        };
        Self {
            inner: Arc::new(inner),
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

    async fn store(&self) -> Result<&SidecarStore, ToolError> {
        self.inner.backing.store().await
    }

    async fn keyring(&self) -> Result<&Keyring, ToolError> {
        self.inner.backing.keyring().await.map(Arc::as_ref)
    }

    async fn client(&self) -> Result<&TellerClient, ToolError> {
        self.inner
            .client
            .get_or_try_init(|| async { TellerClient::new(&TellerConfig::from_env()) })
            .await
            .map_err(|e| ToolError::error(format!("mcp-teller is misconfigured: {e}.")))
    }

    /// The enrollment `enrollment_id` if it is granted to this profile, with
    /// its access token; otherwise the same answer whether it exists or not.
    async fn enrollment(
        &self,
        who: &Identity,
        enrollment_id: &str,
    ) -> Result<(Integration, Zeroizing<String>), ToolError> {
        let store = self.store().await?;
        let keyring = self.keyring().await?;
        let opened = store
            .open_granted(keyring, who, IntegrationType::Teller, |i| {
                i.external_id.as_deref() == Some(enrollment_id)
            })
            .await;
        let (integration, config) = match opened {
            Ok(Some(found)) => found,
            Ok(None) => {
                return Err(ToolError::deny(format!(
                    "No Teller enrollment {} is available to this agent. Call teller_list_enrollments to see the enrollments you can use.",
                    quoted(enrollment_id)
                )));
            }
            Err(GrantError::Open(e)) => {
                note(|n| n.integration_id = Some(e.integration_id().to_string()));
                return Err(ToolError::error(
                    "The stored credentials of this enrollment cannot be read; ask the operator to check the keyring.",
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
        note(|n| n.integration_id = Some(integration.id.clone()));
        let token = config
            .get(IntegrationType::Teller, "access_token")
            .ok()
            .flatten()
            .ok_or_else(|| {
                ToolError::error(
                    "This enrollment has no access token; the user must reconnect the bank.",
                )
            })?;
        Ok((integration, token))
    }

    /// Turns a Teller failure into a sentence the agent can act on; a dead
    /// grant marks the integration `needs_reauth`.
    async fn teller_failure(&self, integration: &Integration, e: TellerError) -> ToolError {
        let bank = &integration.label;
        let message = match &e {
            TellerError::Unauthorized { .. } | TellerError::Disconnected { .. } => {
                if let Ok(store) = self.store().await
                    && let Err(err) = store
                        .mark_needs_reauth(
                            &integration.id,
                            &integration.sealed,
                            ReauthReason::ProviderRefused,
                            &e.to_string(),
                        )
                        .await
                {
                    tracing::warn!(integration = %integration.id, error = %err, "could not mark the integration needs_reauth");
                }
                format!(
                    "The connection to {bank} is no longer valid: the user must reconnect {bank} in Settings → Integrations."
                )
            }
            TellerError::RateLimited { retry_after } => format!(
                "Teller is rate limiting requests for {bank}; try again in {} seconds.",
                retry_after.unwrap_or(30)
            ),
            TellerError::Upstream { status } => {
                format!(
                    "{bank} is not answering right now (Teller returned {status}); try again later."
                )
            }
            TellerError::Timeout => format!("{bank} did not answer in time; try again later."),
            TellerError::Connect(_) => "Teller could not be reached; try again later.".into(),
            TellerError::BadResponse => {
                "Teller sent a response that could not be read; try again later.".into()
            }
            TellerError::NotFound => format!(
                "That account was not found in this {bank} enrollment; call teller_list_accounts to see its accounts."
            ),
            TellerError::Closed => "That account is closed.".into(),
            TellerError::BadRequest { code } => {
                format!("Teller rejected the request ({code}); check the arguments.")
            }
            TellerError::Config(msg) => format!("mcp-teller is misconfigured: {msg}."),
        };
        ToolError::error(message).with_detail(e)
    }

    /// Calls Teller for a granted enrollment, mapping its failures.
    async fn with_enrollment<T>(
        &self,
        who: &Identity,
        enrollment_id: &str,
        call: impl AsyncFnOnce(&TellerClient, &str) -> Result<T, TellerError>,
    ) -> Result<(Integration, T), ToolError> {
        let (integration, token) = self.enrollment(who, enrollment_id).await?;
        let client = self.client().await?;
        match call(client, &token).await {
            Ok(value) => Ok((integration, value)),
            Err(e) => Err(self.teller_failure(&integration, e).await),
        }
    }
}

fn valid_date(date: &Option<String>, name: &str) -> Result<(), ToolError> {
    let Some(d) = date else { return Ok(()) };
    let b = d.as_bytes();
    let ok = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(ToolError::deny(format!(
            "{name} must be a date like 2026-01-31."
        )))
    }
}

#[tool_router(router = tool_router)]
impl TellerServer {
    /// List the bank enrollments (bank logins) this agent may use, with their
    /// status. Reads only the integrations store: free, call it first.
    #[tool(
        annotations(title = "List bank enrollments", read_only_hint = true, open_world_hint = false),
        output_schema = schema_for_output::<EnrollmentsOut>()
    )]
    async fn teller_list_enrollments(&self, Extension(who): Extension<Identity>) -> CallToolResult {
        call::outcome(async {
            let store = self.store().await?;
            let granted = store
                .granted(&who, IntegrationType::Teller)
                .await
                .map_err(|e| ToolError::error("The integrations store is not answering; try again shortly.").with_detail(e))?;
            let enrollments: Vec<EnrollmentOut> = granted
                .iter()
                .map(|i| EnrollmentOut {
                    enrollment_id: i.external_id.clone().unwrap_or_default(),
                    institution: i.label.clone(),
                    linked_at: i.created_at.clone(),
                    status: i.status.as_str().into(),
                })
                .collect();
            let text = if enrollments.is_empty() {
                "No bank is connected for this agent. The user can connect one in Settings → Integrations and grant it to this agent.".to_string()
            } else {
                enrollments
                    .iter()
                    .map(|e| format!("{} ({}): linked {}, {}", e.institution, e.enrollment_id, &e.linked_at[..10.min(e.linked_at.len())], e.status))
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            reply(text, &EnrollmentsOut { enrollments })
        })
        .await
    }

    /// List the accounts of one enrollment: ids, names, type (depository or
    /// credit), currency and last four digits. Not billed per call.
    #[tool(
        annotations(title = "List bank accounts", read_only_hint = true, open_world_hint = true),
        output_schema = schema_for_output::<AccountsOut>()
    )]
    async fn teller_list_accounts(
        &self,
        Extension(who): Extension<Identity>,
        Parameters(args): Parameters<EnrollmentArgs>,
    ) -> CallToolResult {
        call::outcome(async {
            let (_, accounts) = self
                .with_enrollment(&who, &args.enrollment_id, async |c, token| {
                    c.accounts(token).await
                })
                .await?;
            let accounts: Vec<AccountOut> = accounts
                .into_iter()
                .map(|a| AccountOut {
                    account_id: a.id,
                    name: a.name,
                    kind: a.kind,
                    subtype: a.subtype,
                    currency: a.currency,
                    last_four: a.last_four,
                    institution: a.institution.name,
                    status: a.status,
                })
                .collect();
            let text = accounts
                .iter()
                .map(|a| {
                    format!(
                        "{} {} ({} {}, …{}, {}) {}",
                        a.account_id, a.name, a.kind, a.subtype, a.last_four, a.currency, a.status
                    )
                })
                .collect::<Vec<_>>()
                .join("\n");
            reply(
                text,
                &AccountsOut {
                    enrollment_id: args.enrollment_id.clone(),
                    accounts,
                },
            )
        })
        .await
    }

    /// Current available and ledger balance of one account, as exact decimal
    /// strings. Each call is billed on Teller's paid tiers: prefer
    /// teller_list_transactions for spending questions, and call this only
    /// when the user asks for a current balance.
    #[tool(
        annotations(title = "Get an account balance", read_only_hint = true, open_world_hint = true),
        output_schema = schema_for_output::<BalanceOut>()
    )]
    async fn teller_get_balance(
        &self,
        Extension(who): Extension<Identity>,
        Parameters(args): Parameters<AccountArgs>,
    ) -> CallToolResult {
        call::outcome(async {
            let (_, (account, balance)) = self
                .with_enrollment(&who, &args.enrollment_id, async |c, token| {
                    let account = c.account(token, &args.account_id).await?;
                    let balance = c.balance(token, &args.account_id).await?;
                    Ok((account, balance))
                })
                .await?;
            let out = BalanceOut {
                account_id: balance.account_id,
                available: balance.available,
                ledger: balance.ledger,
                currency: account.currency,
            };
            let shown = |v: &Option<String>| v.clone().unwrap_or_else(|| "n/a".into());
            let text = format!(
                "{} {}: available {} {}, ledger {} {}",
                out.account_id,
                account.name,
                shown(&out.available),
                out.currency,
                shown(&out.ledger),
                out.currency
            );
            reply(text, &out)
        })
        .await
    }

    /// Transactions of one account, newest first: date, amount (exact decimal
    /// string, negative is money out), status, description, category and
    /// counterparty. Page with next_from_id; filter with start_date/end_date.
    /// Covered by Teller's per-account pricing: the cheapest way to answer
    /// spending questions.
    #[tool(
        annotations(title = "List transactions", read_only_hint = true, open_world_hint = true),
        output_schema = schema_for_output::<TransactionsOut>()
    )]
    async fn teller_list_transactions(
        &self,
        Extension(who): Extension<Identity>,
        Parameters(args): Parameters<TransactionsArgs>,
    ) -> CallToolResult {
        call::outcome(async {
            valid_date(&args.start_date, "start_date")?;
            valid_date(&args.end_date, "end_date")?;
            let count = args.count.unwrap_or(50).clamp(1, 250) as u32;
            let query = TransactionQuery {
                count,
                from_id: args.from_id.clone(),
                start_date: args.start_date.clone(),
                end_date: args.end_date.clone(),
            };
            let (_, list) = self
                .with_enrollment(&who, &args.enrollment_id, async |c, token| {
                    c.transactions(token, &args.account_id, &query).await
                })
                .await?;
            let next_from_id = (list.len() as u32 == count)
                .then(|| list.last().map(|t| t.id.clone()))
                .flatten();
            let transactions: Vec<TransactionOut> = list
                .into_iter()
                .map(|t| TransactionOut {
                    id: t.id,
                    date: t.date,
                    amount: t.amount,
                    status: t.status,
                    description: t.description,
                    category: t.details.category,
                    counterparty: t.details.counterparty.and_then(|c| c.name),
                    running_balance: t.running_balance,
                })
                .collect();
            let mut text = transactions
                .iter()
                .map(|t| {
                    format!(
                        "{} {:>10} {:<7} {} [{}]",
                        t.date,
                        t.amount,
                        t.status,
                        t.description,
                        t.category.as_deref().unwrap_or("uncategorized")
                    )
                })
                .collect::<Vec<_>>()
                .join("\n");
            if transactions.is_empty() {
                text = "No transactions match.".into();
            }
            if let Some(next) = &next_from_id {
                text += &format!("\nMore: pass from_id=\"{next}\" for older transactions.");
            }
            reply(
                text,
                &TransactionsOut {
                    account_id: args.account_id.clone(),
                    transactions,
                    next_from_id,
                },
            )
        })
        .await
    }

    /// Full account number and routing numbers of one account. SENSITIVE and
    /// billed per call: call it only when the user explicitly needs these
    /// numbers (e.g. to set up a transfer), never to answer other questions.
    #[tool(
        annotations(title = "Get account and routing numbers", read_only_hint = true, open_world_hint = true),
        output_schema = schema_for_output::<DetailsOut>()
    )]
    async fn teller_get_account_details(
        &self,
        Extension(who): Extension<Identity>,
        Parameters(args): Parameters<AccountArgs>,
    ) -> CallToolResult {
        call::outcome(async {
            let (_, details) = self
                .with_enrollment(&who, &args.enrollment_id, async |c, token| {
                    c.details(token, &args.account_id).await
                })
                .await?;
            let out = DetailsOut {
                account_id: details.account_id,
                account_number: details.account_number,
                routing_numbers: RoutingOut {
                    ach: details.routing_numbers.ach,
                    wire: details.routing_numbers.wire,
                },
            };
            let text = format!(
                "{}: account number {}, ACH routing {}, wire routing {}",
                out.account_id,
                out.account_number,
                out.routing_numbers.ach.as_deref().unwrap_or("n/a"),
                out.routing_numbers.wire.as_deref().unwrap_or("n/a")
            );
            reply(text, &out)
        })
        .await
    }
}

#[tool_handler(
    router = self.tool_router,
    name = "teller",
    instructions = "Read-only bank data from the user's Teller enrollments. Start with teller_list_enrollments; prefer transactions over balances."
)]
impl ServerHandler for TellerServer {
    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let auditor = call::Auditor {
            store: self.store().await.ok(),
            identity_source: &self.inner.identity_source,
            server: SERVER,
        };
        call::audited(self, &self.tool_router, request, context, auditor).await
    }
}
