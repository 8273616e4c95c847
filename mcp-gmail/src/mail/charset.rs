//! Bytes in a named charset to text, and the parameters of a MIME header such as
//! `text/plain; charset="iso-8859-1"`.

use encoding_rs::{Encoding, UTF_8};

/// `bytes` decoded as charset `label` (any label encoding_rs knows, case-insensitive);
/// UTF-8 when the label is absent or unknown. Never fails: bad bytes become U+FFFD.
pub fn decode(bytes: &[u8], label: Option<&str>) -> String {
    let encoding = label
        .and_then(|label| Encoding::for_label(label.trim().as_bytes()))
        .unwrap_or(UTF_8);
    encoding.decode(bytes).0.into_owned()
}

/// The value of parameter `name` (case-insensitive) in a header value like
/// `text/plain; format=flowed; charset="utf-8"`, quoted or not.
pub fn parameter(header: &str, name: &str) -> Option<String> {
    let mut rest = header.split_once(';')?.1;
    while !rest.is_empty() {
        let key_end = rest.find(['=', ';']).unwrap_or(rest.len());
        let key = rest[..key_end].trim();
        rest = &rest[key_end..];
        if let Some(after) = rest.strip_prefix('=') {
            let (value, tail) = value(after.trim_start());
            if key.eq_ignore_ascii_case(name) {
                return Some(value);
            }
            rest = tail;
        }
        rest = rest.find(';').map_or("", |i| &rest[i + 1..]);
    }
    None
}

/// A parameter value at the start of `text` (a quoted-string or a token), and what follows it.
fn value(text: &str) -> (String, &str) {
    let Some(quoted) = text.strip_prefix('"') else {
        let end = text.find(';').unwrap_or(text.len());
        return (text[..end].trim().to_owned(), &text[end..]);
    };
    let mut value = String::new();
    let mut chars = quoted.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return (value, &quoted[i + 1..]),
            '\\' => value.extend(chars.next().map(|(_, escaped)| escaped)),
            c => value.push(c),
        }
    }
    (value, "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_parameters() {
        let cases = [
            ("text/plain; charset=utf-8", Some("utf-8")),
            ("text/plain; charset=\"ISO-8859-1\"", Some("ISO-8859-1")),
            ("text/plain;CHARSET=koi8-r", Some("koi8-r")),
            (
                "text/plain; format=flowed; charset=us-ascii; delsp=yes",
                Some("us-ascii"),
            ),
            (
                "text/plain; name=\"a;charset=b.txt\"; charset=utf-8",
                Some("utf-8"),
            ),
            (
                "text/plain; name=\"say \\\"hi\\\"\"; charset = latin1 ",
                Some("latin1"),
            ),
            ("text/plain; xcharset=utf-8", None),
            ("text/plain; charset", None),
            ("text/plain; charset=\"unterminated", Some("unterminated")),
            ("text/plain", None),
            ("", None),
            (";;;=;", None),
        ];
        for (header, expected) in cases {
            assert_eq!(
                parameter(header, "charset").as_deref(),
                expected,
                "{header:?}"
            );
        }
    }

    #[test]
    fn decodes_known_charsets_and_falls_back_to_utf8() {
        let cases: [(&[u8], Option<&str>, &str); 7] = [
            (b"R\xe9sum\xe9", Some("ISO-8859-1"), "Résumé"),
            (b"\x80 5", Some(" windows-1252 "), "€ 5"),
            (b"\xf0\xd2\xc9\xd7\xc5\xd4", Some("KOI8-R"), "Привет"),
            ("Grüße".as_bytes(), None, "Grüße"),
            ("Grüße".as_bytes(), Some("no-such-charset"), "Grüße"),
            (b"bad \xff byte", Some("utf-8"), "bad \u{fffd} byte"),
            (b"\xef\xbb\xbfBOM", None, "BOM"),
        ];
        for (bytes, label, expected) in cases {
            assert_eq!(decode(bytes, label), expected, "{label:?}");
        }
    }
}
