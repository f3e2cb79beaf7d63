//! Reading a model's answer: parse leniently, repair what is safe to repair, validate strictly,
//! and check a packed answer item by item.
//!
//! Lenient: code fences, prose around the JSON, trailing commas and a cut-off tail of closing
//! brackets are forgiven. Strict: the repaired value must satisfy the task's JSON Schema. For a
//! pack, each requested id must appear once; items that are missing, invalid or duplicated are
//! reported by id, so only those units are re-run.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

/// Why an answer (or one item of it) is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    /// No JSON could be recovered.
    #[error("not JSON: {0}")]
    NotJson(String),
    /// JSON that breaks the schema.
    #[error("does not match the schema: {0}")]
    Invalid(String),
}

/// Outcome of checking a packed answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PackCheck {
    /// Valid answers, by requested id.
    pub answers: HashMap<String, Value>,
    /// Requested ids with no answer.
    pub missing: Vec<String>,
    /// Requested ids whose answer broke the schema, with why.
    pub invalid: Vec<(String, String)>,
    /// Ids answered that were never asked (ignored).
    pub unexpected: Vec<String>,
    /// Requested ids answered more than once (the first valid one is kept).
    pub duplicated: Vec<String>,
    /// The text needed repair (fences, prose, trailing commas, a cut-off tail).
    pub repaired: bool,
}

/// Recovers a JSON value from a model's text; says whether repair was needed.
pub fn parse_lenient(text: &str) -> Result<(Value, bool), AnswerError> {
    let trimmed = text.trim();
    if let Ok(v) = serde_json::from_str(trimmed) {
        return Ok((v, false));
    }
    let unfenced = strip_fences(trimmed);
    let Some(start) = unfenced.find(['{', '[']) else {
        return Err(AnswerError::NotJson("no `{` or `[` in the answer".into()));
    };
    let body = &unfenced[start..];
    let candidate = balanced(body).unwrap_or(body);
    let cleaned = remove_trailing_commas(candidate);
    if let Ok(v) = serde_json::from_str(&cleaned) {
        return Ok((v, true));
    }
    // A cut-off answer (max_tokens): close what is open, if that yields JSON.
    let closed = close_open(&cleaned);
    serde_json::from_str(&closed)
        .map(|v| (v, true))
        .map_err(|e| AnswerError::NotJson(e.to_string()))
}

fn strip_fences(s: &str) -> &str {
    let Some(open) = s.find("```") else { return s };
    let after = &s[open + 3..];
    let after = after.find('\n').map_or(after, |nl| &after[nl + 1..]);
    after.find("```").map_or(after, |close| &after[..close])
}

/// The characters of JSON text, each with whether it lies outside string literals (the
/// quotes themselves count as inside): the one scanner behind the repairs below.
struct Scan<'a> {
    chars: std::str::CharIndices<'a>,
    in_str: bool,
    escaped: bool,
}

fn scan(s: &str) -> Scan<'_> {
    Scan {
        chars: s.char_indices(),
        in_str: false,
        escaped: false,
    }
}

impl Iterator for Scan<'_> {
    type Item = (usize, char, bool);

    fn next(&mut self) -> Option<Self::Item> {
        let (i, c) = self.chars.next()?;
        let outside = if self.in_str {
            match (self.escaped, c) {
                (true, _) => self.escaped = false,
                (false, '\\') => self.escaped = true,
                (false, '"') => self.in_str = false,
                _ => {}
            }
            false
        } else if c == '"' {
            self.in_str = true;
            false
        } else {
            true
        };
        Some((i, c, outside))
    }
}

/// The first complete JSON value at the start of `s` (brackets balanced outside strings).
fn balanced(s: &str) -> Option<&str> {
    let mut depth = 0i32;
    for (i, c, outside) in scan(s) {
        match (outside, c) {
            (true, '{' | '[') => depth += 1,
            (true, '}' | ']') => {
                depth -= 1;
                if depth == 0 {
                    return Some(&s[..i + c.len_utf8()]);
                }
            }
            _ => {}
        }
    }
    None
}

fn remove_trailing_commas(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for (i, c, outside) in scan(s) {
        if outside && c == ',' && s[i + 1..].trim_start().starts_with(['}', ']']) {
            continue;
        }
        out.push(c);
    }
    out
}

/// Closes an answer cut off mid-way: ends an open string, drops a dangling `,` or `:` part,
/// and closes open brackets in order.
fn close_open(s: &str) -> String {
    let mut stack = Vec::new();
    let mut chars = scan(s);
    for (_, c, outside) in chars.by_ref() {
        match (outside, c) {
            (true, '{') => stack.push('}'),
            (true, '[') => stack.push(']'),
            (true, '}' | ']') => {
                stack.pop();
            }
            _ => {}
        }
    }
    let mut out = s.to_owned();
    if chars.in_str {
        out.push('"');
    }
    let trimmed = out.trim_end().trim_end_matches([',', ':']).len();
    out.truncate(trimmed);
    while let Some(c) = stack.pop() {
        out.push(c);
    }
    out
}

/// A task's answer schema compiled once (compiling is far costlier than validating, and every
/// answer of a run is checked): the whole answer, and one item of a packed answer
/// (`properties.items.items`) when the schema has packs.
#[derive(Debug, Clone)]
pub struct Compiled {
    whole: Arc<jsonschema::Validator>,
    item: Option<Arc<jsonschema::Validator>>,
}

impl Compiled {
    /// Compiles `schema`; an error says why it is not a schema.
    pub fn new(schema: &Value) -> Result<Self, String> {
        let compile = |s: &Value| {
            jsonschema::validator_for(s)
                .map(Arc::new)
                .map_err(|e| format!("not a valid JSON Schema: {e}"))
        };
        let item = match schema.pointer("/properties/items/items") {
            Some(item) => Some(compile(item)?),
            None => None,
        };
        Ok(Self {
            whole: compile(schema)?,
            item,
        })
    }

    /// Validates a whole answer.
    pub fn validate(&self, value: &Value) -> Result<(), AnswerError> {
        first_error(&self.whole, value)
    }

    /// Validates one item of a packed answer (the whole schema when it has no packs).
    pub fn validate_item(&self, value: &Value) -> Result<(), AnswerError> {
        first_error(self.item.as_deref().unwrap_or(&self.whole), value)
    }
}

fn first_error(validator: &jsonschema::Validator, value: &Value) -> Result<(), AnswerError> {
    match validator.iter_errors(value).next() {
        None => Ok(()),
        Some(e) => Err(AnswerError::Invalid(format!(
            "{e} at `{}`",
            e.instance_path()
        ))),
    }
}

/// Whether `schema` is a JSON Schema this validator accepts (for user-supplied schemas).
pub fn check_schema(schema: &Value) -> Result<(), String> {
    jsonschema::validator_for(schema)
        .map(|_| ())
        .map_err(|e| format!("not a valid JSON Schema: {e}"))
}

/// Validates `value` against `schema`, naming the first violation and where it is. Compiles
/// the schema each call: for one-off checks; a run validates with a task's [`Compiled`].
pub fn validate(schema: &Value, value: &Value) -> Result<(), AnswerError> {
    Compiled::new(schema)
        .map_err(|e| AnswerError::Invalid(format!("bad schema: {e}")))?
        .validate(value)
}

/// Checks a packed answer `{"items": [{"id": …, …}]}` against the ids asked for: each item is
/// validated on its own against the schema's item schema.
pub fn check_pack(text: &str, schema: &Compiled, ids: &[&str]) -> Result<PackCheck, AnswerError> {
    let (value, repaired) = parse_lenient(text)?;
    let entries = value
        .get("items")
        .and_then(Value::as_array)
        .ok_or_else(|| AnswerError::Invalid("no `items` array".into()))?;
    let wanted: std::collections::HashSet<&str> = ids.iter().copied().collect();
    let mut check = PackCheck {
        repaired,
        ..PackCheck::default()
    };
    for entry in entries {
        let id = match entry.get("id").and_then(Value::as_str) {
            Some(id) => id,
            // One item asked, one answered without its id: a grammar that orders keys
            // alphabetically (llama-server's) puts `id` after `entities`, so an answer cut in
            // its entities never got to it. It can only be that item.
            None if ids.len() == 1 && entries.len() == 1 && entry.is_object() => ids[0],
            None => continue,
        };
        let mut entry = entry.clone();
        if let Some(o) = entry.as_object_mut() {
            o.insert("id".to_owned(), Value::String(id.to_owned()));
        }
        let entry = &entry;
        if !wanted.contains(id) {
            check.unexpected.push(id.to_owned());
            continue;
        }
        if check.answers.contains_key(id) {
            check.duplicated.push(id.to_owned());
            continue;
        }
        match schema.validate_item(entry) {
            Ok(()) => {
                check.invalid.retain(|(i, _)| i != id);
                check.answers.insert(id.to_owned(), entry.clone());
            }
            Err(e) => {
                if !check.invalid.iter().any(|(i, _)| i == id) {
                    check.invalid.push((id.to_owned(), e.to_string()));
                }
            }
        }
    }
    check.missing = ids
        .iter()
        .filter(|id| {
            !check.answers.contains_key(**id) && !check.invalid.iter().any(|(i, _)| i == *id)
        })
        .map(|id| (*id).to_owned())
        .collect();
    Ok(check)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::{Task, TaskConfig, TaskKind};
    use serde_json::json;

    #[test]
    fn the_one_item_asked_for_needs_no_id_in_its_answer() {
        let task = Task::new(TaskKind::Entities, &TaskConfig::default()).unwrap();
        let schema = task.compiled();
        // Cut in its entities, before `id`, and closed by the repair.
        let text = r#"{"items": [{"entities": [{"text": "Kraków", "type": "location"}, "#;
        let one = check_pack(text, schema, &["d:p1"]).unwrap();
        assert_eq!(
            one.answers["d:p1"]["entities"],
            json!([{"text": "Kraków", "type": "location"}])
        );
        // With two asked, an answer without an id belongs to neither.
        let two = check_pack(text, schema, &["d:p1", "d:p2"]).unwrap();
        assert!(two.answers.is_empty());
        assert_eq!(two.missing, ["d:p1", "d:p2"]);
    }

    #[test]
    fn lenient_parsing_forgives_what_models_do() {
        let cases = [
            ("{\"a\": 1}", json!({"a": 1}), false),
            ("```json\n{\"a\": 1}\n```", json!({"a": 1}), true),
            (
                "Here is the JSON:\n{\"a\": [1, 2,], }\nHope this helps!",
                json!({"a": [1, 2]}),
                true,
            ),
            (
                "{\"items\": [{\"id\": \"p1\", \"summary\": \"cut off he",
                json!({"items": [{"id": "p1", "summary": "cut off he"}]}),
                true,
            ),
            (
                "{\"s\": \"a } inside, ] a string,\"}",
                json!({"s": "a } inside, ] a string,"}),
                false,
            ),
        ];
        for (text, want, repaired) in cases {
            assert_eq!(parse_lenient(text).unwrap(), (want, repaired), "{text}");
        }
        assert!(parse_lenient("I cannot help with that.").is_err());
    }

    #[test]
    fn a_pack_reports_missing_invalid_unexpected_and_duplicated_items_by_id() {
        let task = Task::new(TaskKind::Entities, &TaskConfig::default()).unwrap();
        let answer = r#"{"items": [
            {"id": "p1", "entities": [{"text": "Initech", "type": "organization"}]},
            {"id": "p2", "entities": [{"text": "Austin", "type": "spaceship"}]},
            {"id": "p1", "entities": []},
            {"id": "p9", "entities": []}
        ]}"#;
        let c = check_pack(answer, task.compiled(), &["p1", "p2", "p3"]).unwrap();
        assert_eq!(c.answers.keys().collect::<Vec<_>>(), ["p1"]);
        assert_eq!(c.invalid.len(), 1);
        assert_eq!(c.invalid[0].0, "p2");
        assert!(c.invalid[0].1.contains("spaceship"), "{:?}", c.invalid);
        assert_eq!(c.missing, ["p3"]);
        assert_eq!(c.unexpected, ["p9"]);
        assert_eq!(c.duplicated, ["p1"]);
        assert!(!c.repaired);
    }

    #[test]
    fn whole_answers_validate_against_task_schemas() {
        let task = Task::new(TaskKind::Metadata, &TaskConfig::default()).unwrap();
        let good = json!({"title": "T", "authors": [], "date": null, "document_type": "paper", "language": "en", "keywords": ["a"], "parties": []});
        assert!(validate(task.schema(), &good).is_ok());
        let mut bad = good.clone();
        bad["keywords"] = json!(["1", "2", "3", "4", "5", "6", "7", "8", "9"]);
        assert!(
            validate(task.schema(), &bad)
                .unwrap_err()
                .to_string()
                .contains("keywords")
        );
    }
}
