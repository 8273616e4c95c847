//! Reading Gmail `format=full` payload trees: decoded headers, one readable body
//! (bounded in size), and the attachments an agent may fetch separately.

use providers::gmail::api::MessagePart;
use serde::Serialize;

use super::{charset, words};

pub use super::html::html_to_text;

/// The most characters of a body one call may ask for; the truncation marker names it.
pub const MAX_BODY_CHARS: usize = 20_000;

/// The readable text of a message, possibly cut short.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Body {
    /// The text, ending with a marker line when `truncated`.
    pub text: String,
    /// Whether `text` holds only the first `max_chars` characters.
    pub truncated: bool,
    /// Characters in the whole text, before truncation.
    pub total_chars: usize,
}

/// A part to fetch with `messages.attachments.get`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attachment {
    /// Empty when Gmail inlined the data instead of storing it separately.
    pub attachment_id: String,
    /// Empty when the part has none.
    pub filename: String,
    /// `application/octet-stream` when Gmail gives none.
    pub mime_type: String,
    /// Bytes, as Gmail reports them.
    pub size: u64,
    /// The part's `Content-Type` header (its `charset` decodes a text attachment).
    pub content_type: Option<String>,
}

/// The value of header `name` (case-insensitive) on this part, unfolded and with
/// RFC 2047 encoded-words decoded.
pub fn header(part: &MessagePart, name: &str) -> Option<String> {
    let raw = raw_header(part, name)?;
    let unfolded: String = raw.split(['\r', '\n']).collect();
    Some(words::decode(unfolded.trim()))
}

/// The readable body: the first inline `text/plain` part, else the first inline
/// `text/html` part flattened to text, else empty; cut to `max_chars` characters.
pub fn body(part: &MessagePart, max_chars: usize) -> Body {
    let text = find_text(part, "text/plain")
        .map(part_text)
        .or_else(|| find_text(part, "text/html").map(|html| html_to_text(&part_text(html))))
        .unwrap_or_default();
    truncate(&text, max_chars)
}

/// Every part with a filename or an attachment id, depth-first, in order.
pub fn attachments(part: &MessagePart) -> Vec<Attachment> {
    let mut found = Vec::new();
    collect_attachments(part, &mut found);
    found
}

/// `bytes` as text in the charset named by a `Content-Type` header's `charset`
/// parameter; UTF-8 (lossy) when there is none or it is unknown.
pub fn decode_text(bytes: &[u8], content_type: Option<&str>) -> String {
    let label = content_type.and_then(|value| charset::parameter(value, "charset"));
    charset::decode(bytes, label.as_deref())
}

/// `text` cut to its first `max_chars` characters, with a marker line saying so.
pub fn truncate(text: &str, max_chars: usize) -> Body {
    let total_chars = text.chars().count();
    match text.char_indices().nth(max_chars) {
        None => Body {
            text: text.to_owned(),
            truncated: false,
            total_chars,
        },
        Some((cut, _)) => Body {
            text: format!("{}{}", &text[..cut], marker(max_chars, total_chars)),
            truncated: true,
            total_chars,
        },
    }
}

fn marker(shown: usize, total: usize) -> String {
    let advice = if shown < MAX_BODY_CHARS {
        format!("call again with a larger max_chars (at most {MAX_BODY_CHARS})")
    } else {
        format!("{MAX_BODY_CHARS} is the most one call shows")
    };
    format!("\n\n[… truncated: showed {shown} of {total} characters; {advice}]")
}

fn raw_header<'a>(part: &'a MessagePart, name: &str) -> Option<&'a str> {
    part.headers
        .as_deref()?
        .iter()
        .find(|header| {
            header
                .name
                .as_deref()
                .is_some_and(|n| n.trim().eq_ignore_ascii_case(name))
        })?
        .value
        .as_deref()
}

/// The first part of type `mime`, depth-first, that is a body rather than an attachment.
fn find_text<'a>(part: &'a MessagePart, mime: &str) -> Option<&'a MessagePart> {
    if is_inline_text(part, mime) {
        return Some(part);
    }
    part.parts
        .iter()
        .flatten()
        .find_map(|child| find_text(child, mime))
}

/// Of type `mime`, with no filename, not `Content-Disposition: attachment`, and
/// with data to read.
fn is_inline_text(part: &MessagePart, mime: &str) -> bool {
    let attachment = part.filename.as_deref().is_some_and(|f| !f.is_empty())
        || raw_header(part, "Content-Disposition").is_some_and(|value| {
            value
                .trim_start()
                .get(..10)
                .is_some_and(|kind| kind.eq_ignore_ascii_case("attachment"))
        });
    part.mime_type
        .as_deref()
        .is_some_and(|m| m.eq_ignore_ascii_case(mime))
        && !attachment
        && !data(part).is_empty()
}

fn data(part: &MessagePart) -> &[u8] {
    part.body
        .as_ref()
        .and_then(|body| body.data.as_deref())
        .unwrap_or_default()
}

/// A part's text in its own charset, with CRLF line ends made LF.
fn part_text(part: &MessagePart) -> String {
    decode_text(data(part), raw_header(part, "Content-Type")).replace("\r\n", "\n")
}

fn collect_attachments(part: &MessagePart, found: &mut Vec<Attachment>) {
    found.extend(attachment(part));
    for child in part.parts.iter().flatten() {
        collect_attachments(child, found);
    }
}

fn attachment(part: &MessagePart) -> Option<Attachment> {
    let body = part.body.as_ref();
    let attachment_id = body.and_then(|body| body.attachment_id.clone());
    let filename = part.filename.clone().unwrap_or_default();
    if filename.is_empty() && attachment_id.is_none() {
        return None;
    }
    Some(Attachment {
        attachment_id: attachment_id.unwrap_or_default(),
        filename,
        mime_type: part
            .mime_type
            .clone()
            .unwrap_or_else(|| "application/octet-stream".to_owned()),
        size: body
            .and_then(|body| body.size)
            .and_then(|size| u64::try_from(size).ok())
            .unwrap_or(0),
        content_type: raw_header(part, "Content-Type").map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use providers::gmail::api::{MessagePartBody, MessagePartHeader};

    use super::*;

    /// A part of type `mime` with these headers, body bytes and children.
    fn part(
        mime: &str,
        headers: &[(&str, &str)],
        data: Option<&[u8]>,
        parts: Vec<MessagePart>,
    ) -> MessagePart {
        MessagePart {
            mime_type: Some(mime.to_owned()),
            filename: Some(String::new()),
            headers: Some(
                headers
                    .iter()
                    .map(|(name, value)| MessagePartHeader {
                        name: Some((*name).to_owned()),
                        value: Some((*value).to_owned()),
                    })
                    .collect(),
            ),
            body: Some(MessagePartBody {
                size: Some(data.map_or(0, |d| i32::try_from(d.len()).unwrap())),
                data: data.map(<[u8]>::to_vec),
                attachment_id: None,
            }),
            parts: (!parts.is_empty()).then_some(parts),
            part_id: None,
        }
    }

    /// A part stored apart from the message, as Gmail lists attachments.
    fn stored(mime: &str, filename: &str, id: &str, size: i32) -> MessagePart {
        MessagePart {
            filename: Some(filename.to_owned()),
            body: Some(MessagePartBody {
                attachment_id: Some(id.to_owned()),
                size: Some(size),
                data: None,
            }),
            ..part(mime, &[], None, vec![])
        }
    }

    fn multipart(kind: &str, parts: Vec<MessagePart>) -> MessagePart {
        part(&format!("multipart/{kind}"), &[], None, parts)
    }

    fn plain(content_type: &str, data: &[u8]) -> MessagePart {
        part(
            "text/plain",
            &[("Content-Type", content_type)],
            Some(data),
            vec![],
        )
    }

    fn html(data: &str) -> MessagePart {
        let content_type = "text/html; charset=UTF-8";
        part(
            "text/html",
            &[("Content-Type", content_type)],
            Some(data.as_bytes()),
            vec![],
        )
    }

    #[test]
    fn reads_a_latin1_plain_part_nested_in_multiparts() {
        let message = multipart(
            "mixed",
            vec![
                multipart(
                    "related",
                    vec![
                        multipart(
                            "alternative",
                            vec![
                                plain(
                                    "text/plain; charset=\"ISO-8859-1\"",
                                    b"R\xe9sum\xe9\r\nbis bald",
                                ),
                                html("<p>HTML version</p>"),
                            ],
                        ),
                        stored("image/png", "logo.png", "img-1", 1200),
                    ],
                ),
                stored("application/pdf", "Rechnung.pdf", "pdf-1", 48_213),
            ],
        );
        let body = body(&message, 1000);
        assert_eq!(body.text, "Résumé\nbis bald");
        assert!(!body.truncated);
        assert_eq!(body.total_chars, 15);
    }

    #[test]
    fn picks_the_body_part() {
        let cases = [
            (
                "html only",
                multipart("alternative", vec![html("<p>Hi &amp; bye</p>")]),
                "Hi & bye",
            ),
            (
                "single part",
                plain("text/plain; charset=utf-8", "Grüße".as_bytes()),
                "Grüße",
            ),
            (
                "plain before html",
                multipart(
                    "alternative",
                    vec![html("<p>rich</p>"), plain("text/plain", b"plain")],
                ),
                "plain",
            ),
            (
                "a text file is not the body",
                multipart(
                    "mixed",
                    vec![
                        html("<b>body</b>"),
                        stored("text/plain", "notes.txt", "a1", 10),
                    ],
                ),
                "body",
            ),
            (
                "a text attachment without filename is not the body",
                multipart(
                    "mixed",
                    vec![
                        part(
                            "text/plain",
                            &[("Content-Disposition", "ATTACHMENT; size=3")],
                            Some(b"log"),
                            vec![],
                        ),
                        html("shown"),
                    ],
                ),
                "shown",
            ),
            (
                "an empty plain part gives way to html",
                multipart(
                    "alternative",
                    vec![
                        part("text/plain", &[], None, vec![]),
                        html("<div>rich</div>"),
                    ],
                ),
                "rich",
            ),
            (
                "no text at all",
                multipart("mixed", vec![stored("image/jpeg", "a.jpg", "a1", 10)]),
                "",
            ),
        ];
        for (name, message, expected) in cases {
            assert_eq!(body(&message, 1000).text, expected, "{name}");
        }
    }

    #[test]
    fn truncates_long_bodies_with_a_marker() {
        let message = plain("text/plain; charset=utf-8", "héllo wörld".as_bytes());
        let body = body(&message, 4);
        assert_eq!(
            body.text,
            "héll\n\n[… truncated: showed 4 of 11 characters; call again with a larger max_chars (at most 20000)]"
        );
        assert!(body.truncated);
        assert_eq!(body.total_chars, 11);
    }

    #[test]
    fn truncates_by_characters_never_splitting_one() {
        let cases = [
            ("héllo", 5, "héllo", false),
            ("héllo", 9, "héllo", false),
            ("héllo", 2, "hé", true),
            ("🎉🎉🎉", 1, "🎉", true),
            ("abc", 0, "", true),
            ("", 0, "", false),
        ];
        for (text, max, shown, truncated) in cases {
            let body = truncate(text, max);
            assert_eq!(body.truncated, truncated, "{text:?} at {max}");
            assert_eq!(body.total_chars, text.chars().count());
            assert!(body.text.starts_with(shown), "{text:?} at {max}");
            let marker = format!("\n\n[… truncated: showed {max} of {}", text.chars().count());
            assert_eq!(body.text.contains(&marker), truncated);
        }
        let long = "x".repeat(MAX_BODY_CHARS + 1);
        assert!(
            truncate(&long, MAX_BODY_CHARS)
                .text
                .ends_with("; 20000 is the most one call shows]")
        );
    }

    #[test]
    fn decodes_headers() {
        let message = part(
            "text/plain",
            &[
                ("Subject", "=?UTF-8?B?w5xiZXJ3ZWlzdW5nIGJlc3TDpHRpZ3Q=?="),
                ("from", "=?ISO-8859-1?Q?Ren=E9_Dupont?= <rene@example.fr>"),
                (
                    "To",
                    "=?UTF-8?Q?Ana_P=C3=A9rez?=\r\n =?UTF-8?Q?_Garc=C3=ADa?= <ana@x.org>",
                ),
                ("X-Long", "first line\r\n\tsecond line"),
                ("X-Empty", ""),
            ],
            None,
            vec![],
        );
        let cases = [
            ("Subject", Some("Überweisung bestätigt")),
            ("SUBJECT", Some("Überweisung bestätigt")),
            ("From", Some("René Dupont <rene@example.fr>")),
            ("to", Some("Ana Pérez García <ana@x.org>")),
            ("X-Long", Some("first line\tsecond line")),
            ("X-Empty", Some("")),
            ("Cc", None),
        ];
        for (name, expected) in cases {
            assert_eq!(header(&message, name).as_deref(), expected, "{name}");
        }
        assert_eq!(header(&MessagePart::default(), "Subject"), None);
    }

    #[test]
    fn decodes_text_in_the_declared_charset() {
        let cases: [(&[u8], Option<&str>, &str); 6] = [
            (
                b"R\xe9sum\xe9",
                Some("text/plain; charset=ISO-8859-1"),
                "Résumé",
            ),
            (
                b"R\xe9sum\xe9",
                Some("text/plain; CHARSET=\"iso-8859-1\""),
                "Résumé",
            ),
            (
                b"\xcf\xf0\xe8\xe2\xe5\xf2",
                Some("text/plain; format=flowed; charset=windows-1251"),
                "Привет",
            ),
            ("Grüße".as_bytes(), None, "Grüße"),
            ("Grüße".as_bytes(), Some("text/plain"), "Grüße"),
            (
                b"caf\xe9",
                Some("text/plain; charset=x-unknown"),
                "caf\u{fffd}",
            ),
        ];
        for (bytes, content_type, expected) in cases {
            assert_eq!(
                decode_text(bytes, content_type),
                expected,
                "{content_type:?}"
            );
        }
    }

    #[test]
    fn lists_attachments_depth_first_with_ids_and_sizes() {
        let message = multipart(
            "mixed",
            vec![
                multipart(
                    "related",
                    vec![
                        html("<img src=cid:logo>"),
                        stored("image/png", "logo.png", "img-1", 1200),
                    ],
                ),
                stored("application/pdf", "Rechnung.pdf", "pdf-1", 48_213),
                MessagePart {
                    mime_type: None,
                    ..stored("", "", "bare-1", -1)
                },
                MessagePart {
                    filename: Some("inline.txt".to_owned()),
                    ..plain("text/plain", b"small")
                },
            ],
        );
        let listed = attachments(&message);
        let expected = [
            ("img-1", "logo.png", "image/png", 1200),
            ("pdf-1", "Rechnung.pdf", "application/pdf", 48_213),
            ("bare-1", "", "application/octet-stream", 0),
            ("", "inline.txt", "text/plain", 5),
        ];
        let listed: Vec<_> = listed
            .iter()
            .map(|a| {
                (
                    a.attachment_id.as_str(),
                    a.filename.as_str(),
                    a.mime_type.as_str(),
                    a.size,
                )
            })
            .collect();
        assert_eq!(listed, expected);
        assert_eq!(attachments(&html("<p>no attachments</p>")), vec![]);
        let single = stored("application/pdf", "only.pdf", "p1", 9);
        assert_eq!(attachments(&single).len(), 1);
    }
}
