//! RFC 2047 encoded-words (`=?charset?B|Q?text?=`): encoding header text we send,
//! decoding header text we read.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::general_purpose::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use super::charset;

/// UTF-8 bytes per encoded word: 42 bytes are 56 base64 characters, so a word is
/// 68 characters long (the limit is 75) and fits after `Subject: ` within 78 columns.
const WORD_BYTES: usize = 42;

/// Base64 as found in the wild: padding optional, stray trailing bits accepted.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Whether header text must be sent as encoded-words: non-ASCII, control
/// characters other than tab, or a literal `=?` a reader would take for a word.
pub fn needs_encoding(text: &str) -> bool {
    text.contains("=?")
        || text
            .chars()
            .any(|c| !c.is_ascii() || (c.is_ascii_control() && c != '\t'))
}

/// `text` as `=?UTF-8?B?...?=` words, split on char boundaries; join them with
/// folding whitespace, which readers drop between adjacent words.
pub fn encode(text: &str) -> Vec<String> {
    chunks(text, WORD_BYTES)
        .map(|chunk| format!("=?UTF-8?B?{}?=", STANDARD.encode(chunk)))
        .collect()
}

/// Consecutive pieces of `text` of at most `max_bytes` (at least 4) bytes each.
fn chunks(text: &str, max_bytes: usize) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = rest
            .char_indices()
            .map(|(i, c)| i + c.len_utf8())
            .take_while(|&end| end <= max_bytes)
            .last()
            .unwrap_or(rest.len());
        let (chunk, tail) = rest.split_at(end);
        rest = tail;
        Some(chunk)
    })
}

/// Header text with its encoded-words decoded (B or Q, any charset encoding_rs
/// knows, UTF-8 otherwise). Whitespace between adjacent words is dropped, and
/// adjacent words in one charset are decoded together, so a character split
/// across two words survives. Malformed words are left as they are.
pub fn decode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut run: Option<Word> = None;
    let mut rest = text;
    while let Some((start, word, len)) = next_word(rest) {
        let between = &rest[..start];
        if run.is_none() || !between.chars().all(char::is_whitespace) {
            flush(&mut out, run.take());
            out.push_str(between);
        }
        run = match run {
            Some(mut open) if open.charset.eq_ignore_ascii_case(word.charset) => {
                open.bytes.extend(word.bytes);
                Some(open)
            }
            other => {
                flush(&mut out, other);
                Some(word)
            }
        };
        rest = &rest[start + len..];
    }
    flush(&mut out, run);
    out.push_str(rest);
    out
}

/// The payload of one encoded word (or of adjacent words in one charset).
struct Word<'a> {
    charset: &'a str,
    bytes: Vec<u8>,
}

fn flush(out: &mut String, run: Option<Word>) {
    if let Some(word) = run {
        out.push_str(&charset::decode(&word.bytes, Some(word.charset)));
    }
}

/// The first well-formed encoded word in `text`: its start, payload and length.
fn next_word(text: &str) -> Option<(usize, Word<'_>, usize)> {
    let mut from = 0;
    while let Some(found) = text[from..].find("=?") {
        let start = from + found;
        if let Some((word, len)) = parse_word(&text[start..]) {
            return Some((start, word, len));
        }
        from = start + 2;
    }
    None
}

/// An encoded word at the start of `text` (which starts with `=?`), and its length.
fn parse_word(text: &str) -> Option<(Word<'_>, usize)> {
    let (charset, after) = text[2..].split_once('?')?;
    let (encoding, after) = after.split_once('?')?;
    let payload = &after[..after.find("?=")?];
    if charset.is_empty() || charset.contains(char::is_whitespace) {
        return None;
    }
    if payload.contains(char::is_whitespace) {
        return None;
    }
    let bytes = match encoding {
        "B" | "b" => LENIENT.decode(payload).ok()?,
        "Q" | "q" => q_decode(payload),
        _ => return None,
    };
    let len = 2 + charset.len() + 1 + encoding.len() + 1 + payload.len() + 2;
    // RFC 2231 lets a language follow the charset: `UTF-8*de`.
    let charset = charset.split('*').next().unwrap_or(charset);
    Some((Word { charset, bytes }, len))
}

/// The Q encoding: `_` is a space, `=XX` a byte in hex, anything else itself.
fn q_decode(payload: &str) -> Vec<u8> {
    let bytes = payload.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |at: usize| bytes.get(at).and_then(|&b| char::from(b).to_digit(16));
        match (bytes[i], hex(i + 1), hex(i + 2)) {
            (b'_', _, _) => out.push(b' '),
            (b'=', Some(high), Some(low)) => {
                out.extend(u8::try_from(high << 4 | low).ok());
                i += 2;
            }
            (byte, _, _) => out.push(byte),
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_encoded_words() {
        let cases = [
            (
                "=?UTF-8?B?w5xiZXJ3ZWlzdW5nIGJlc3TDpHRpZ3Q=?=",
                "Überweisung bestätigt",
            ),
            ("=?ISO-8859-1?Q?R=E9sum=E9_du_mois?=", "Résumé du mois"),
            ("=?iso-8859-1?q?caf=E9?= ist offen", "café ist offen"),
            ("Re: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=", "Re: Grüße"),
            // Adjacent words join without the whitespace between them.
            (
                "=?UTF-8?B?w5xiZXI=?= =?UTF-8?B?d2Vpc3VuZw==?=",
                "Überweisung",
            ),
            ("a =?UTF-8?B?w5w=?=\t =?UTF-8?B?w5w=?= b", "a ÜÜ b"),
            // Words in different charsets still join.
            ("=?ISO-8859-1?Q?=E9?= =?UTF-8?Q?=C3=A9?=", "éé"),
            // A character split across two words.
            ("=?UTF-8?Q?caf=C3?= =?UTF-8?Q?=A9?=", "café"),
            ("=?UTF-8?B?w5w?=", "Ü"),
            ("=?UTF-8*de?Q?Hallo?=", "Hallo"),
            ("=?windows-1252?Q?=80_5?=", "€ 5"),
            ("=?KOI8-R?B?8NLJ18XU?=", "Привет"),
            ("=?x-no-such-charset?Q?caf=C3=A9?=", "café"),
            ("=?UTF-8?Q?a=ZZb=?=", "a=ZZb="),
            ("=?UTF-8?B??=", ""),
            // Not encoded words: left as they are.
            ("plain text", "plain text"),
            ("=?UTF-8?B?@@@?=", "=?UTF-8?B?@@@?="),
            ("=?UTF-8?X?abc?=", "=?UTF-8?X?abc?="),
            ("=?UTF-8?Q?two words?=", "=?UTF-8?Q?two words?="),
            ("=? x ?Q?abc?=", "=? x ?Q?abc?="),
            ("=?", "=?"),
            ("=?UTF-8?B?", "=?UTF-8?B?"),
            ("2 =?= 3", "2 =?= 3"),
        ];
        for (input, expected) in cases {
            assert_eq!(decode(input), expected, "input {input:?}");
        }
    }

    #[test]
    fn encoded_words_are_short_and_decode_back() {
        let cases = [
            "Überweisung bestätigt",
            "Pérez, Ana",
            "€",
            "日本語のとても長い件名は複数のエンコードされた単語に分割されます。日本語のとても長い件名",
            "🎉🎉🎉🎉🎉🎉🎉🎉🎉🎉🎉🎉🎉🎉🎉🎉🎉🎉🎉🎉",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaé",
        ];
        for text in cases {
            let words = encode(text);
            assert!(!words.is_empty());
            for word in &words {
                assert!(word.len() <= 68, "{word} is {} long", word.len());
                assert!(word.starts_with("=?UTF-8?B?") && word.ends_with("?="));
            }
            assert_eq!(decode(&words.join("\r\n ").replace("\r\n", "")), text);
            assert_eq!(decode(&words.join(" ")), text);
        }
        assert_eq!(encode("").len(), 0);
        assert_eq!(encode(&"é".repeat(100)).len(), 5);
    }

    #[test]
    fn knows_what_needs_encoding() {
        let cases = [
            ("Invoice 42", false),
            ("Tab\tseparated", false),
            ("", false),
            ("Résumé", true),
            ("bell\u{7}", true),
            ("looks =?like?= a word", true),
        ];
        for (text, expected) in cases {
            assert_eq!(needs_encoding(text), expected, "{text:?}");
        }
    }
}
