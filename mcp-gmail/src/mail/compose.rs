//! Outgoing mail as RFC 5322 bytes: a single `text/plain` UTF-8 part, base64
//! encoded, with RFC 2047 encoded-words for non-ASCII subjects and display names,
//! CRLF line ends and headers folded to 78 columns where possible.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::address::{self, Address};
pub use super::compose_error::ComposeError;
use super::words;

/// Lines longer than this are folded where there is whitespace to fold at.
const LINE_LIMIT: usize = 78;

/// Base64 characters per body line.
const BODY_LINE: usize = 76;

/// A message to send or save as a draft.
#[derive(Debug, Clone, Copy, Default)]
pub struct Outgoing<'a> {
    /// The connected address, bare (`me@example.com`).
    pub from: &'a str,
    /// Comma-separated: `a@b.c`, `Name <a@b.c>` or `"Last, First" <a@b.c>`.
    pub to: &'a str,
    /// Same form as `to`; blank means none.
    pub cc: Option<&'a str>,
    /// Gmail drops the header when it sends.
    pub bcc: Option<&'a str>,
    /// Any text without line breaks; may be empty.
    pub subject: &'a str,
    /// UTF-8 plain text.
    pub body: &'a str,
    /// The Message-ID replied to, `<id@host>`; blank means none.
    pub in_reply_to: Option<&'a str>,
    /// Space-separated Message-IDs of the thread.
    pub references: Option<&'a str>,
}

/// The message as RFC 5322 bytes, dated `now`, with a fresh random Message-ID.
pub fn compose(mail: &Outgoing, now: SystemTime) -> Result<Vec<u8>, ComposeError> {
    refuse_line_breaks(mail)?;
    let from = single_mailbox("from", mail.from)?;
    let to = address::parse_list("to", mail.to)?;
    if to.is_empty() {
        return Err(ComposeError::NoAddress { field: "to" });
    }
    let cc = optional_list("cc", mail.cc)?;
    let bcc = optional_list("bcc", mail.bcc)?;
    let in_reply_to = message_ids("in_reply_to", mail.in_reply_to)?;
    if in_reply_to.len() > 1 {
        return Err(ComposeError::InvalidMessageId {
            field: "in_reply_to",
        });
    }
    let references = references(
        message_ids("references", mail.references)?,
        in_reply_to.first().copied(),
    );

    let mut headers = vec![
        ("From", address::list_tokens(std::slice::from_ref(&from))),
        ("To", address::list_tokens(&to)),
    ];
    if !cc.is_empty() {
        headers.push(("Cc", address::list_tokens(&cc)));
    }
    if !bcc.is_empty() {
        headers.push(("Bcc", address::list_tokens(&bcc)));
    }
    headers.push(("Subject", subject_tokens(mail.subject)));
    headers.push(("Date", vec![date(now)]));
    headers.push(("Message-ID", vec![message_id(from.domain())?]));
    if !in_reply_to.is_empty() {
        headers.push(("In-Reply-To", owned(&in_reply_to)));
    }
    if !references.is_empty() {
        headers.push(("References", owned(&references)));
    }
    headers.extend([
        ("MIME-Version", vec!["1.0".to_owned()]),
        (
            "Content-Type",
            vec!["text/plain; charset=\"UTF-8\"".to_owned()],
        ),
        ("Content-Transfer-Encoding", vec!["base64".to_owned()]),
    ]);

    let mut message: String = headers
        .iter()
        .map(|(name, tokens)| header(name, tokens))
        .collect();
    message.push_str("\r\n");
    message.push_str(&body(mail.body));
    Ok(message.into_bytes())
}

/// Header injection guard: no field may carry CR or LF.
fn refuse_line_breaks(mail: &Outgoing) -> Result<(), ComposeError> {
    let fields = [
        ("from", Some(mail.from)),
        ("to", Some(mail.to)),
        ("cc", mail.cc),
        ("bcc", mail.bcc),
        ("subject", Some(mail.subject)),
        ("in_reply_to", mail.in_reply_to),
        ("references", mail.references),
    ];
    match fields
        .into_iter()
        .find(|(_, value)| value.is_some_and(|v| v.contains(['\r', '\n'])))
    {
        Some((field, _)) => Err(ComposeError::LineBreak { field }),
        None => Ok(()),
    }
}

fn single_mailbox<'a>(field: &'static str, value: &'a str) -> Result<Address<'a>, ComposeError> {
    let mut mailboxes = address::parse_list(field, value)?;
    match mailboxes.len() {
        0 => Err(ComposeError::NoAddress { field }),
        1 => Ok(mailboxes.remove(0)),
        _ => Err(ComposeError::NotOneAddress { field }),
    }
}

fn optional_list<'a>(
    field: &'static str,
    value: Option<&'a str>,
) -> Result<Vec<Address<'a>>, ComposeError> {
    value.map_or(Ok(Vec::new()), |list| address::parse_list(field, list))
}

/// The whitespace-separated Message-IDs in `value`; none when it is absent or blank.
fn message_ids<'a>(
    field: &'static str,
    value: Option<&'a str>,
) -> Result<Vec<&'a str>, ComposeError> {
    let ids: Vec<&str> = value.unwrap_or_default().split_whitespace().collect();
    if ids.iter().all(|id| is_message_id(id)) {
        Ok(ids)
    } else {
        Err(ComposeError::InvalidMessageId { field })
    }
}

/// `<left@right>`, printable ASCII without further angle brackets.
pub fn is_message_id(id: &str) -> bool {
    let Some(inner) = id.strip_prefix('<').and_then(|id| id.strip_suffix('>')) else {
        return false;
    };
    let Some((left, right)) = inner.split_once('@') else {
        return false;
    };
    !left.is_empty()
        && !right.is_empty()
        && inner
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'<' | b'>'))
}

/// The thread's References, ending with the message replied to.
fn references<'a>(mut references: Vec<&'a str>, in_reply_to: Option<&'a str>) -> Vec<&'a str> {
    if let Some(parent) = in_reply_to
        && references.last() != Some(&parent)
    {
        references.push(parent);
    }
    references
}

fn owned(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|id| (*id).to_owned()).collect()
}

/// The subject as header tokens: encoded-words when it is not plain ASCII or has
/// a word too long to fold, else its space-separated words, spaces kept.
fn subject_tokens(subject: &str) -> Vec<String> {
    if subject.is_empty() {
        Vec::new()
    } else if words::needs_encoding(subject) || subject.split(' ').any(|w| w.len() >= LINE_LIMIT) {
        words::encode(subject)
    } else {
        subject.split(' ').map(str::to_owned).collect()
    }
}

/// `Name: tokens` joined by spaces, folded before a space (CRLF then the space)
/// wherever the line would pass 78 columns; ends with CRLF.
fn header(name: &str, tokens: &[String]) -> String {
    let mut folded = String::new();
    let mut line = format!("{name}:");
    for (i, token) in tokens.iter().enumerate() {
        if i > 0 && !token.is_empty() && line.len() + 1 + token.len() > LINE_LIMIT {
            folded.push_str(&line);
            folded.push_str("\r\n");
            line.clear();
        }
        line.push(' ');
        line.push_str(token);
    }
    folded.push_str(&line);
    folded.push_str("\r\n");
    folded
}

/// The body with CRLF line ends, base64 in lines of 76 characters.
fn body(text: &str) -> String {
    let canonical = text
        .replace("\r\n", "\n")
        .replace('\r', "\n")
        .replace('\n', "\r\n");
    let encoded = STANDARD.encode(canonical);
    let mut lines = String::with_capacity(encoded.len() + encoded.len() / BODY_LINE * 2 + 2);
    let mut rest = encoded.as_str();
    while !rest.is_empty() {
        let (line, tail) = rest.split_at(rest.len().min(BODY_LINE));
        lines.push_str(line);
        lines.push_str("\r\n");
        rest = tail;
    }
    lines
}

/// `<32 hex digits@domain>` from the system's random source.
fn message_id(domain: &str) -> Result<String, ComposeError> {
    let mut random = [0u8; 16];
    getrandom::getrandom(&mut random).map_err(|_| ComposeError::Random)?;
    let mut id = String::from("<");
    for byte in random {
        let _ = write!(id, "{byte:02x}");
    }
    let _ = write!(id, "@{domain}>");
    Ok(id)
}

/// `now` as an RFC 5322 date in UTC: `Mon, 23 Nov 2026 11:34:29 +0000`. Times
/// before 1970 count as 1970.
fn date(now: SystemTime) -> String {
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let seconds = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let days = seconds / 86_400;
    let (year, month, day) = civil_from_days(days);
    let time = seconds % 86_400;
    format!(
        "{}, {day} {} {year} {:02}:{:02}:{:02} +0000",
        WEEKDAYS[(days % 7) as usize],
        MONTHS[month - 1],
        time / 3600,
        time % 3600 / 60,
        time % 60,
    )
}

/// Year, month (1 to 12) and day of the month, `days` after 1970-01-01, by
/// Howard Hinnant's `civil_from_days`.
fn civil_from_days(days: u64) -> (u64, usize, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = era * 400 + year_of_era + u64::from(month <= 2);
    (year, month as usize, day)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// 2026-11-23 11:34:29 UTC, a Monday.
    fn monday() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_795_433_669)
    }

    fn mail() -> Outgoing<'static> {
        Outgoing {
            from: "vz.finance@example.com",
            to: "ana@example.org",
            subject: "Invoice 42",
            body: "Hello Ana",
            ..Outgoing::default()
        }
    }

    fn composed(mail: &Outgoing) -> String {
        String::from_utf8(compose(mail, monday()).unwrap()).unwrap()
    }

    /// The header lines as sent, folded.
    fn lines(raw: &str) -> Vec<&str> {
        raw.split_once("\r\n\r\n")
            .unwrap()
            .0
            .split("\r\n")
            .collect()
    }

    /// The unfolded value of header `name`.
    fn value(raw: &str, name: &str) -> Option<String> {
        let head = raw.split_once("\r\n\r\n").unwrap().0.replace("\r\n ", " ");
        head.split("\r\n").find_map(|line| {
            let (key, value) = line
                .split_once(": ")
                .unwrap_or((line.trim_end_matches(':'), ""));
            (key == name).then(|| value.to_owned())
        })
    }

    fn body_of(raw: &str) -> &str {
        raw.split_once("\r\n\r\n").unwrap().1
    }

    #[test]
    fn writes_the_headers_of_a_plain_message() {
        let raw = composed(&mail());
        let lines = lines(&raw);
        assert_eq!(
            lines,
            [
                "From: vz.finance@example.com",
                "To: ana@example.org",
                "Subject: Invoice 42",
                "Date: Mon, 23 Nov 2026 11:34:29 +0000",
                lines[4],
                "MIME-Version: 1.0",
                "Content-Type: text/plain; charset=\"UTF-8\"",
                "Content-Transfer-Encoding: base64",
            ]
        );
        let id = lines[4].strip_prefix("Message-ID: <").unwrap();
        let (random, domain) = id.split_once('@').unwrap();
        assert_eq!(domain, "example.com>");
        assert_eq!(random.len(), 32);
        assert!(random.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(
            value(&composed(&mail()), "Message-ID"),
            value(&raw, "Message-ID")
        );
        assert_eq!(body_of(&raw), "SGVsbG8gQW5h\r\n");
        assert!(
            !raw.replace("\r\n", "").contains(['\r', '\n']),
            "bare CR or LF"
        );
    }

    #[test]
    fn adds_cc_and_bcc_when_given() {
        let raw = composed(&Outgoing {
            cc: Some("Bo <bo@example.org>"),
            bcc: Some("audit@example.com"),
            ..mail()
        });
        assert_eq!(value(&raw, "Cc").as_deref(), Some("Bo <bo@example.org>"));
        assert_eq!(value(&raw, "Bcc").as_deref(), Some("audit@example.com"));
        let raw = composed(&Outgoing {
            cc: Some(" "),
            ..mail()
        });
        assert_eq!(value(&raw, "Cc"), None);
    }

    #[test]
    fn subjects_are_plain_or_encoded() {
        let cases = [
            ("Invoice 42", &["Subject: Invoice 42"][..]),
            ("", &["Subject:"][..]),
            (
                "Überweisung bestätigt",
                &["Subject: =?UTF-8?B?w5xiZXJ3ZWlzdW5nIGJlc3TDpHRpZ3Q=?="][..],
            ),
            (
                "Ask about =?x?=",
                &["Subject: =?UTF-8?B?QXNrIGFib3V0ID0/eD89?="][..],
            ),
            (
                "A fairly long plain subject line that needs folding  because it goes past 78 columns",
                &[
                    "Subject: A fairly long plain subject line that needs folding  because it goes",
                    " past 78 columns",
                ][..],
            ),
        ];
        for (subject, expected) in cases {
            let raw = composed(&Outgoing { subject, ..mail() });
            let found: Vec<_> = lines(&raw)
                .into_iter()
                .skip_while(|line| !line.starts_with("Subject:"))
                .take(expected.len())
                .collect();
            assert_eq!(found, expected, "{subject:?}");
            let unfolded = value(&raw, "Subject").unwrap();
            assert_eq!(words::decode(&unfolded), subject);
        }
    }

    #[test]
    fn splits_a_long_non_ascii_subject_into_short_words() {
        let subject = "Zahlungsbestätigung für Überweisung Nr. 2026-11-23 über 1.234,56 € \
            an Müller & Söhne GmbH, München — bitte prüfen 🙏";
        let raw = composed(&Outgoing { subject, ..mail() });
        let unfolded = value(&raw, "Subject").unwrap();
        let words: Vec<_> = unfolded.split(' ').collect();
        assert!(words.len() >= 3, "{unfolded}");
        for word in &words {
            assert!(
                word.starts_with("=?UTF-8?B?") && word.ends_with("?="),
                "{word}"
            );
            assert!(word.len() <= 75, "{word}");
        }
        for line in lines(&raw) {
            assert!(line.len() <= 78, "{line:?}");
        }
        assert_eq!(words::decode(&unfolded), subject);
    }

    #[test]
    fn renders_display_names() {
        let cases = [
            (
                "Ana Pérez <ana@x.org>",
                "To: =?UTF-8?B?QW5hIFDDqXJleg==?= <ana@x.org>",
            ),
            (
                "\"Pérez, Ana\" <ana@x.org>",
                "To: =?UTF-8?B?UMOpcmV6LCBBbmE=?= <ana@x.org>",
            ),
            ("\"Smith, John\" <j@x.org>", "To: \"Smith, John\" <j@x.org>"),
            (
                "John Q. Public <j@x.org>",
                "To: \"John Q. Public\" <j@x.org>",
            ),
            (
                "John Smith <j@x.org>, b@y.org",
                "To: John Smith <j@x.org>, b@y.org",
            ),
        ];
        for (to, expected) in cases {
            let raw = composed(&Outgoing { to, ..mail() });
            assert_eq!(lines(&raw)[1], expected, "{to:?}");
        }
        let raw = composed(&Outgoing {
            to: "\"Pérez, Ana\" <ana@x.org>",
            ..mail()
        });
        assert_eq!(
            words::decode(&value(&raw, "To").unwrap()),
            "Pérez, Ana <ana@x.org>"
        );
    }

    #[test]
    fn folds_long_address_lists_after_commas() {
        let to = (1..=8)
            .map(|i| format!("Person Number{i} <person.number{i}@example.org>"))
            .collect::<Vec<_>>()
            .join(", ");
        let raw = composed(&Outgoing { to: &to, ..mail() });
        let to_lines: Vec<_> = lines(&raw)
            .into_iter()
            .skip(1)
            .take_while(|line| !line.starts_with("Subject:"))
            .collect();
        assert!(to_lines.len() > 3, "{to_lines:?}");
        for (i, line) in to_lines.iter().enumerate() {
            assert!(line.len() <= 78, "{line:?}");
            assert_eq!(line.starts_with(' '), i > 0, "{line:?}");
            assert_eq!(line.ends_with(','), i + 1 < to_lines.len(), "{line:?}");
        }
        assert_eq!(value(&raw, "To").unwrap(), to);
    }

    #[test]
    fn refuses_bad_input() {
        use ComposeError::*;
        let cases = [
            (Outgoing { to: "", ..mail() }, NoAddress { field: "to" }),
            (
                Outgoing {
                    to: " , ",
                    ..mail()
                },
                NoAddress { field: "to" },
            ),
            (Outgoing { from: "", ..mail() }, NoAddress { field: "from" }),
            (
                Outgoing {
                    from: "a@x.org, b@x.org",
                    ..mail()
                },
                NotOneAddress { field: "from" },
            ),
            (
                Outgoing {
                    to: "ana",
                    ..mail()
                },
                InvalidAddress {
                    field: "to",
                    index: 1,
                    reason: "it needs exactly one @",
                },
            ),
            (
                Outgoing {
                    to: "a@x.org, b c@x.org",
                    ..mail()
                },
                InvalidAddress {
                    field: "to",
                    index: 2,
                    reason: "it contains spaces or control characters",
                },
            ),
            (
                Outgoing {
                    bcc: Some("Ana <ána@x.org>"),
                    ..mail()
                },
                NonAsciiAddress {
                    field: "bcc",
                    index: 1,
                },
            ),
            (
                Outgoing {
                    subject: "Hi\r\nBcc: victim@example.org",
                    ..mail()
                },
                LineBreak { field: "subject" },
            ),
            (
                Outgoing {
                    subject: "Hi\nX: y",
                    ..mail()
                },
                LineBreak { field: "subject" },
            ),
            (
                Outgoing {
                    to: "a@x.org\r\nBcc: victim@example.org",
                    ..mail()
                },
                LineBreak { field: "to" },
            ),
            (
                Outgoing {
                    cc: Some("\"Ana\r\n\" <a@x.org>"),
                    ..mail()
                },
                LineBreak { field: "cc" },
            ),
            (
                Outgoing {
                    in_reply_to: Some("<a@x>\rBcc: v@x.org"),
                    ..mail()
                },
                LineBreak {
                    field: "in_reply_to",
                },
            ),
            (
                Outgoing {
                    in_reply_to: Some("abc@x.org"),
                    ..mail()
                },
                InvalidMessageId {
                    field: "in_reply_to",
                },
            ),
            (
                Outgoing {
                    in_reply_to: Some("<a@x> <b@x>"),
                    ..mail()
                },
                InvalidMessageId {
                    field: "in_reply_to",
                },
            ),
            (
                Outgoing {
                    references: Some("<a@x> <b>"),
                    ..mail()
                },
                InvalidMessageId {
                    field: "references",
                },
            ),
            (
                Outgoing {
                    references: Some("<a@x><b@x>"),
                    ..mail()
                },
                InvalidMessageId {
                    field: "references",
                },
            ),
        ];
        for (mail, expected) in cases {
            assert_eq!(compose(&mail, monday()), Err(expected), "{mail:?}");
        }
    }

    #[test]
    fn errors_never_repeat_the_input() {
        let secret = "s3cr3t-t0k3n-value";
        let cases = [
            Outgoing {
                to: &format!("{secret} <{secret}>"),
                ..mail()
            },
            Outgoing {
                subject: &format!("{secret}\r\n{secret}"),
                ..mail()
            },
            Outgoing {
                references: Some(&format!("<{secret}>")),
                ..mail()
            },
            Outgoing {
                cc: Some(&format!("{secret}é@x.org")),
                ..mail()
            },
        ];
        for mail in cases {
            let text = compose(&mail, monday()).unwrap_err().to_string();
            assert!(!text.contains(secret), "{text}");
        }
    }

    #[test]
    fn body_is_base64_in_short_lines_with_crlf() {
        let body =
            "Hallo Ana,\n\nanbei die Rechnung über 1.234,56 €. Grüße aus München 🙂\n".repeat(5);
        let raw = composed(&Outgoing {
            body: &body,
            ..mail()
        });
        let encoded = body_of(&raw);
        assert!(encoded.ends_with("\r\n"));
        let lines: Vec<_> = encoded.trim_end().split("\r\n").collect();
        assert!(lines.len() > 1);
        assert!(lines.iter().all(|line| line.len() <= 76), "{lines:?}");
        assert!(lines[..lines.len() - 1].iter().all(|line| line.len() == 76));
        let decoded = STANDARD.decode(lines.concat()).unwrap();
        assert_eq!(
            String::from_utf8(decoded).unwrap(),
            body.replace('\n', "\r\n")
        );
        assert_eq!(body_of(&composed(&Outgoing { body: "", ..mail() })), "");
    }

    #[test]
    fn threads_replies() {
        let cases = [
            (None, None, None, None),
            (Some("<p@x>"), None, Some("<p@x>"), Some("<p@x>")),
            (Some(" <p@x> "), Some("  "), Some("<p@x>"), Some("<p@x>")),
            (
                Some("<p@x>"),
                Some("<a@x> <b@x>"),
                Some("<p@x>"),
                Some("<a@x> <b@x> <p@x>"),
            ),
            (
                Some("<p@x>"),
                Some("<a@x>\t<p@x>"),
                Some("<p@x>"),
                Some("<a@x> <p@x>"),
            ),
            (None, Some("<a@x>"), None, Some("<a@x>")),
        ];
        for (in_reply_to, references, expected_in_reply_to, expected_references) in cases {
            let raw = composed(&Outgoing {
                in_reply_to,
                references,
                ..mail()
            });
            assert_eq!(value(&raw, "In-Reply-To").as_deref(), expected_in_reply_to);
            assert_eq!(value(&raw, "References").as_deref(), expected_references);
        }
    }

    #[test]
    fn formats_dates_in_utc() {
        let cases = [
            (0, "Thu, 1 Jan 1970 00:00:00 +0000"),
            (951_868_799, "Tue, 29 Feb 2000 23:59:59 +0000"),
            (1_700_000_000, "Tue, 14 Nov 2023 22:13:20 +0000"),
            (1_795_433_669, "Mon, 23 Nov 2026 11:34:29 +0000"),
            (4_107_542_400, "Mon, 1 Mar 2100 00:00:00 +0000"),
        ];
        for (seconds, expected) in cases {
            assert_eq!(date(UNIX_EPOCH + Duration::from_secs(seconds)), expected);
        }
        assert_eq!(
            date(UNIX_EPOCH - Duration::from_secs(1)),
            "Thu, 1 Jan 1970 00:00:00 +0000"
        );
    }

    #[test]
    fn round_trips_through_a_mail_parser() {
        let body = "Hallo Ana,\n\ndie Überweisung ist da.\n";
        let raw = compose(
            &Outgoing {
                to: "\"Pérez, Ana\" <ana@x.org>, bo@y.org",
                cc: Some("Zoë Müller <zoe@z.org>"),
                subject: "Re: Überweisung bestätigt – danke! 🎉 "
                    .repeat(3)
                    .trim_end(),
                body,
                in_reply_to: Some("<parent@mail.gmail.com>"),
                ..mail()
            },
            monday(),
        )
        .unwrap();
        let message = mail_parser::MessageParser::default().parse(&raw).unwrap();
        assert_eq!(
            message.subject(),
            Some(
                "Re: Überweisung bestätigt – danke! 🎉 "
                    .repeat(3)
                    .trim_end()
            )
        );
        let to: Vec<_> = message
            .to()
            .unwrap()
            .iter()
            .map(|a| (a.name(), a.address()))
            .collect();
        assert_eq!(
            to,
            [
                (Some("Pérez, Ana"), Some("ana@x.org")),
                (None, Some("bo@y.org"))
            ]
        );
        let cc = message.cc().unwrap().first().unwrap();
        assert_eq!(
            (cc.name(), cc.address()),
            (Some("Zoë Müller"), Some("zoe@z.org"))
        );
        assert_eq!(message.body_text(0).unwrap().replace("\r\n", "\n"), body);
        assert_eq!(
            message.in_reply_to().as_text(),
            Some("parent@mail.gmail.com")
        );
        assert_eq!(
            message.references().as_text(),
            Some("parent@mail.gmail.com")
        );
        assert!(message.message_id().unwrap().ends_with("@example.com"));
        assert_eq!(message.date().unwrap().to_timestamp(), 1_795_433_669);
    }
}
