//! Address lists as a user writes them (`a@b.c, Ana Pérez <ana@x.org>, "Pérez, Ana"
//! <ana@x.org>`): split, checked, and rendered as header tokens.

use super::compose_error::ComposeError;
use super::words;

/// One recipient or sender: a display name (possibly empty) and an ASCII addr-spec.
#[derive(Debug, PartialEq, Eq)]
pub struct Address<'a> {
    pub name: String,
    pub addr: &'a str,
}

impl Address<'_> {
    /// The domain of the address.
    pub fn domain(&self) -> &str {
        self.addr.rsplit_once('@').map_or("", |(_, domain)| domain)
    }

    /// Header tokens: the display name (plain, quoted or encoded) and `<addr>`, or
    /// the bare address when there is no name.
    fn tokens(&self) -> Vec<String> {
        if self.name.is_empty() {
            return vec![self.addr.to_owned()];
        }
        let mut tokens = if words::needs_encoding(&self.name) {
            words::encode(&self.name)
        } else if self.name.chars().all(|c| c == ' ' || is_atext(c)) {
            self.name.split(' ').map(str::to_owned).collect()
        } else {
            vec![quote(&self.name)]
        };
        tokens.push(format!("<{}>", self.addr));
        tokens
    }
}

/// Longest mailbox kept whole, so that header folding happens after commas: a
/// continuation line is a space, the mailbox and its comma, within 78 columns.
const WHOLE_MAILBOX: usize = 76;

/// Header tokens for a list of mailboxes, a comma after each but the last; a
/// mailbox short enough to fit on a line is one token.
pub fn list_tokens(mailboxes: &[Address]) -> Vec<String> {
    let mut tokens = Vec::new();
    for (i, mailbox) in mailboxes.iter().enumerate() {
        let mut own = mailbox.tokens();
        if i + 1 < mailboxes.len()
            && let Some(last) = own.last_mut()
        {
            last.push(',');
        }
        let whole = own.join(" ");
        if whole.len() <= WHOLE_MAILBOX {
            tokens.push(whole);
        } else {
            tokens.extend(own);
        }
    }
    tokens
}

/// The mailboxes in a comma-separated list; empty entries are skipped.
pub fn parse_list<'a>(
    field: &'static str,
    list: &'a str,
) -> Result<Vec<Address<'a>>, ComposeError> {
    let (entries, closed) = split(list);
    let entries: Vec<&str> = entries
        .into_iter()
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .collect();
    if !closed {
        // Every comma after an opening quote is inside it: the last entry holds it.
        return Err(Problem::Invalid("a quote is never closed").into_error(field, entries.len()));
    }
    entries
        .into_iter()
        .enumerate()
        .map(|(i, entry)| parse_mailbox(entry).map_err(|problem| problem.into_error(field, i + 1)))
        .collect()
}

/// What is wrong with one entry of a list.
enum Problem {
    NotAscii,
    Invalid(&'static str),
}

impl Problem {
    fn into_error(self, field: &'static str, index: usize) -> ComposeError {
        match self {
            Problem::NotAscii => ComposeError::NonAsciiAddress { field, index },
            Problem::Invalid(reason) => ComposeError::InvalidAddress {
                field,
                index,
                reason,
            },
        }
    }
}

/// `list` cut at commas outside quotes and angle brackets, and whether every quote closes.
fn split(list: &str) -> (Vec<&str>, bool) {
    let mut entries = Vec::new();
    let (mut start, mut quoted, mut escaped, mut angle) = (0, false, false, false);
    for (i, c) in list.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !quoted && !angle => {
                entries.push(&list[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    entries.push(&list[start..]);
    (entries, !quoted)
}

/// One trimmed, non-empty entry: `addr`, `<addr>`, `Name <addr>` or `"Name" <addr>`.
fn parse_mailbox(entry: &str) -> Result<Address<'_>, Problem> {
    let (name, rest) = match entry.strip_prefix('"') {
        Some(quoted) => unquote(quoted),
        None => match entry.find('<') {
            Some(lt) => (entry[..lt].to_owned(), &entry[lt..]),
            None => (String::new(), entry),
        },
    };
    let rest = rest.trim();
    let addr = match rest.strip_prefix('<') {
        Some(angled) => {
            let (addr, tail) = angled
                .split_once('>')
                .ok_or(Problem::Invalid("a < is never closed with >"))?;
            if !tail.trim().is_empty() {
                return Err(Problem::Invalid("there is text after the closing >"));
            }
            addr
        }
        None if name.is_empty() => rest,
        None => {
            return Err(Problem::Invalid(
                "a quoted name must be followed by <address>",
            ));
        }
    };
    check_addr(addr)?;
    Ok(Address {
        name: name.split_whitespace().collect::<Vec<_>>().join(" "),
        addr,
    })
}

/// The content of a quoted-string whose opening quote is already consumed, and
/// what follows its closing quote (`split` made sure there is one).
fn unquote(quoted: &str) -> (String, &str) {
    let mut name = String::new();
    let mut chars = quoted.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return (name, &quoted[i + 1..]),
            '\\' => name.extend(chars.next().map(|(_, escaped)| escaped)),
            c => name.push(c),
        }
    }
    (name, "")
}

/// An addr-spec we are willing to send: ASCII, one `@` with text on both sides,
/// no whitespace, control characters or specials that would change the header's meaning.
fn check_addr(addr: &str) -> Result<(), Problem> {
    if !addr.is_ascii() {
        return Err(Problem::NotAscii);
    }
    if addr
        .chars()
        .any(|c| c.is_ascii_whitespace() || c.is_ascii_control())
    {
        return Err(Problem::Invalid("it contains spaces or control characters"));
    }
    let Some((local, domain)) = addr.split_once('@') else {
        return Err(Problem::Invalid("it needs exactly one @"));
    };
    if domain.contains('@') {
        return Err(Problem::Invalid("it needs exactly one @"));
    }
    if local.is_empty() || domain.is_empty() {
        return Err(Problem::Invalid("it needs text on both sides of the @"));
    }
    if addr.contains(['(', ')', '<', '>', '[', ']', ',', ';', ':', '\\', '"']) {
        return Err(Problem::Invalid(
            "it contains characters not allowed in an address",
        ));
    }
    Ok(())
}

/// RFC 5322 atext: what may appear in a display name without quotes.
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c)
}

/// `name` as a quoted-string, `"` and `\` escaped.
fn quote(name: &str) -> String {
    let mut quoted = String::with_capacity(name.len() + 2);
    quoted.push('"');
    for c in name.chars() {
        if matches!(c, '"' | '\\') {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_ways_people_write_addresses() {
        let cases: [(&str, &[(&str, &str)]); 8] = [
            ("a@x.org", &[("", "a@x.org")]),
            ("<a@x.org>", &[("", "a@x.org")]),
            (" a@x.org , b@y.org ,", &[("", "a@x.org"), ("", "b@y.org")]),
            ("Ana  Pérez <ana@x.org>", &[("Ana Pérez", "ana@x.org")]),
            ("\"Pérez, Ana\" <ana@x.org>", &[("Pérez, Ana", "ana@x.org")]),
            ("\"Say \\\"hi\\\"\"<s@x.org>", &[("Say \"hi\"", "s@x.org")]),
            ("\"\" <e@x.org>", &[("", "e@x.org")]),
            (
                "\"Smith, John\" <j@x.org>, Ana <a@x.org>",
                &[("Smith, John", "j@x.org"), ("Ana", "a@x.org")],
            ),
        ];
        for (list, expected) in cases {
            let parsed: Vec<_> = parse_list("to", list)
                .unwrap()
                .iter()
                .map(|m| (m.name.clone(), m.addr))
                .collect();
            let expected: Vec<_> = expected
                .iter()
                .map(|(name, addr)| ((*name).to_owned(), *addr))
                .collect();
            assert_eq!(parsed, expected, "{list:?}");
        }
    }

    #[test]
    fn refuses_what_is_not_an_address() {
        let cases = [
            ("ana", 1, Some("it needs exactly one @")),
            ("a@b@c.org", 1, Some("it needs exactly one @")),
            ("@x.org", 1, Some("it needs text on both sides of the @")),
            (
                "a b@x.org",
                1,
                Some("it contains spaces or control characters"),
            ),
            (
                "a\u{7}@x.org",
                1,
                Some("it contains spaces or control characters"),
            ),
            (
                "a@x.org, (a)@x.org",
                2,
                Some("it contains characters not allowed in an address"),
            ),
            ("\"Ana <a@x.org>", 1, Some("a quote is never closed")),
            (
                "a@x.org,, \"Ana, <a@x.org>",
                2,
                Some("a quote is never closed"),
            ),
            ("Ana <a@x.org", 1, Some("a < is never closed with >")),
            (
                "Ana <a@x.org> Pérez",
                1,
                Some("there is text after the closing >"),
            ),
            (
                "\"Ana\" a@x.org",
                1,
                Some("a quoted name must be followed by <address>"),
            ),
            ("b@x.org, ána@x.org", 2, None),
            ("Ana <ana@exämple.org>", 1, None),
        ];
        for (list, index, reason) in cases {
            let expected = match reason {
                Some(reason) => ComposeError::InvalidAddress {
                    field: "cc",
                    index,
                    reason,
                },
                None => ComposeError::NonAsciiAddress { field: "cc", index },
            };
            assert_eq!(parse_list("cc", list), Err(expected), "{list:?}");
        }
    }

    #[test]
    fn renders_names_plain_quoted_or_encoded() {
        let cases = [
            ("j@x.org", "j@x.org"),
            ("John Smith <j@x.org>", "John Smith <j@x.org>"),
            ("\"Smith, John\" <j@x.org>", "\"Smith, John\" <j@x.org>"),
            (
                "J. \"Jo\" Smith <j@x.org>",
                "\"J. \\\"Jo\\\" Smith\" <j@x.org>",
            ),
            ("\"back\\\\slash\" <j@x.org>", "\"back\\\\slash\" <j@x.org>"),
            (
                "Ana Pérez <ana@x.org>",
                "=?UTF-8?B?QW5hIFDDqXJleg==?= <ana@x.org>",
            ),
            (
                "\"Pérez, Ana\" <ana@x.org>",
                "=?UTF-8?B?UMOpcmV6LCBBbmE=?= <ana@x.org>",
            ),
            ("a@x.org, B <b@y.org>", "a@x.org, B <b@y.org>"),
        ];
        for (list, expected) in cases {
            let mailboxes = parse_list("to", list).unwrap();
            assert_eq!(list_tokens(&mailboxes).join(" "), expected, "{list:?}");
        }
    }
}
