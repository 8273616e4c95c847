//! The seeded mailbox: messages as MIME trees, rendered the way the Gmail API
//! serves them (`full`, `metadata`, `minimal`, `raw`), and `q` search.

use std::borrow::Cow;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use super::{
    ATTACHMENT_BIG, ATTACHMENT_CSV, ATTACHMENT_PDF, EMAIL, MSG_BIG_ATTACHMENT, MSG_HTML, MSG_LONG,
    MSG_LUNCH_REPLY, MSG_NESTED, MSG_PLAIN, MSG_UNPADDED, THREAD_LUNCH,
};

/// The labels as `labels.list` answers them: `(id, name, type)`, deliberately
/// not sorted by name.
const LABELS: &[(&str, &str, &str)] = &[
    ("Label_2", "Receipts", "user"),
    ("INBOX", "INBOX", "system"),
    ("SENT", "SENT", "system"),
    ("Label_1", "Finance", "user"),
    ("DRAFT", "DRAFT", "system"),
    ("UNREAD", "UNREAD", "system"),
    ("SPAM", "SPAM", "system"),
    ("TRASH", "TRASH", "system"),
    ("IMPORTANT", "IMPORTANT", "system"),
    ("STARRED", "STARRED", "system"),
];

/// The size of [`ATTACHMENT_BIG`]: 6 MiB.
const BIG_SIZE: usize = 6 * 1024 * 1024;

/// A MIME part of a seeded message.
pub(super) enum Part {
    /// A text body, served inline in `body.data`.
    Text {
        mime_type: &'static str,
        charset: &'static str,
        data: Vec<u8>,
    },
    /// An attachment, served through `attachments.get`.
    Attachment {
        mime_type: &'static str,
        filename: &'static str,
        id: &'static str,
        data: Data,
    },
    /// A `multipart/<subtype>` container.
    Multi {
        subtype: &'static str,
        parts: Vec<Part>,
    },
}

/// An attachment's bytes: stored, or generated on request (the big one).
pub(super) enum Data {
    Stored(Vec<u8>),
    /// A TIFF header then a repeating pattern, this many bytes in all.
    Generated(usize),
}

impl Data {
    pub(super) fn size(&self) -> usize {
        match self {
            Data::Stored(bytes) => bytes.len(),
            Data::Generated(size) => *size,
        }
    }

    pub(super) fn bytes(&self) -> Cow<'_, [u8]> {
        match self {
            Data::Stored(bytes) => Cow::Borrowed(bytes),
            Data::Generated(size) => {
                let mut bytes = b"II*\0".to_vec();
                bytes.extend((0..*size).map(|i| (i % 251) as u8));
                bytes.truncate(*size);
                Cow::Owned(bytes)
            }
        }
    }
}

impl Part {
    fn mime_type(&self) -> String {
        match self {
            Part::Text { mime_type, .. } | Part::Attachment { mime_type, .. } => {
                (*mime_type).into()
            }
            Part::Multi { subtype, .. } => format!("multipart/{subtype}"),
        }
    }

    /// The part's own MIME headers (`boundary` is used by containers only).
    fn mime_headers(&self, boundary: &str) -> Vec<(&'static str, String)> {
        match self {
            Part::Text {
                mime_type,
                charset,
                data,
            } => {
                let encoding = if data.is_ascii() { "7bit" } else { "base64" };
                vec![
                    (
                        "Content-Type",
                        format!("{mime_type}; charset=\"{charset}\""),
                    ),
                    ("Content-Transfer-Encoding", encoding.into()),
                ]
            }
            Part::Attachment {
                mime_type,
                filename,
                ..
            } => vec![
                ("Content-Type", format!("{mime_type}; name=\"{filename}\"")),
                (
                    "Content-Disposition",
                    format!("attachment; filename=\"{filename}\""),
                ),
                ("Content-Transfer-Encoding", "base64".into()),
            ],
            Part::Multi { subtype, .. } => vec![(
                "Content-Type",
                format!("multipart/{subtype}; boundary=\"{boundary}\""),
            )],
        }
    }

    /// This part and every part below it, depth first.
    fn walk<'a>(&'a self, out: &mut Vec<&'a Part>) {
        out.push(self);
        if let Part::Multi { parts, .. } = self {
            parts.iter().for_each(|p| p.walk(out));
        }
    }
}

/// How `messages.get` and `threads.get` render a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    Full,
    Metadata,
    Minimal,
    Raw,
}

impl Format {
    /// The `format` parameter's value (absent means `full`).
    pub(super) fn parse(value: Option<&str>) -> Option<Self> {
        match value.unwrap_or("full") {
            "full" => Some(Format::Full),
            "metadata" => Some(Format::Metadata),
            "minimal" => Some(Format::Minimal),
            "raw" => Some(Format::Raw),
            _ => None,
        }
    }
}

/// A seeded message.
pub(super) struct Message {
    pub(super) id: &'static str,
    pub(super) thread_id: &'static str,
    labels: &'static [&'static str],
    internal_date: i64,
    pub(super) history_id: u64,
    from: &'static str,
    to: &'static str,
    /// Decoded, whatever [`Self::quirky`] says.
    subject: &'static str,
    date: &'static str,
    message_id: &'static str,
    in_reply_to: Option<&'static str>,
    snippet: &'static str,
    body: Part,
    /// Served the rough way: Subject still an RFC 2047 encoded-word, body
    /// data base64url without padding.
    quirky: bool,
}

/// A message with the defaults of the seed: its own thread, to [`EMAIL`], in
/// the inbox.
fn mail(
    id: &'static str,
    from: &'static str,
    subject: &'static str,
    (date, internal_date): (&'static str, i64),
    body: Part,
) -> Message {
    Message {
        id,
        thread_id: id,
        labels: &["INBOX"],
        internal_date,
        history_id: 0,
        from,
        to: EMAIL,
        subject,
        date,
        message_id: "",
        in_reply_to: None,
        snippet: "",
        body,
        quirky: false,
    }
}

fn text(mime_type: &'static str, body: &str) -> Part {
    Part::Text {
        mime_type,
        charset: "UTF-8",
        data: body.replace('\n', "\r\n").into_bytes(),
    }
}

fn attachment(
    mime_type: &'static str,
    filename: &'static str,
    id: &'static str,
    data: Data,
) -> Part {
    Part::Attachment {
        mime_type,
        filename,
        id,
        data,
    }
}

fn latin1(text: &str) -> Vec<u8> {
    text.chars()
        .map(|c| u8::try_from(u32::from(c)).expect("a Latin-1 character"))
        .collect()
}

const HTML_STATEMENT: &str = r#"<html><head><style>p { color: #333333; } .footer { font-size: 10px; }</style></head>
<body><p>Dear customer,<br>your statement for March is ready.</p>
<p><a href="https://bank.example/s/1">View statement</a></p>
<p class="footer">Terms &amp; conditions apply.</p></body></html>
"#;

const CSV: &str = "date,description,amount\n2024-03-01,Hotel Berlin,189.00\n2024-03-02,Taxi,23.50\n2024-03-03,Dinner with client,96.40\n";

const PDF: &[u8] = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n2 0 obj << /Type /Pages /Kids [3 0 R] /Count 1 >> endobj\n3 0 obj << /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >> endobj\n4 0 obj << /Length 47 >> stream\nBT /F1 12 Tf 72 720 Td (Rechnung 2024-03) Tj ET\nendstream endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n";

/// About 30,000 characters of numbered lines.
fn long_report() -> String {
    let mut report = String::from("Quarterly report, Q1 2024\n\n");
    for i in 1.. {
        if report.len() >= 30_000 {
            break;
        }
        report += &format!(
            "Line {i:04}: revenue {} EUR, costs {} EUR, margin 500 EUR.\n",
            1000 + i,
            500 + i
        );
    }
    report
}

/// The seeded messages, oldest first.
fn seed() -> Vec<Message> {
    let nested = Part::Multi {
        subtype: "mixed",
        parts: vec![
            Part::Multi {
                subtype: "alternative",
                parts: vec![
                    Part::Text {
                        mime_type: "text/plain",
                        charset: "ISO-8859-1",
                        data: latin1(
                            "Résumé attached, see the façade plan.\r\nThe invoice and the expense list are attached.\r\n",
                        ),
                    },
                    text(
                        "text/html",
                        "<div>Résumé attached, see the façade plan.</div><div>The invoice and the expense list are attached.</div>\n",
                    ),
                ],
            },
            attachment(
                "text/csv",
                "expenses.csv",
                ATTACHMENT_CSV,
                Data::Stored(CSV.replace('\n', "\r\n").into_bytes()),
            ),
            attachment(
                "application/pdf",
                "invoice.pdf",
                ATTACHMENT_PDF,
                Data::Stored(PDF.to_vec()),
            ),
        ],
    };
    let scan = Part::Multi {
        subtype: "mixed",
        parts: vec![
            text(
                "text/plain",
                "Scanned document attached (scan.tiff, 6 MiB).\n",
            ),
            attachment(
                "image/tiff",
                "scan.tiff",
                ATTACHMENT_BIG,
                Data::Generated(BIG_SIZE),
            ),
        ],
    };
    vec![
        Message {
            labels: &["INBOX", "UNREAD"],
            message_id: "<lunch-1@example.com>",
            snippet: "Hi! Are you free for lunch on Friday? I was thinking Café Central at 12:30? Ana",
            ..mail(
                MSG_PLAIN,
                "Ana Pérez <ana@example.com>",
                "Lunch on Friday?",
                ("Mon, 11 Mar 2024 09:15:00 +0000", 1_710_148_500_000),
                text(
                    "text/plain",
                    "Hi!\n\nAre you free for lunch on Friday? I was thinking Café Central at 12:30?\n\nAna\n",
                ),
            )
        },
        Message {
            thread_id: THREAD_LUNCH,
            labels: &["SENT"],
            to: "Ana Pérez <ana@example.com>",
            message_id: "<lunch-2@example.com>",
            in_reply_to: Some("<lunch-1@example.com>"),
            snippet: "Sounds great, see you there! On Mon, 11 Mar 2024 at 09:15, Ana Pérez &lt;ana@example.com&gt; wrote: &gt; Hi!",
            ..mail(
                MSG_LUNCH_REPLY,
                EMAIL,
                "Re: Lunch on Friday?",
                ("Mon, 11 Mar 2024 10:02:00 +0000", 1_710_151_320_000),
                text(
                    "text/plain",
                    "Sounds great, see you there!\n\nOn Mon, 11 Mar 2024 at 09:15, Ana Pérez <ana@example.com> wrote:\n> Hi!\n>\n> Are you free for lunch on Friday? I was thinking Café Central at 12:30?\n",
                ),
            )
        },
        Message {
            labels: &["INBOX", "Label_1"],
            message_id: "<stmt-2024-03@bank.example>",
            snippet: "Dear customer, your statement for March is ready. View statement Terms &amp; conditions apply.",
            ..mail(
                MSG_HTML,
                "Bank of Example <alerts@bank.example>",
                "Your statement is ready",
                ("Tue, 12 Mar 2024 07:30:00 +0000", 1_710_228_600_000),
                text("text/html", HTML_STATEMENT),
            )
        },
        Message {
            labels: &["INBOX", "Label_2"],
            message_id: "<rechnung-0342@mueller.example>",
            snippet: "Résumé attached, see the façade plan. The invoice and the expense list are attached.",
            ..mail(
                MSG_NESTED,
                "Buchhaltung Müller GmbH <rechnung@mueller.example>",
                "Rechnung für März",
                ("Wed, 13 Mar 2024 14:45:00 +0100", 1_710_337_500_000),
                nested,
            )
        },
        Message {
            labels: &["INBOX", "UNREAD"],
            message_id: "<ueberweisung-77@sparkasse.example>",
            snippet: "Ihre Überweisung über 250,00 EUR an Stadtwerke München wurde bestätigt.",
            quirky: true,
            ..mail(
                MSG_UNPADDED,
                "Sparkasse <noreply@sparkasse.example>",
                "Überweisung bestätigt",
                ("Thu, 14 Mar 2024 08:00:00 +0000", 1_710_403_200_000),
                text(
                    "text/plain",
                    "Ihre Überweisung über 250,00 EUR an Stadtwerke München wurde bestätigt.\n",
                ),
            )
        },
        Message {
            labels: &["INBOX", "IMPORTANT"],
            message_id: "<q1-report@example.com>",
            snippet: "Quarterly report, Q1 2024 Line 0001: revenue 1001 EUR, costs 501 EUR, margin 500 EUR.",
            ..mail(
                MSG_LONG,
                "Controlling <controlling@example.com>",
                "Quarterly report",
                ("Fri, 15 Mar 2024 16:20:00 +0000", 1_710_519_600_000),
                text("text/plain", &long_report()),
            )
        },
        Message {
            labels: &["INBOX", "STARRED"],
            message_id: "<scan-0316@office.example>",
            snippet: "Scanned document attached (scan.tiff, 6 MiB).",
            ..mail(
                MSG_BIG_ATTACHMENT,
                "Office Scanner <scanner@office.example>",
                "Scan from the office printer",
                ("Sat, 16 Mar 2024 11:11:00 +0000", 1_710_587_460_000),
                scan,
            )
        },
    ]
}

/// The id of the label called `name` (by id or name, case-insensitively).
fn label_id(name: &str) -> Option<&'static str> {
    let name = if name.eq_ignore_ascii_case("drafts") {
        "DRAFT"
    } else {
        name
    };
    LABELS
        .iter()
        .find(|(id, label, _)| id.eq_ignore_ascii_case(name) || label.eq_ignore_ascii_case(name))
        .map(|(id, _, _)| *id)
}

/// `=?UTF-8?B?...?=`
fn encoded_word(text: &str) -> String {
    format!("=?UTF-8?B?{}?=", STANDARD.encode(text))
}

/// A header value as it goes over the wire: non-ASCII text as encoded-words
/// (only the display name of an address).
fn encode_header(value: &str) -> String {
    if value.is_ascii() {
        return value.into();
    }
    match value.rsplit_once(" <") {
        Some((name, address)) if address.ends_with('>') => {
            format!("{} <{address}", encoded_word(name))
        }
        _ => encoded_word(value),
    }
}

fn headers_json(headers: &[(&str, String)]) -> Value {
    headers
        .iter()
        .map(|(name, value)| json!({"name": name, "value": value}))
        .collect()
}

fn child_id(parent: &str, index: usize) -> String {
    if parent.is_empty() {
        index.to_string()
    } else {
        format!("{parent}.{index}")
    }
}

/// Base64 in 76-character lines, as in a MIME body.
fn base64_lines(data: &[u8], out: &mut Vec<u8>) {
    let encoded = STANDARD.encode(data);
    for line in encoded.as_bytes().chunks(76) {
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
}

fn decode_text(data: &[u8], charset: &str) -> String {
    if charset.eq_ignore_ascii_case("ISO-8859-1") {
        data.iter().map(|&b| char::from(b)).collect()
    } else {
        String::from_utf8_lossy(data).into_owned()
    }
}

/// A search term of `q`, its value lowercased.
#[derive(Debug, PartialEq, Eq)]
enum Term {
    Word(String),
    From(String),
    To(String),
    Subject(String),
    Label(String),
    NotLabel(String),
    Has(String),
}

/// Splits `q` on whitespace outside double quotes (which are dropped).
fn tokens(q: &str) -> Vec<String> {
    let (mut tokens, mut current, mut quoted) = (Vec::new(), String::new(), false);
    for c in q.chars() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !current.is_empty() {
                    tokens.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        tokens.push(current);
    }
    tokens
}

fn terms(q: &str) -> Vec<Term> {
    tokens(&q.to_lowercase())
        .into_iter()
        .map(|token| {
            let Some((operator, value)) = token.split_once(':') else {
                return Term::Word(token);
            };
            let value = value.to_string();
            match operator {
                "from" => Term::From(value),
                "to" => Term::To(value),
                "subject" => Term::Subject(value),
                "label" | "in" => Term::Label(value),
                "is" if value == "read" => Term::NotLabel("unread".into()),
                "is" => Term::Label(value),
                "has" => Term::Has(value),
                _ => Term::Word(token),
            }
        })
        .collect()
}

impl Message {
    /// The message's own headers, as `payload.headers` starts.
    fn message_headers(&self) -> Vec<(&'static str, String)> {
        let subject = if self.quirky {
            encoded_word(self.subject)
        } else {
            self.subject.into()
        };
        let mut headers = vec![
            ("MIME-Version", "1.0".to_string()),
            ("Date", self.date.into()),
            ("Message-ID", self.message_id.into()),
        ];
        if let Some(parent) = self.in_reply_to {
            headers.push(("In-Reply-To", parent.into()));
            headers.push(("References", parent.into()));
        }
        headers.extend([
            ("Subject", subject),
            ("From", self.from.into()),
            ("To", self.to.into()),
        ]);
        headers
    }

    fn boundary(&self, part_id: &str) -> String {
        format!("000000000000{}b{part_id}", self.id)
    }

    fn parts(&self) -> Vec<&Part> {
        let mut parts = Vec::new();
        self.body.walk(&mut parts);
        parts
    }

    /// The message as `messages.get` answers it in `format`, with only the
    /// `wanted` headers in `metadata` format (all when empty).
    pub(super) fn json(&self, format: Format, wanted: &[String]) -> Value {
        let mut message = json!({
            "id": self.id,
            "threadId": self.thread_id,
            "labelIds": self.labels,
            "snippet": self.snippet,
            "historyId": self.history_id.to_string(),
            "internalDate": self.internal_date.to_string(),
            "sizeEstimate": self.size_estimate(),
        });
        match format {
            Format::Full => {
                let mut headers = self.message_headers();
                headers.extend(self.body.mime_headers(&self.boundary("")));
                message["payload"] = self.part_json(&self.body, "", &headers);
            }
            Format::Metadata => {
                let mut headers = self.message_headers();
                headers.extend(self.body.mime_headers(&self.boundary("")));
                headers.retain(|(name, _)| {
                    wanted.is_empty() || wanted.iter().any(|w| w.eq_ignore_ascii_case(name))
                });
                message["payload"] = json!({
                    "partId": "", "mimeType": self.body.mime_type(), "filename": "",
                    "headers": headers_json(&headers),
                });
            }
            Format::Minimal => {}
            Format::Raw => message["raw"] = URL_SAFE.encode(self.raw()).into(),
        }
        message
    }

    fn part_json(&self, part: &Part, part_id: &str, headers: &[(&str, String)]) -> Value {
        let filename = match part {
            Part::Attachment { filename, .. } => filename,
            _ => "",
        };
        let mut json = json!({
            "partId": part_id, "mimeType": part.mime_type(), "filename": filename,
            "headers": headers_json(headers),
        });
        json["body"] = match part {
            Part::Text { data, .. } => {
                let encoded = if self.quirky {
                    URL_SAFE_NO_PAD.encode(data)
                } else {
                    URL_SAFE.encode(data)
                };
                json!({"size": data.len(), "data": encoded})
            }
            Part::Attachment { id, data, .. } => json!({"attachmentId": id, "size": data.size()}),
            Part::Multi { parts, .. } => {
                json["parts"] = parts
                    .iter()
                    .enumerate()
                    .map(|(i, child)| {
                        let id = child_id(part_id, i);
                        self.part_json(child, &id, &child.mime_headers(&self.boundary(&id)))
                    })
                    .collect();
                json!({"size": 0})
            }
        };
        json
    }

    /// A plausible RFC 2822 rendering of the message.
    pub(super) fn raw(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, value) in self.message_headers() {
            out.extend(format!("{name}: {}\r\n", encode_header(&value)).into_bytes());
        }
        self.render(&self.body, "", &mut out);
        out
    }

    /// Writes `part`'s MIME headers, a blank line and its content.
    fn render(&self, part: &Part, part_id: &str, out: &mut Vec<u8>) {
        let boundary = self.boundary(part_id);
        for (name, value) in part.mime_headers(&boundary) {
            out.extend(format!("{name}: {value}\r\n").into_bytes());
        }
        out.extend_from_slice(b"\r\n");
        match part {
            Part::Text { data, .. } if data.is_ascii() => out.extend_from_slice(data),
            Part::Text { data, .. } => base64_lines(data, out),
            Part::Attachment { data, .. } => base64_lines(&data.bytes(), out),
            Part::Multi { parts, .. } => {
                for (i, child) in parts.iter().enumerate() {
                    out.extend(format!("--{boundary}\r\n").into_bytes());
                    self.render(child, &child_id(part_id, i), out);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend(format!("--{boundary}--\r\n").into_bytes());
            }
        }
    }

    /// Roughly the size of [`Self::raw`], without rendering it.
    fn size_estimate(&self) -> usize {
        let content: usize = self
            .parts()
            .iter()
            .map(|part| match part {
                Part::Text { data, .. } => data.len() * 4 / 3,
                Part::Attachment { data, .. } => data.size() * 4 / 3,
                Part::Multi { .. } => 0,
            })
            .sum();
        content + 600
    }

    /// The bytes of attachment `id`, if this message has it.
    pub(super) fn attachment(&self, id: &str) -> Option<&Data> {
        self.parts().into_iter().find_map(|part| match part {
            Part::Attachment { id: a, data, .. } if *a == id => Some(data),
            _ => None,
        })
    }

    /// The decoded text of every text part.
    fn text(&self) -> String {
        self.parts()
            .iter()
            .filter_map(|part| match part {
                Part::Text { data, charset, .. } => Some(decode_text(data, charset)),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn has_label(&self, name: &str) -> bool {
        label_id(name).is_some_and(|id| self.labels.contains(&id))
    }

    fn matches(&self, term: &Term) -> bool {
        let has = |text: &str, value: &str| text.to_lowercase().contains(value);
        match term {
            Term::Word(word) => {
                [self.subject, self.from, self.snippet]
                    .iter()
                    .any(|text| has(text, word))
                    || has(&self.text(), word)
            }
            Term::From(value) => has(self.from, value),
            Term::To(value) => has(self.to, value),
            Term::Subject(value) => has(self.subject, value),
            Term::Label(name) => self.has_label(name),
            Term::NotLabel(name) => !self.has_label(name),
            Term::Has(what) => {
                what == "attachment"
                    && self
                        .parts()
                        .iter()
                        .any(|part| matches!(part, Part::Attachment { .. }))
            }
        }
    }
}

/// The seeded messages, oldest first.
pub(super) struct Mailbox {
    messages: Vec<Message>,
}

impl Mailbox {
    /// The seed and, after it, one HTML-only message per `(id, html)`.
    pub(super) fn seed(extra: Vec<(&'static str, String)>) -> Self {
        let mut messages = seed();
        messages.extend(extra.into_iter().enumerate().map(|(i, (id, html))| {
            mail(
                id,
                "Newsletter <news@example.com>",
                "An HTML mail",
                (
                    "Sun, 17 Mar 2024 12:00:00 +0000",
                    1_710_676_800_000 + i as i64,
                ),
                text("text/html", &html),
            )
        }));
        for (i, message) in messages.iter_mut().enumerate() {
            message.history_id = 104_200 + 17 * i as u64;
        }
        Self { messages }
    }

    pub(super) fn message(&self, id: &str) -> Option<&Message> {
        self.messages.iter().find(|m| m.id == id)
    }

    /// The messages of thread `id`, oldest first (empty if there is none).
    pub(super) fn thread(&self, id: &str) -> Vec<&Message> {
        self.messages.iter().filter(|m| m.thread_id == id).collect()
    }

    /// The messages matching `q` (terms ANDed) and carrying every label of
    /// `label_ids`, newest first.
    pub(super) fn search(&self, q: &str, label_ids: &[String]) -> Vec<&Message> {
        let terms = terms(q);
        let mut found: Vec<&Message> = self
            .messages
            .iter()
            .filter(|m| terms.iter().all(|t| m.matches(t)))
            .filter(|m| label_ids.iter().all(|l| m.has_label(l)))
            .collect();
        found.sort_by_key(|m| std::cmp::Reverse(m.internal_date));
        found
    }

    /// `labels.list`.
    pub(super) fn labels(&self) -> Value {
        let labels: Vec<Value> = LABELS
            .iter()
            .map(|(id, name, kind)| match *kind {
                "user" => json!({
                    "id": id, "name": name, "type": kind,
                    "messageListVisibility": "show", "labelListVisibility": "labelShow",
                }),
                _ => json!({"id": id, "name": name, "type": kind}),
            })
            .collect();
        json!({"labels": labels})
    }

    /// `getProfile`.
    pub(super) fn profile(&self) -> Value {
        let mut threads: Vec<&str> = self.messages.iter().map(|m| m.thread_id).collect();
        threads.sort_unstable();
        threads.dedup();
        let history = self.messages.iter().map(|m| m.history_id).max();
        json!({
            "emailAddress": EMAIL,
            "messagesTotal": self.messages.len(),
            "threadsTotal": threads.len(),
            "historyId": history.unwrap_or_default().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(mailbox: &Mailbox, q: &str) -> Vec<&'static str> {
        mailbox.search(q, &[]).iter().map(|m| m.id).collect()
    }

    fn body_data(part: &Value) -> Vec<u8> {
        let data = part["body"]["data"].as_str().unwrap();
        URL_SAFE_NO_PAD.decode(data.trim_end_matches('=')).unwrap()
    }

    #[test]
    fn seeded_ids_look_like_gmail_ids() {
        for message in &Mailbox::seed(Vec::new()).messages {
            assert_eq!(message.id.len(), 16);
            assert!(message.id.chars().all(|c| c.is_ascii_hexdigit()));
        }
    }

    #[test]
    fn query_terms_are_anded_and_case_insensitive() {
        let mailbox = Mailbox::seed(Vec::new());
        assert_eq!(ids(&mailbox, "from:ana"), [MSG_PLAIN]);
        assert_eq!(ids(&mailbox, "to:ana"), [MSG_LUNCH_REPLY]);
        assert_eq!(ids(&mailbox, "CAFÉ"), [MSG_LUNCH_REPLY, MSG_PLAIN]);
        assert_eq!(ids(&mailbox, "subject:lunch is:unread"), [MSG_PLAIN]);
        assert_eq!(
            ids(&mailbox, "subject:\"lunch on\" in:sent"),
            [MSG_LUNCH_REPLY]
        );
        assert_eq!(ids(&mailbox, "label:finance"), [MSG_HTML]);
        assert_eq!(ids(&mailbox, "label:Label_2"), [MSG_NESTED]);
        assert_eq!(
            ids(&mailbox, "has:attachment"),
            [MSG_BIG_ATTACHMENT, MSG_NESTED]
        );
        assert_eq!(
            ids(&mailbox, "façade"),
            [MSG_NESTED],
            "Latin-1 text is decoded"
        );
        assert_eq!(ids(&mailbox, "überweisung"), [MSG_UNPADDED]);
        assert_eq!(ids(&mailbox, "statement").len(), 1);
        assert_eq!(ids(&mailbox, "in:inbox").len(), 6);
        assert_eq!(ids(&mailbox, "in:inbox is:read").len(), 4);
        assert_eq!(ids(&mailbox, "").len(), 7);
        assert!(ids(&mailbox, "label:nonexistent").is_empty());
        assert!(ids(&mailbox, "lunch from:bank").is_empty());
    }

    #[test]
    fn the_quirky_message_has_unpadded_data_and_an_encoded_subject() {
        let mailbox = Mailbox::seed(Vec::new());
        let message = mailbox
            .message(MSG_UNPADDED)
            .unwrap()
            .json(Format::Full, &[]);
        let data = message["payload"]["body"]["data"].as_str().unwrap();
        assert!(!data.ends_with('='));
        let decoded = URL_SAFE_NO_PAD.decode(data).unwrap();
        assert_ne!(decoded.len() % 3, 0, "padding would be needed");
        assert!(URL_SAFE.decode(data).is_err());
        assert!(String::from_utf8(decoded).unwrap().contains("Überweisung"));
        let subject = message["payload"]["headers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["name"] == "Subject")
            .unwrap()["value"]
            .as_str()
            .unwrap();
        let b64 = subject
            .strip_prefix("=?UTF-8?B?")
            .unwrap()
            .strip_suffix("?=")
            .unwrap();
        assert_eq!(
            STANDARD.decode(b64).unwrap(),
            "Überweisung bestätigt".as_bytes()
        );
        let padded = mailbox.message(MSG_PLAIN).unwrap().json(Format::Full, &[]);
        let data = padded["payload"]["body"]["data"].as_str().unwrap();
        assert!(URL_SAFE.decode(data).is_ok());
    }

    #[test]
    fn the_nested_message_has_the_full_tree() {
        let mailbox = Mailbox::seed(Vec::new());
        let message = mailbox.message(MSG_NESTED).unwrap().json(Format::Full, &[]);
        let payload = &message["payload"];
        assert_eq!(payload["mimeType"], "multipart/mixed");
        let alternative = &payload["parts"][0];
        assert_eq!(alternative["mimeType"], "multipart/alternative");
        let plain = &alternative["parts"][0];
        assert_eq!(plain["partId"], "0.0");
        assert_eq!(
            body_data(plain),
            latin1(
                "Résumé attached, see the façade plan.\r\nThe invoice and the expense list are attached.\r\n"
            )
        );
        assert_eq!(alternative["parts"][1]["mimeType"], "text/html");
        let csv = &payload["parts"][1];
        assert_eq!(csv["filename"], "expenses.csv");
        assert_eq!(csv["body"]["attachmentId"], ATTACHMENT_CSV);
        assert!(csv["body"]["data"].is_null());
        assert_eq!(payload["parts"][2]["partId"], "2");
        let pdf = mailbox
            .message(MSG_NESTED)
            .unwrap()
            .attachment(ATTACHMENT_PDF)
            .unwrap();
        assert!(pdf.bytes().starts_with(b"%PDF-1.4"));
    }

    #[test]
    fn metadata_format_filters_headers_and_drops_bodies() {
        let mailbox = Mailbox::seed(Vec::new());
        let wanted = ["subject".to_string(), "From".to_string()];
        let message = mailbox
            .message(MSG_NESTED)
            .unwrap()
            .json(Format::Metadata, &wanted);
        let names: Vec<&str> = message["payload"]["headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["Subject", "From"]);
        assert!(message["payload"]["parts"].is_null() && message["payload"]["body"].is_null());
        assert_eq!(
            message["historyId"]
                .as_str()
                .unwrap()
                .parse::<u64>()
                .unwrap(),
            104_251
        );
    }

    #[test]
    fn raw_is_a_plausible_rfc_2822_message() {
        let mailbox = Mailbox::seed(Vec::new());
        let raw = String::from_utf8(mailbox.message(MSG_NESTED).unwrap().raw()).unwrap();
        assert!(raw.contains(&format!(
            "Subject: {}\r\n",
            encoded_word("Rechnung für März")
        )));
        assert!(raw.contains(&format!(
            "From: {} <rechnung@mueller.example>\r\n",
            encoded_word("Buchhaltung Müller GmbH")
        )));
        assert!(raw.contains("Content-Disposition: attachment; filename=\"invoice.pdf\""));
        assert!(raw.ends_with(&format!(
            "--{}--\r\n",
            mailbox.message(MSG_NESTED).unwrap().boundary("")
        )));
    }

    #[test]
    fn the_long_and_big_messages_have_their_sizes() {
        let mailbox = Mailbox::seed(Vec::new());
        let long = mailbox.message(MSG_LONG).unwrap().text();
        assert!((30_000..31_000).contains(&long.chars().count()));
        let big = mailbox
            .message(MSG_BIG_ATTACHMENT)
            .unwrap()
            .attachment(ATTACHMENT_BIG)
            .unwrap();
        assert_eq!(big.bytes().len(), BIG_SIZE);
        assert!(big.bytes().starts_with(b"II*\0"));
    }
}
