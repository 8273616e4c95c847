//! HTML mail bodies as readable plain text: a small, forgiving tag scanner (no DOM),
//! for newsletters, receipts and replies rather than for web pages.

use std::borrow::Cow;

/// Elements that end a paragraph: a blank line before and after.
const PARAGRAPHS: &[&str] = &["p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote"];

/// Elements that start and end on a line of their own.
const BLOCKS: &[&str] = &[
    "div",
    "tr",
    "li",
    "ul",
    "ol",
    "dl",
    "dt",
    "dd",
    "table",
    "caption",
    "hr",
    "section",
    "article",
    "header",
    "footer",
    "nav",
    "aside",
    "main",
    "center",
    "address",
    "figure",
    "figcaption",
    "form",
    "fieldset",
];

/// Readable text from an HTML body: tags dropped (`script`, `style`, `head` and
/// comments with their contents), line breaks for `br` and block elements, `- `
/// before list items, `text (url)` for links, entities decoded, whitespace
/// collapsed, at most one blank line in a row. Tolerates broken HTML: a tag
/// that never ends makes the rest of the body text. Never panics, and takes
/// time linear in the input, whatever it holds (one pass; no search for an
/// end that is known to be missing runs twice).
pub fn html_to_text(html: &str) -> String {
    let mut writer = Writer::default();
    let mut raw_text = RawText::default();
    let mut rest = html;
    while let Some(lt) = rest.find('<') {
        writer.text(&decode_entities(&rest[..lt]));
        rest = &rest[lt..];
        rest = match markup(rest) {
            Markup::Skip(len) => &rest[len..],
            Markup::Tag(tag) => {
                writer.tag(&tag);
                raw_text.skip(&tag, &rest[tag.len..])
            }
            Markup::Text => {
                writer.text("<");
                &rest[1..]
            }
            Markup::Unclosed => break,
        };
    }
    writer.text(&decode_entities(rest));
    writer.finish()
}

/// What a `<` starts.
enum Markup {
    /// A comment, doctype or processing instruction of this many bytes.
    Skip(usize),
    Tag(Tag),
    /// Not markup after all: a literal `<`.
    Text,
    /// Markup that the input ends inside of: it and what follows are text.
    Unclosed,
}

/// A start or end tag, its name lowercased.
struct Tag {
    name: String,
    closing: bool,
    attributes: Vec<(String, String)>,
    /// Bytes from `<` to `>` inclusive.
    len: usize,
}

impl Tag {
    fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// Reads the markup at the start of `text`, which starts with `<`.
fn markup(text: &str) -> Markup {
    if let Some(comment) = text.strip_prefix("<!--") {
        return Markup::Skip(comment.find("-->").map_or(text.len(), |i| i + 7));
    }
    if text.starts_with("<!") || text.starts_with("<?") {
        return text
            .find('>')
            .map_or(Markup::Unclosed, |i| Markup::Skip(i + 1));
    }
    parse_tag(text)
}

/// The tag at the start of `text`: [`Markup::Text`] if it is not one,
/// [`Markup::Unclosed`] if it never ends. Works on bytes but cuts only at
/// ASCII delimiters, so slices stay on char boundaries.
fn parse_tag(text: &str) -> Markup {
    let bytes = text.as_bytes();
    let closing = bytes.get(1) == Some(&b'/');
    let mut i = 1 + usize::from(closing);
    match bytes.get(i) {
        None => return Markup::Unclosed,
        Some(b) if !b.is_ascii_alphabetic() => return Markup::Text,
        Some(_) => {}
    }
    let start = i;
    while bytes
        .get(i)
        .is_some_and(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b':'))
    {
        i += 1;
    }
    let name = text[start..i].to_ascii_lowercase();
    let mut attributes = Vec::new();
    loop {
        while bytes
            .get(i)
            .is_some_and(|b| b.is_ascii_whitespace() || *b == b'/')
        {
            i += 1;
        }
        match bytes.get(i) {
            None => return Markup::Unclosed,
            Some(b'>') => {
                return Markup::Tag(Tag {
                    name,
                    closing,
                    attributes,
                    len: i + 1,
                });
            }
            Some(_) => {}
        }
        let key_start = i;
        i += 1;
        while bytes
            .get(i)
            .is_some_and(|b| !b.is_ascii_whitespace() && !matches!(b, b'=' | b'>' | b'/'))
        {
            i += 1;
        }
        let key = text[key_start..i].to_ascii_lowercase();
        let Some(value) = attribute_value(text, &mut i) else {
            return Markup::Unclosed;
        };
        attributes.push((key, value));
    }
}

/// The value after an attribute name at `*at` (empty if there is no `=`), moving
/// `*at` past it; `None` if a quoted value never closes.
fn attribute_value(text: &str, at: &mut usize) -> Option<String> {
    let bytes = text.as_bytes();
    let skip_space = |mut i: usize| {
        while bytes.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        i
    };
    let mut i = skip_space(*at);
    if bytes.get(i) != Some(&b'=') {
        *at = i;
        return Some(String::new());
    }
    i = skip_space(i + 1);
    let value = match bytes.get(i) {
        Some(&quote @ (b'"' | b'\'')) => {
            let end = i + 1 + text[i + 1..].find(char::from(quote))?;
            let value = &text[i + 1..end];
            i = end + 1;
            value
        }
        _ => {
            let start = i;
            while bytes
                .get(i)
                .is_some_and(|b| !b.is_ascii_whitespace() && *b != b'>')
            {
                i += 1;
            }
            &text[start..i]
        }
    };
    *at = i;
    Some(decode_entities(value).into_owned())
}

/// Skips the content of elements that is never shown, remembering which of
/// their end tags the rest of the input lacks, so that no search for one
/// runs twice over the same text (`<script><script>…` stays linear).
#[derive(Default)]
struct RawText {
    absent: Vec<&'static str>,
}

impl RawText {
    /// After the start tag of an element whose content is never shown, what follows
    /// that content; `after` itself when the content never ends.
    fn skip<'a>(&mut self, tag: &Tag, after: &'a str) -> &'a str {
        if tag.closing {
            return after;
        }
        let ends: &[&'static str] = match tag.name.as_str() {
            "script" => &["</script"],
            "style" => &["</style"],
            "title" => &["</title"],
            "head" => &["</head", "<body"],
            _ => return after,
        };
        let wanted: Vec<&str> = ends
            .iter()
            .copied()
            .filter(|end| !self.absent.contains(end))
            .collect();
        if wanted.is_empty() {
            return after;
        }
        match find_first_ignore_case(after, &wanted) {
            Some(i) => &after[i..],
            None => {
                self.absent.extend(wanted);
                after
            }
        }
    }
}

/// Where any of the ASCII `needles` first occurs in `haystack`, ignoring
/// ASCII case: one pass that stops at the first match.
fn find_first_ignore_case(haystack: &str, needles: &[&str]) -> Option<usize> {
    let bytes = haystack.as_bytes();
    (0..bytes.len()).find(|&i| {
        needles.iter().any(|needle| {
            bytes
                .get(i..i + needle.len())
                .is_some_and(|window| window.eq_ignore_ascii_case(needle.as_bytes()))
        })
    })
}

/// The text being built, with whitespace collapsed as it arrives.
#[derive(Default)]
struct Writer {
    out: String,
    /// Whitespace seen since the last character written.
    space: bool,
    /// Depth of `<pre>` elements, inside which whitespace is kept.
    pre: usize,
    link: Option<Link>,
}

/// An open `<a>`: its target and where its text starts in the output.
struct Link {
    href: String,
    start: usize,
}

impl Writer {
    fn text(&mut self, text: &str) {
        for c in text.chars().filter(|&c| !is_invisible(c)) {
            if self.pre > 0 {
                match c {
                    '\r' => {}
                    '\u{a0}' => self.out.push(' '),
                    c => self.out.push(c),
                }
            } else if c.is_whitespace() {
                self.space = true;
            } else {
                if self.space && !self.out.is_empty() && !self.out.ends_with(['\n', ' ']) {
                    self.out.push(' ');
                }
                self.space = false;
                self.out.push(c);
            }
        }
    }

    fn tag(&mut self, tag: &Tag) {
        match (tag.name.as_str(), tag.closing) {
            ("br", _) => {
                self.space = false;
                self.out.push('\n');
            }
            ("li", false) => {
                self.breaks(1);
                self.out.push_str("- ");
            }
            ("a", false) => {
                self.close_link();
                self.link = tag.attribute("href").map(|href| Link {
                    href: href.trim().to_owned(),
                    start: self.out.len(),
                });
            }
            ("a", true) => self.close_link(),
            ("pre", closing) => {
                self.breaks(1);
                self.pre = if closing {
                    self.pre.saturating_sub(1)
                } else {
                    self.pre + 1
                };
            }
            ("td" | "th", false) => self.space = true,
            (name, _) if PARAGRAPHS.contains(&name) => self.breaks(2),
            (name, _) if BLOCKS.contains(&name) => self.breaks(1),
            _ => {}
        }
    }

    /// Ends the current line, with `count - 1` blank lines after it at least.
    fn breaks(&mut self, count: usize) {
        self.space = false;
        if self.out.is_empty() {
            return;
        }
        // At most `count` looked at: a `<pre>` may have left many newlines.
        let have = self
            .out
            .bytes()
            .rev()
            .take(count)
            .take_while(|&b| b == b'\n')
            .count();
        for _ in have..count {
            self.out.push('\n');
        }
    }

    /// Appends ` (url)` after a link's text when the url adds something.
    fn close_link(&mut self) {
        let Some(link) = self.link.take() else {
            return;
        };
        let text = self.out[link.start..].trim();
        if !text.is_empty() && shows_target(&link.href, text) {
            self.space = true;
            self.text(&format!("({})", link.href));
        }
    }

    fn finish(mut self) -> String {
        self.close_link();
        tidy(&self.out)
    }
}

/// Whether a link's target is worth showing after its text.
fn shows_target(href: &str, text: &str) -> bool {
    let lower = href.to_ascii_lowercase();
    let hidden = href.is_empty()
        || href.starts_with('#')
        || lower.starts_with("mailto:")
        || lower.starts_with("javascript:");
    !hidden && bare_url(href) != bare_url(text)
}

/// A URL without its scheme and trailing slash, lowercased, for comparing with link text.
fn bare_url(url: &str) -> String {
    let lower = url.trim().to_ascii_lowercase();
    let bare = ["https://", "http://", "tel:"]
        .iter()
        .find_map(|scheme| lower.strip_prefix(scheme))
        .unwrap_or(&lower);
    bare.trim_end_matches('/').to_owned()
}

/// Characters mail templates use for invisible padding.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{ad}' | '\u{34f}' | '\u{200b}' | '\u{200c}' | '\u{2060}' | '\u{feff}'
    )
}

/// Lines without trailing spaces, at most one blank line in a row, none at either end.
fn tidy(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank = false;
    for line in text.lines().map(str::trim_end) {
        if line.is_empty() {
            blank = true;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank { "\n\n" } else { "\n" });
        }
        blank = false;
        out.push_str(line);
    }
    out
}

/// `text` with character references decoded; unknown ones are left as they are.
fn decode_entities(text: &str) -> Cow<'_, str> {
    if !text.contains('&') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        match entity(rest) {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// The reference at the start of `text` (`&name;`, `&#233;`, `&#xE9;`) and its length.
fn entity(text: &str) -> Option<(char, usize)> {
    let semicolon = text.bytes().take(12).position(|b| b == b';')?;
    let name = &text[1..semicolon];
    let c = match name.strip_prefix('#') {
        Some(number) => numeric_entity(number)?,
        None => named_entity(name)?,
    };
    Some((c, semicolon + 1))
}

fn numeric_entity(number: &str) -> Option<char> {
    let (digits, radix) = match number.strip_prefix(['x', 'X']) {
        Some(hex) => (hex, 16),
        None => (number, 10),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let code = u32::from_str_radix(digits, radix).ok()?;
    Some(
        char::from_u32(code)
            .filter(|&c| c != '\0')
            .unwrap_or('\u{fffd}'),
    )
}

fn named_entity(name: &str) -> Option<char> {
    let c = match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" => '\u{a0}',
        "shy" => '\u{ad}',
        "zwnj" => '\u{200c}',
        "zwj" => '\u{200d}',
        "ensp" | "emsp" | "thinsp" => ' ',
        "copy" => '©',
        "reg" => '®',
        "trade" => '™',
        "euro" => '€',
        "pound" => '£',
        "yen" => '¥',
        "cent" => '¢',
        "sect" => '§',
        "para" => '¶',
        "deg" => '°',
        "plusmn" => '±',
        "times" => '×',
        "divide" => '÷',
        "middot" => '·',
        "bull" => '•',
        "hellip" => '…',
        "mdash" => '—',
        "ndash" => '–',
        "lsquo" => '‘',
        "rsquo" => '’',
        "sbquo" => '‚',
        "ldquo" => '“',
        "rdquo" => '”',
        "bdquo" => '„',
        "laquo" => '«',
        "raquo" => '»',
        "iexcl" => '¡',
        "iquest" => '¿',
        "rarr" => '→',
        "larr" => '←',
        _ => letter_entity(name)?,
    };
    Some(c)
}

/// Accented Latin letters, as in `&eacute;` and `&Uuml;`.
fn letter_entity(name: &str) -> Option<char> {
    let c = match name {
        "aacute" => 'á',
        "Aacute" => 'Á',
        "agrave" => 'à',
        "Agrave" => 'À',
        "acirc" => 'â',
        "auml" => 'ä',
        "Auml" => 'Ä',
        "aring" => 'å',
        "atilde" => 'ã',
        "aelig" => 'æ',
        "ccedil" => 'ç',
        "Ccedil" => 'Ç',
        "eacute" => 'é',
        "Eacute" => 'É',
        "egrave" => 'è',
        "Egrave" => 'È',
        "ecirc" => 'ê',
        "euml" => 'ë',
        "iacute" => 'í',
        "igrave" => 'ì',
        "icirc" => 'î',
        "iuml" => 'ï',
        "ntilde" => 'ñ',
        "Ntilde" => 'Ñ',
        "oacute" => 'ó',
        "Oacute" => 'Ó',
        "ograve" => 'ò',
        "ocirc" => 'ô',
        "ouml" => 'ö',
        "Ouml" => 'Ö',
        "otilde" => 'õ',
        "oslash" => 'ø',
        "Oslash" => 'Ø',
        "uacute" => 'ú',
        "Uacute" => 'Ú',
        "ugrave" => 'ù',
        "ucirc" => 'û',
        "uuml" => 'ü',
        "Uuml" => 'Ü',
        "yacute" => 'ý',
        "szlig" => 'ß',
        _ => return None,
    };
    Some(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flattens_html_to_readable_text() {
        let cases = [
            (
                "<p>Hello <b>world</b></p><p>Second</p>",
                "Hello world\n\nSecond",
            ),
            ("a<br>b<br/>c<BR >d", "a\nb\nc\nd"),
            ("a<br><br><br><br>b", "a\n\nb"),
            ("<h1>Title</h1>Body", "Title\n\nBody"),
            (
                "<div>a</div><div></div><div></div><p></p><p>b</p>",
                "a\n\nb",
            ),
            ("<ul><li>One</li><li>Two</li></ul>", "- One\n- Two"),
            ("<li>a<li>b", "- a\n- b"),
            (
                "Intro<ol><li> spaced </li></ol>Outro",
                "Intro\n- spaced\nOutro",
            ),
            (
                "<table><tr><td>Amount</td><td>12.00</td></tr><tr><th>Fee</th><td>0.50</td></tr></table>",
                "Amount 12.00\nFee 0.50",
            ),
            ("a<hr>b", "a\nb"),
            ("a   b\n\n\t c", "a b c"),
            ("x<pre>  a\n    b</pre>y", "x\n  a\n    b\ny"),
            (
                "<head><title>T</title><style>p{color:red}</style></head><body>Hi</body>",
                "Hi",
            ),
            ("<html><head><meta charset=utf-8><body>Hi", "Hi"),
            ("<script>if (a<b) alert('<p>x</p>')</script>Text", "Text"),
            ("<STYLE>.x{}</STYLE >Text", "Text"),
            ("<!-- hidden <p>x</p> -->Shown", "Shown"),
            ("<!DOCTYPE html><html>Hi</html>", "Hi"),
            ("<?xml version=\"1.0\"?>Hi", "Hi"),
            ("<o:p>Outlook</o:p>", "Outlook"),
            ("<p class=\"a>b\" data-x='it''s'>Quoted</p>", "Quoted"),
            ("1 < 2 and 3 > 2", "1 < 2 and 3 > 2"),
            ("<p>unclosed <b>bold <i>italic", "unclosed bold italic"),
            (
                "Preheader&zwnj;&nbsp;&zwnj;&nbsp;&#847; text",
                "Preheader text",
            ),
        ];
        for (html, expected) in cases {
            assert_eq!(html_to_text(html), expected, "html {html:?}");
        }
    }

    #[test]
    fn keeps_link_targets_that_add_something() {
        let cases = [
            (
                "<a href=\"https://x.org/pay\">Pay now</a>",
                "Pay now (https://x.org/pay)",
            ),
            (
                "<A HREF='https://x.org'>X</A> then",
                "X (https://x.org) then",
            ),
            (
                "<a href=\"https://x.org/?a=1&amp;b=2\">Go</a>",
                "Go (https://x.org/?a=1&b=2)",
            ),
            (
                "<a href=\"https://x.org\">https://x.org</a>",
                "https://x.org",
            ),
            ("<a href=\"https://x.org/\">x.org</a>", "x.org"),
            ("<a href=\"mailto:a@b.c\">Write us</a>", "Write us"),
            ("<a href=\"#top\">Top</a>", "Top"),
            ("<a name=\"top\">Anchor</a>", "Anchor"),
            (
                "<a href=\"https://x.org\"><img src=logo.png></a>Text",
                "Text",
            ),
            (
                "<a href=https://x.org>one<a href=https://y.org>two",
                "one (https://x.org)two (https://y.org)",
            ),
            (
                "<p><a href=\"https://x.org\">Read</a>.</p>",
                "Read (https://x.org).",
            ),
        ];
        for (html, expected) in cases {
            assert_eq!(html_to_text(html), expected, "html {html:?}");
        }
    }

    #[test]
    fn decodes_entities() {
        let cases = [
            (
                "Fish &amp; chips &lt;3 &quot;q&quot; &#39;s&apos; caf&#233; caf&#xE9; caf&#XE9;",
                "Fish & chips <3 \"q\" 's' café café café",
            ),
            (
                "&eacute;&Uuml;&euro;&copy;&mdash;&hellip;&rsquo;",
                "éÜ€©—…’",
            ),
            ("a&nbsp;&nbsp;b", "a b"),
            (
                "&bogus; &amp &#xZZ; &#; &#99999999999; &#+5;",
                "&bogus; &amp &#xZZ; &#; &#99999999999; &#+5;",
            ),
            ("&#0; &#xD800;", "\u{fffd} \u{fffd}"),
            ("&&amp;;", "&&;"),
        ];
        for (html, expected) in cases {
            assert_eq!(html_to_text(html), expected, "html {html:?}");
        }
    }

    #[test]
    fn survives_broken_html() {
        let cases = [
            ("<", "<"),
            ("<div", "<div"),
            ("<a href=\"x", "<a href=\"x"),
            ("</", "</"),
            ("<<<>>>", "<<<>>>"),
            ("<é>", "<é>"),
            ("<aé b>text</aé>", "text"),
            ("<!--", ""),
            ("<!", "<!"),
            ("<script>never closed", "never closed"),
            ("<a href=>empty</a>", "empty"),
            ("</a></li></pre></pre>x", "x"),
            ("", ""),
        ];
        for (html, expected) in cases {
            assert_eq!(html_to_text(html), expected, "html {html:?}");
        }
    }

    /// The one timing assertion: hostile bodies of 1 MB against a normal one
    /// measured here, with a factor and slack no loaded machine reaches
    /// unless the work grows faster than the input (a quadratic scan of 1 MB
    /// takes minutes).
    #[test]
    fn hostile_bodies_take_about_as_long_as_a_normal_one() {
        const SIZE: usize = 1 << 20;
        let timed = |html: String| {
            let (done, finished) = std::sync::mpsc::channel();
            let started = std::time::Instant::now();
            std::thread::spawn(move || done.send(html_to_text(&html)).unwrap());
            (started, finished)
        };
        let (started, finished) = timed(normal_mail(SIZE));
        let text = finished.recv().unwrap();
        let normal = started.elapsed();
        assert!(
            text.contains("Pay now (https://x.org/pay/"),
            "{}",
            &text[..200]
        );
        let budget = normal * 20 + std::time::Duration::from_secs(1);
        let hostile = [
            ("unclosed <a", "<a".repeat(SIZE / 2)),
            ("unclosed <!", "<!".repeat(SIZE / 2)),
            ("unclosed <script>", "<script>".repeat(SIZE / 8)),
            ("unclosed quotes", "<a b=\"".repeat(SIZE / 6)),
            (
                "heads without a body",
                "<head></head>".repeat(SIZE / 13) + "<body>",
            ),
            (
                "blocks after a long <pre>",
                format!(
                    "<pre>{}</pre>{}",
                    "\n".repeat(SIZE / 2),
                    "<div>".repeat(SIZE / 10)
                ),
            ),
        ];
        for (what, html) in hostile {
            let (started, finished) = timed(html);
            assert!(
                finished.recv_timeout(budget).is_ok(),
                "{what}: not done after {budget:?}, a normal mail took {normal:?}"
            );
            eprintln!("{what}: {:?} (normal {normal:?})", started.elapsed());
        }
    }

    /// About `size` bytes of a newsletter: paragraphs, links, entities, a table.
    fn normal_mail(size: usize) -> String {
        let mut html = String::from("<html><head><style>p{}</style></head><body>");
        let mut n = 0;
        while html.len() < size {
            n += 1;
            html += &format!(
                "<p class=\"x\">Dear customer &amp; friend, item {n} is <b>ready</b>.<br>\
                 <a href=\"https://x.org/pay/{n}\">Pay now</a></p>\
                 <table><tr><td>Amount</td><td>{n}.00&nbsp;&euro;</td></tr></table>\n"
            );
        }
        html + "</body></html>"
    }

    #[test]
    fn never_panics_on_any_prefix() {
        let sample = "<!DOCTYPE html><html><head><style>p{}</style></head><body>\
            <p class='x' title=\"a>b\">Grüße &amp; caf&#233; &#x1F600; &eacute</p>\
            <ul><li><a href=\"https://x.org/?a=1&amp;b=2\">Link ✓</a></li><li>日本語</li></ul>\
            <pre> keep  me </pre><!-- note --><table><tr><td>1</td><td>2</td></tr></table>\
            <br/>1 < 2 &bogus; <a href=mailto:a@b.c>mail</a></body></html>";
        let bytes = sample.as_bytes();
        for end in 0..=bytes.len() {
            let prefix = String::from_utf8_lossy(&bytes[..end]);
            let text = html_to_text(&prefix);
            assert!(!text.contains("\n\n\n"), "{text:?}");
            assert!(text.lines().all(|line| line.trim_end() == line), "{text:?}");
        }
        for start in 0..=bytes.len() {
            html_to_text(&String::from_utf8_lossy(&bytes[start..]));
        }
    }
}
