//! The import's report: one line per row of the product (imported, already
//! imported, skipped or failed, each with its reason and what was changed on
//! the way), then the counts; or the same as JSON.

use crate::ops::output::printable;
use serde::Serialize;

/// What became of one row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", content = "reason", rename_all = "snake_case")]
pub enum Outcome {
    Imported,
    AlreadyImported,
    Skipped(String),
    Failed(String),
}

/// One row of the product.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub table: &'static str,
    pub id: String,
    pub user_id: Option<String>,
    /// Its slug, type or name.
    pub what: String,
    #[serde(flatten)]
    pub outcome: Outcome,
    /// What was changed on the way (dropped ids or fields, a default).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl Entry {
    /// A row about to be imported.
    pub fn new(table: &'static str, id: &str, user_id: Option<&str>, what: &str) -> Self {
        Self {
            table,
            id: id.to_string(),
            user_id: user_id.map(str::to_string),
            what: what.to_string(),
            outcome: Outcome::Imported,
            notes: Vec::new(),
        }
    }
}

/// The counts of a run.
#[derive(Debug, Default, Serialize)]
pub struct Counts {
    pub imported: usize,
    pub already_imported: usize,
    pub skipped: usize,
    pub failed: usize,
}

/// Every row's entry and the counts.
#[derive(Debug, Serialize)]
pub struct Report {
    pub entries: Vec<Entry>,
    pub counts: Counts,
}

impl Report {
    pub fn new(entries: Vec<Entry>) -> Self {
        let mut counts = Counts::default();
        for e in &entries {
            *match e.outcome {
                Outcome::Imported => &mut counts.imported,
                Outcome::AlreadyImported => &mut counts.already_imported,
                Outcome::Skipped(_) => &mut counts.skipped,
                Outcome::Failed(_) => &mut counts.failed,
            } += 1;
        }
        Self { entries, counts }
    }

    /// The report as text: a line per row, then the counts. Every string
    /// from the product is [`printable`](crate::ops::output::printable): none can end a line or drive the
    /// terminal, so none can forge another line.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for e in &self.entries {
            let (word, reason) = match &e.outcome {
                Outcome::Imported => ("imported", None),
                Outcome::AlreadyImported => ("already imported", None),
                Outcome::Skipped(why) => ("skipped", Some(why)),
                Outcome::Failed(why) => ("failed", Some(why)),
            };
            let user = e
                .user_id
                .as_deref()
                .map(|u| format!(", user {}", printable(u)))
                .unwrap_or_default();
            out.push_str(&format!(
                "{word:<16} {} {} ({}{user})",
                e.table,
                printable(&e.id),
                printable(&e.what)
            ));
            if let Some(why) = reason {
                out.push_str(&format!(": {}", printable(why)));
            }
            for note in &e.notes {
                out.push_str(&format!("; {}", printable(note)));
            }
            out.push('\n');
        }
        let c = &self.counts;
        out.push_str(&format!(
            "{} imported, {} already imported, {} skipped, {} failed\n",
            c.imported, c.already_imported, c.skipped, c.failed
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_string_from_the_product_cannot_forge_a_line_or_drive_the_terminal() {
        let forged = "x\r\n\u{1b}[2Kimported         profiles prof_fake (fake)\u{9b}\u{202e}";
        let mut entry = Entry::new("profiles", forged, Some(forged), forged);
        entry.outcome = Outcome::Skipped(forged.into());
        entry.notes.push(forged.into());
        let text = Report::new(vec![entry]).text();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{text:?}"
        );
        assert!(!text.contains('\u{202e}'));
        assert!(text.contains(r"x\r\n\u{1b}[2Kimported"), "{text}");
    }
}
