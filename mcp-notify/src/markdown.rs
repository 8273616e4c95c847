//! The markdown an agent writes, rendered for each channel: Slack mrkdwn,
//! Telegram HTML, email HTML, and plain text.
//!
//! Agents write a small dialect: `**bold**`, `*italic*` or `_italic_`,
//! `` `code` ``, `[text](https://...)`, fenced code blocks, `# headings` and
//! `- bullets`. Everything else is text, escaped for the target.

/// A run of inline text.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Span {
    Text(String),
    Bold(String),
    Italic(String),
    Code(String),
    Link { text: String, url: String },
}

/// A line, or a fenced code block.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Block {
    Line {
        spans: Vec<Span>,
        heading: bool,
        bullet: bool,
    },
    Code(String),
}

fn parse(markdown: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut fence: Option<Vec<&str>> = None;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            match fence.take() {
                Some(code) => blocks.push(Block::Code(code.join("\n"))),
                None => fence = Some(Vec::new()),
            }
            continue;
        }
        if let Some(code) = &mut fence {
            code.push(line);
            continue;
        }
        let trimmed = line.trim_start();
        let (heading, rest) = match trimmed.strip_prefix('#') {
            Some(_) => (true, trimmed.trim_start_matches('#').trim_start()),
            None => (false, line),
        };
        let (bullet, rest) = match rest
            .trim_start()
            .strip_prefix("- ")
            .or_else(|| rest.trim_start().strip_prefix("* "))
        {
            Some(item) if !heading => (true, item),
            _ => (false, rest),
        };
        blocks.push(Block::Line {
            spans: inline(rest),
            heading,
            bullet,
        });
    }
    if let Some(code) = fence {
        blocks.push(Block::Code(code.join("\n")));
    }
    blocks
}

/// Splits one line into spans; an unclosed marker is text.
fn inline(line: &str) -> Vec<Span> {
    let mut spans = Vec::new();
    let mut text = String::new();
    let mut rest = line;
    while let Some(c) = rest.chars().next() {
        let closed = |marker: &str| -> Option<(String, usize)> {
            let body = rest.strip_prefix(marker)?;
            let end = body.find(marker)?;
            (end > 0 && !body[..end].starts_with(' '))
                .then(|| (body[..end].to_string(), marker.len() * 2 + end))
        };
        let found = match c {
            '*' if rest.starts_with("**") => closed("**").map(|(s, n)| (Span::Bold(s), n)),
            '_' if rest.starts_with("__") => closed("__").map(|(s, n)| (Span::Bold(s), n)),
            '*' => closed("*").map(|(s, n)| (Span::Italic(s), n)),
            '_' if text.is_empty() || text.ends_with([' ', '(']) => {
                closed("_").map(|(s, n)| (Span::Italic(s), n))
            }
            '`' => closed("`").map(|(s, n)| (Span::Code(s), n)),
            '[' => link(rest),
            _ => None,
        };
        match found {
            Some((span, used)) => {
                if !text.is_empty() {
                    spans.push(Span::Text(std::mem::take(&mut text)));
                }
                spans.push(span);
                rest = &rest[used..];
            }
            None => {
                text.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    if !text.is_empty() {
        spans.push(Span::Text(text));
    }
    spans
}

/// `[text](url)` with an http(s) or mailto URL.
fn link(rest: &str) -> Option<(Span, usize)> {
    let close = rest.find("](")?;
    let text = &rest[1..close];
    let after = &rest[close + 2..];
    let end = after.find(')')?;
    let url = &after[..end];
    let allowed = ["https://", "http://", "mailto:"]
        .iter()
        .any(|p| url.starts_with(p));
    (allowed && !text.is_empty() && !url.contains(char::is_whitespace)).then(|| {
        (
            Span::Link {
                text: text.to_string(),
                url: url.to_string(),
            },
            close + 2 + end + 1,
        )
    })
}

/// Escapes `<`, `>` and `&` (and `"` for attributes).
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// Slack's escaping: only `&`, `<` and `>`.
fn escape_slack(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Slack mrkdwn: `*bold*`, `_italic_`, `` `code` ``, `<url|text>`.
pub fn to_slack(markdown: &str) -> String {
    render(
        markdown,
        &|span| match span {
            Span::Text(t) => escape_slack(t),
            Span::Bold(t) => format!("*{}*", escape_slack(t)),
            Span::Italic(t) => format!("_{}_", escape_slack(t)),
            Span::Code(t) => format!("`{}`", escape_slack(t)),
            Span::Link { text, url } => format!("<{}|{}>", escape_slack(url), escape_slack(text)),
        },
        &|code| format!("```\n{}\n```", escape_slack(code)),
        &|h| format!("*{h}*"),
    )
}

/// Telegram's HTML parse mode: `<b>`, `<i>`, `<code>`, `<pre>`, `<a>`.
pub fn to_telegram_html(markdown: &str) -> String {
    render(
        markdown,
        &html_span,
        &|code| format!("<pre>{}</pre>", escape_html(code)),
        &|h| format!("<b>{h}</b>"),
    )
}

/// The HTML part of an email.
pub fn to_email_html(markdown: &str) -> String {
    let body = render(
        markdown,
        &html_span,
        &|code| {
            format!(
                "<pre style=\"background:#f4f4f4;padding:8px\">{}</pre>",
                escape_html(code)
            )
        },
        &|h| format!("<strong style=\"font-size:1.1em\">{h}</strong>"),
    );
    let lines: Vec<String> = body.lines().map(|l| format!("{l}<br>")).collect();
    format!(
        "<!doctype html><html><body style=\"font-family:sans-serif;line-height:1.4\">{}</body></html>",
        lines.join("\n")
    )
}

/// Plain text: markers dropped, links as `text (url)`.
pub fn to_plain(markdown: &str) -> String {
    render(
        markdown,
        &|span| match span {
            Span::Text(t) | Span::Bold(t) | Span::Italic(t) | Span::Code(t) => t.clone(),
            Span::Link { text, url } => format!("{text} ({url})"),
        },
        &|code| code.to_string(),
        &|h| h.to_string(),
    )
}

fn html_span(span: &Span) -> String {
    match span {
        Span::Text(t) => escape_html(t),
        Span::Bold(t) => format!("<b>{}</b>", escape_html(t)),
        Span::Italic(t) => format!("<i>{}</i>", escape_html(t)),
        Span::Code(t) => format!("<code>{}</code>", escape_html(t)),
        Span::Link { text, url } => {
            format!("<a href=\"{}\">{}</a>", escape_html(url), escape_html(text))
        }
    }
}

fn render(
    markdown: &str,
    span: &dyn Fn(&Span) -> String,
    code: &dyn Fn(&str) -> String,
    heading: &dyn Fn(&str) -> String,
) -> String {
    parse(markdown)
        .iter()
        .map(|block| match block {
            Block::Code(text) => code(text),
            Block::Line {
                spans,
                heading: h,
                bullet,
            } => {
                let text: String = spans.iter().map(span).collect();
                let text = if *h { heading(&text) } else { text };
                if *bullet { format!("• {text}") } else { text }
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Splits `markdown` on line boundaries into pieces whose rendering by
/// `render` fits in `limit` characters; a code block cut in two is closed
/// and reopened, and a line too long on its own is cut where it must be.
pub fn split(markdown: &str, limit: usize, render: impl Fn(&str) -> String) -> Vec<String> {
    const FENCE: &str = "```";
    let piece = |lines: &[String], in_fence: bool| {
        let mut text = lines.join("\n");
        if in_fence {
            text.push_str("\n```");
        }
        text
    };
    let fits =
        |lines: &[String], in_fence: bool| render(&piece(lines, in_fence)).chars().count() <= limit;
    let mut pieces = Vec::new();
    let mut current: Vec<String> = Vec::new();
    let mut in_fence = false;
    for line in markdown.lines() {
        let fence_after = in_fence ^ line.trim_start().starts_with(FENCE);
        let mut candidate = current.clone();
        candidate.push(line.to_string());
        if fits(&candidate, fence_after) {
            (current, in_fence) = (candidate, fence_after);
            continue;
        }
        let reopened = |in_fence: bool| {
            if in_fence {
                vec![FENCE.to_string()]
            } else {
                Vec::new()
            }
        };
        if !current.is_empty() && current != reopened(in_fence) {
            pieces.push(piece(&current, in_fence));
        }
        current = reopened(in_fence);
        if in_fence && !fence_after && current.len() == 1 {
            // The block's closing fence, right after a cut: nothing to reopen.
            current.clear();
            in_fence = false;
            continue;
        }
        // The line alone does not fit: cut it at the longest prefix that does.
        let mut rest: Vec<char> = line.chars().collect();
        loop {
            let with = |n: usize| {
                let mut lines = current.clone();
                lines.push(rest[..n].iter().collect());
                lines
            };
            if fits(&with(rest.len()), fence_after) {
                current = with(rest.len());
                break;
            }
            let (mut lo, mut hi) = (1, rest.len());
            while lo < hi {
                let mid = (lo + hi).div_ceil(2);
                if fits(&with(mid), in_fence) {
                    lo = mid
                } else {
                    hi = mid - 1
                }
            }
            pieces.push(piece(&with(lo), in_fence));
            rest.drain(..lo);
            current = reopened(in_fence);
        }
        in_fence = fence_after;
    }
    if !current.is_empty() {
        pieces.push(current.join("\n"));
    }
    pieces.retain(|p| !p.trim().is_empty());
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "# Done\nThe **build** passed in _3 min_; see [the log](https://ci.example/1?a=b&c=d).\n- `cargo test` <ok>\n```\nfn main() {}\n```";

    #[test]
    fn slack_gets_mrkdwn_with_its_three_escapes() {
        assert_eq!(
            to_slack(SAMPLE),
            "*Done*\nThe *build* passed in _3 min_; see <https://ci.example/1?a=b&amp;c=d|the log>.\n• `cargo test` &lt;ok&gt;\n```\nfn main() {}\n```"
        );
    }

    #[test]
    fn telegram_gets_html_with_everything_else_escaped() {
        assert_eq!(
            to_telegram_html(SAMPLE),
            "<b>Done</b>\nThe <b>build</b> passed in <i>3 min</i>; see <a href=\"https://ci.example/1?a=b&amp;c=d\">the log</a>.\n• <code>cargo test</code> &lt;ok&gt;\n<pre>fn main() {}</pre>"
        );
        assert_eq!(
            to_telegram_html("a < b & <script>"),
            "a &lt; b &amp; &lt;script&gt;"
        );
    }

    #[test]
    fn raw_html_in_an_email_is_text() {
        let html = to_email_html("<img src=x onerror=alert(1)> **hi**");
        assert!(
            html.contains("&lt;img src=x onerror=alert(1)&gt; <b>hi</b>"),
            "{html}"
        );
        assert!(!html.contains("<img"));
    }

    #[test]
    fn plain_text_drops_the_markers() {
        assert_eq!(
            to_plain("**a** _b_ `c` [d](https://e.io)"),
            "a b c d (https://e.io)"
        );
    }

    #[test]
    fn unsafe_links_and_unclosed_markers_stay_text() {
        assert_eq!(
            to_plain("[x](javascript:alert(1)) 2*3 snake_case_name"),
            "[x](javascript:alert(1)) 2*3 snake_case_name"
        );
    }

    #[test]
    fn a_long_message_splits_on_lines_in_order() {
        let text: String = (0..300)
            .map(|i| format!("line {i} **bold** text\n"))
            .collect();
        let pieces = split(&text, 4096, to_telegram_html);
        assert!(pieces.len() > 1);
        for p in &pieces {
            assert!(to_telegram_html(p).chars().count() <= 4096);
        }
        assert_eq!(pieces.join("\n"), text.trim_end());
    }

    #[test]
    fn a_code_block_cut_in_two_is_closed_and_reopened() {
        let code: String = (0..50).map(|i| format!("let x{i} = {i};\n")).collect();
        let text = format!("before\n```\n{code}```\nafter");
        let pieces = split(&text, 300, to_telegram_html);
        assert!(pieces.len() > 2);
        for p in &pieces {
            let html = to_telegram_html(p);
            assert!(html.chars().count() <= 300, "{html}");
            assert_eq!(
                html.matches("<pre>").count(),
                html.matches("</pre>").count()
            );
        }
    }

    #[test]
    fn a_huge_line_of_escaped_characters_or_code_is_cut_to_fit() {
        let amps = "&".repeat(9_000);
        let pieces = split(&amps, 4096, to_telegram_html);
        assert!(
            pieces
                .iter()
                .all(|p| to_telegram_html(p).chars().count() <= 4096)
        );
        assert_eq!(pieces.concat(), amps);
        let code = format!("```\n{}\n```", "<".repeat(9_000));
        let pieces = split(&code, 4096, to_telegram_html);
        assert!(pieces.len() >= 3);
        for p in &pieces {
            let html = to_telegram_html(p);
            assert!(html.chars().count() <= 4096, "{}", html.len());
            assert!(
                html.starts_with("<pre>") && html.ends_with("</pre>"),
                "{html:.40}"
            );
        }
    }

    #[test]
    fn one_huge_line_is_cut() {
        let text = "x".repeat(10_000);
        let pieces = split(&text, 4096, to_telegram_html);
        assert!(pieces.iter().all(|p| p.chars().count() <= 4096));
        assert_eq!(pieces.concat(), text);
    }
}
