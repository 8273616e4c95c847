//! The arguments and results of the gmail tools, as their JSON schemas show
//! them to the agent.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Arguments of gmail_search.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchArgs {
    /// Gmail search syntax, e.g. "from:ana@example.com newer_than:7d has:attachment".
    pub query: String,
    /// How many messages; default 10, at most 50.
    pub max_results: Option<i64>,
    /// Continue a previous search: pass its next_page_token.
    pub page_token: Option<String>,
}

/// Arguments of gmail_read_message.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadMessageArgs {
    /// The message, as gmail_search lists it.
    pub message_id: String,
    /// The most characters of body to return; default 4000, at most 20000.
    pub max_chars: Option<i64>,
}

/// Arguments of gmail_read_thread.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadThreadArgs {
    /// The thread, as gmail_search lists it.
    pub thread_id: String,
    /// The most characters of body per message; default 4000, at most 20000.
    pub max_chars: Option<i64>,
}

/// Arguments of gmail_get_attachment.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AttachmentArgs {
    /// The message holding the attachment.
    pub message_id: String,
    /// The attachment, as gmail_read_message lists it.
    pub attachment_id: String,
}

/// Arguments of gmail_send_message and gmail_create_draft.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ComposeArgs {
    /// Recipients, comma-separated: "ana@example.com, Bo Li <bo@example.com>".
    pub to: String,
    pub subject: String,
    /// Plain text body.
    pub body: String,
    /// Carbon-copy recipients, comma-separated.
    pub cc: Option<String>,
    /// Blind carbon-copy recipients, comma-separated.
    pub bcc: Option<String>,
    /// Reply within this thread (its latest message is the one answered
    /// unless in_reply_to says otherwise).
    pub thread_id: Option<String>,
    /// The message answered: a message_id from gmail_search, or an RFC
    /// Message-ID like "<abc@example.com>" (its angle brackets may be left out).
    pub in_reply_to: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct SearchOut {
    pub messages: Vec<MessageSummary>,
    /// Gmail's estimate of all matches.
    pub result_size_estimate: u32,
    /// Pass as page_token for the next page; absent when there is none.
    pub next_page_token: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct MessageSummary {
    pub message_id: String,
    pub thread_id: String,
    pub from: String,
    pub subject: String,
    pub date: String,
    pub snippet: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct MessageOut {
    pub message_id: String,
    pub thread_id: String,
    pub subject: String,
    pub from: String,
    pub to: String,
    pub cc: Option<String>,
    pub date: String,
    /// Gmail label ids (INBOX, UNREAD, Label_1, ...); see gmail_list_labels.
    pub labels: Vec<String>,
    /// The body as text (HTML converted when there is no plain part).
    pub body: String,
    /// The body was cut at max_chars; a marker at its end says so.
    pub truncated: bool,
    pub attachments: Vec<AttachmentOut>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct AttachmentOut {
    pub attachment_id: String,
    pub filename: String,
    pub mime_type: String,
    /// Bytes.
    pub size: u64,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ThreadOut {
    pub thread_id: String,
    /// Oldest first.
    pub messages: Vec<MessageOut>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct LabelsOut {
    pub labels: Vec<LabelOut>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct LabelOut {
    pub name: String,
    pub id: String,
    /// `system` or `user`.
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct AttachmentContentOut {
    pub message_id: String,
    pub attachment_id: String,
    pub filename: String,
    pub mime_type: String,
    pub size: u64,
    /// The content of a text attachment; absent for others, which come as an
    /// embedded resource.
    pub text: Option<String>,
    pub truncated: bool,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct SentOut {
    pub message_id: String,
    pub thread_id: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct DraftOut {
    pub draft_id: String,
    pub message_id: String,
    pub thread_id: String,
}
