//! Where each key of a TOML document is: an index from dotted key paths (`door.relay`, `call.targets[1]`)
//! to byte spans and lines, built from toml's spanned parse tree. It turns a serde error's span into the
//! key it is about, and gives validation errors their line.

use std::ops::Range;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::Problem;

/// Most entries indexed (a config file has a few dozen; a hostile one cannot make us allocate more).
const MAX_ENTRIES: usize = 4_096;
/// Deepest nesting indexed.
const MAX_DEPTH: usize = 16;

#[derive(Debug, Clone, Default)]
struct Entry {
    path: String,
    key: Range<usize>,
    value: Range<usize>,
}

/// Key paths of one document and their spans.
#[derive(Debug, Clone, Default)]
pub(crate) struct SpanIndex {
    entries: Vec<Entry>,
    line_starts: Vec<usize>,
}

/// A key as written in a path: bare when it can be, quoted otherwise.
pub(crate) fn key_segment(key: &str) -> String {
    let bare = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        key.to_owned()
    } else {
        format!("\"{}\"", key.escape_default())
    }
}

/// `parent.key`, or `key` at the root.
pub(crate) fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key_segment(key)
    } else {
        format!("{parent}.{}", key_segment(key))
    }
}

impl SpanIndex {
    /// Indexes `root`, parsed from `text`.
    pub(crate) fn new(text: &str, root: &Spanned<DeTable<'_>>) -> Self {
        let mut index = SpanIndex {
            entries: Vec::new(),
            line_starts: std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect(),
        };
        index.walk_table("", root.get_ref(), 0);
        index
    }

    fn walk_table(&mut self, prefix: &str, table: &DeTable<'_>, depth: usize) {
        if depth > MAX_DEPTH {
            return;
        }
        for (key, value) in table.iter() {
            if self.entries.len() >= MAX_ENTRIES {
                return;
            }
            let path = join(prefix, key.get_ref());
            self.entries.push(Entry { path: path.clone(), key: key.span(), value: value.span() });
            self.walk_value(&path, value.get_ref(), depth + 1);
        }
    }

    fn walk_value(&mut self, path: &str, value: &DeValue<'_>, depth: usize) {
        match value {
            DeValue::Table(t) => self.walk_table(path, t, depth),
            DeValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    if self.entries.len() >= MAX_ENTRIES || depth > MAX_DEPTH {
                        return;
                    }
                    let item_path = format!("{path}[{i}]");
                    self.entries.push(Entry { path: item_path.clone(), key: item.span(), value: item.span() });
                    self.walk_value(&item_path, item.get_ref(), depth + 1);
                }
            }
            _ => {}
        }
    }

    /// The key path a span points into: the innermost key or value containing it. None for an empty span
    /// (errors about the document as a whole) or one outside every entry.
    pub(crate) fn key_at(&self, span: &Range<usize>) -> Option<&str> {
        if span.is_empty() {
            return None;
        }
        let contains = |r: &Range<usize>| r.start <= span.start && span.end <= r.end;
        self.entries
            .iter()
            .flat_map(|e| [(e, &e.key), (e, &e.value)])
            .filter(|(_, r)| contains(r))
            .min_by_key(|(e, r)| (r.end - r.start, usize::MAX - e.path.len()))
            .map(|(e, _)| e.path.as_str())
    }

    fn line_of_offset(&self, offset: usize) -> usize {
        self.line_starts.partition_point(|&s| s <= offset).max(1)
    }

    /// The line where `path` is written (its key), if it is in the document.
    pub(crate) fn line_of(&self, path: &str) -> Option<usize> {
        self.entries.iter().find(|e| e.path == path).map(|e| self.line_of_offset(e.key.start))
    }

    /// Whether `path` is written in the document.
    #[cfg(test)]
    pub(crate) fn has(&self, path: &str) -> bool {
        self.entries.iter().any(|e| e.path == path)
    }

    /// The problem a serde error describes, keyed by where it points.
    pub(crate) fn problem_from(&self, file: &str, error: &toml::de::Error) -> Problem {
        let span = error.span();
        let mut key = span.as_ref().and_then(|s| self.key_at(s)).unwrap_or("").to_owned();
        let mut line = span.as_ref().filter(|s| !s.is_empty()).map(|s| self.line_of_offset(s.start));
        let raw = error.message().trim();
        let message = if let Some(field) = between(raw, "missing field `", "`") {
            key = join(&key, field);
            line = line.or_else(|| self.line_of(&key));
            "missing (required)".to_owned()
        } else if let Some(rest) = raw.strip_prefix("unknown field `") {
            match rest.split_once("`, expected ") {
                Some((_, expected)) => format!("unknown key (expected {expected})"),
                None => "unknown key".to_owned(),
            }
        } else if let Some(rest) = raw.strip_prefix("unknown variant `") {
            match rest.split_once("`, expected ") {
                Some((value, expected)) => format!("unknown value `{value}` (expected {expected})"),
                None => raw.to_owned(),
            }
        } else {
            raw.to_owned()
        };
        Problem { file: file.to_owned(), key, line, message }
    }
}

fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let rest = s.strip_prefix(start)?;
    rest.find(end).map(|i| &rest[..i])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(text: &str) -> SpanIndex {
        let root = DeTable::parse(text).unwrap();
        SpanIndex::new(text, &root)
    }

    #[test]
    fn spans_map_to_the_innermost_key() {
        let text = "[door]\nrelay = \"x\"\n[call]\ntargets = [\"a\", 3]\n";
        let idx = index(text);
        let at = |needle: &str| {
            let start = text.find(needle).unwrap();
            idx.key_at(&(start..start + needle.len())).map(str::to_owned)
        };
        assert_eq!(at("\"x\"").as_deref(), Some("door.relay"));
        assert_eq!(at("3").as_deref(), Some("call.targets[1]"));
        assert_eq!(at("relay").as_deref(), Some("door.relay"));
        assert_eq!(at("[call]").as_deref(), Some("call"));
        assert_eq!(idx.key_at(&(0..0)), None);
        assert_eq!(idx.line_of("call.targets"), Some(4));
    }

    #[test]
    fn odd_keys_are_quoted() {
        assert_eq!(join("buttons", "front door"), "buttons.\"front door\"");
        assert_eq!(join("", "call"), "call");
        let idx = index("[buttons]\n\"front door\" = \"call\"\n");
        assert!(idx.has("buttons.\"front door\""));
    }
}
