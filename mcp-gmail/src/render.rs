//! A Gmail message as the agent reads it: structured, and as text.

use providers::gmail::api::Message;

use crate::mail::read;
use crate::schema::{AttachmentOut, MessageOut};

/// The body characters returned: `requested`, 4000 by default, between 1
/// and 20000.
pub fn max_chars(requested: Option<i64>) -> usize {
    requested.unwrap_or(4_000).clamp(1, 20_000) as usize
}

/// One message as the agent reads it.
pub fn message_out(message: &Message, max_chars: usize) -> MessageOut {
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
pub fn message_text(m: &MessageOut) -> String {
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
pub fn is_text(mime_type: &str, filename: &str) -> bool {
    let mime = mime_type.to_ascii_lowercase();
    mime.starts_with("text/")
        || ["application/json", "application/xml", "application/csv"].contains(&mime.as_str())
        || [".txt", ".csv", ".json", ".md", ".xml", ".ics"]
            .iter()
            .any(|ext| filename.to_ascii_lowercase().ends_with(ext))
}
