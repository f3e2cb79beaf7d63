//! The pipeline's tasks — entities, summaries, metadata — as prompts and answer schemas.
//!
//! Prompts are versioned template files (`prompts/<task>.v<N>.jinja`). A request's system
//! message is the rendered template alone: rules and a worked example, nothing from the
//! document, so it is byte-identical across requests and providers can serve it from their
//! prompt cache. The items (pages, sections) come last, in the user message, each tagged with
//! the id its answer must carry. A task's version hashes the rendered prompt and its schema, so
//! changing either (or the configured entity types) changes every unit key.

pub mod answers;

use minijinja::{Environment, context};
use pagemill_client::Message;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Which task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// Named entities of pages.
    Entities,
    /// Summaries of sections.
    Summary,
    /// Metadata of a document.
    Metadata,
}

impl std::str::FromStr for TaskKind {
    type Err = String;

    /// `entities`, `summary` (or `summaries`), `metadata`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "entities" => Ok(Self::Entities),
            "summary" | "summaries" => Ok(Self::Summary),
            "metadata" => Ok(Self::Metadata),
            other => Err(format!(
                "unknown task `{other}` (entities, summary, metadata)"
            )),
        }
    }
}

impl TaskKind {
    /// The task's name, as in unit keys and file names.
    pub fn name(self) -> &'static str {
        match self {
            TaskKind::Entities => "entities",
            TaskKind::Summary => "summary",
            TaskKind::Metadata => "metadata",
        }
    }
}

/// What users can configure about the tasks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TaskConfig {
    /// Entity types to extract.
    pub entity_types: Vec<String>,
    /// Longest summary, in words.
    pub summary_max_words: u32,
    /// Most keywords in metadata.
    pub metadata_max_keywords: u32,
    /// Replaces the metadata schema (a JSON Schema object), e.g. to add fields.
    pub metadata_schema: Option<Value>,
    /// Most entities in one item's answer.
    pub max_entities: u32,
    /// Prompts for a small model: no worked example where a small model copies it instead of
    /// following it (summaries).
    pub small: bool,
}

/// The entity types asked for unless configured otherwise.
pub const DEFAULT_ENTITY_TYPES: [&str; 7] = [
    "person",
    "organization",
    "location",
    "date",
    "money",
    "law",
    "product",
];

impl Default for TaskConfig {
    fn default() -> Self {
        Self {
            entity_types: DEFAULT_ENTITY_TYPES.map(String::from).to_vec(),
            summary_max_words: 80,
            metadata_max_keywords: 8,
            metadata_schema: None,
            max_entities: 200,
            small: false,
        }
    }
}

/// One item of a request: its id (echoed in the answer) and its text.
#[derive(Debug, Clone, Copy)]
pub struct Item<'a> {
    /// The id the answer must carry, e.g. `p3` or `s12`.
    pub id: &'a str,
    /// The page or section text.
    pub text: &'a str,
    /// Metadata candidates found in the document's form (metadata only).
    pub hints: Option<&'a crate::ingest::Hints>,
}

/// A task, ready to render requests.
#[derive(Debug, Clone)]
pub struct Task {
    /// Which task.
    pub kind: TaskKind,
    /// Template version (`v1`).
    pub template_version: &'static str,
    system: String,
    schema: Value,
    compiled: answers::Compiled,
    max_words: u32,
}

/// A task could not be made: its template did not render, or its schema does not compile.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// The prompt template.
    #[error("prompt template `{name}`: {source}")]
    Template {
        /// The template.
        name: String,
        /// Why.
        source: minijinja::Error,
    },
    /// The answer schema.
    #[error("the answer schema of `{name}`: {why}")]
    Schema {
        /// The task's template.
        name: String,
        /// Why.
        why: String,
    },
}

const ENTITIES_V2: &str = include_str!("../../prompts/entities.v2.jinja");
const SUMMARY_V2: &str = include_str!("../../prompts/summary.v2.jinja");
const SUMMARY_SMALL_V2: &str = include_str!("../../prompts/summary-small.v2.jinja");
const METADATA_V2: &str = include_str!("../../prompts/metadata.v2.jinja");

impl Task {
    /// The current version of `kind` under `config`.
    pub fn new(kind: TaskKind, config: &TaskConfig) -> Result<Self, TaskError> {
        let (name, template_version, template) = match kind {
            TaskKind::Entities => ("entities.v2", "v2", ENTITIES_V2),
            TaskKind::Summary if config.small => ("summary-small.v2", "v2", SUMMARY_SMALL_V2),
            TaskKind::Summary => ("summary.v2", "v2", SUMMARY_V2),
            TaskKind::Metadata => ("metadata.v2", "v2", METADATA_V2),
        };
        let mut env = Environment::new();
        env.set_keep_trailing_newline(true);
        let err = |source| TaskError::Template {
            name: name.to_owned(),
            source,
        };
        env.add_template(name, template).map_err(err)?;
        let system = env
            .get_template(name)
            .and_then(|t| {
                t.render(context! {
                    types => config.entity_types,
                    max_words => config.summary_max_words,
                    max_keywords => config.metadata_max_keywords,
                })
            })
            .map_err(err)?;
        let schema = schema(kind, config);
        let compiled = answers::Compiled::new(&schema).map_err(|why| TaskError::Schema {
            name: name.to_owned(),
            why,
        })?;
        Ok(Self {
            kind,
            template_version,
            system: system.trim_end().to_owned(),
            schema,
            compiled,
            max_words: config.summary_max_words,
        })
    }

    /// The version that goes into unit keys: task, template version, and a hash of the
    /// rendered prompt and the schema (so configuration changes are new versions too).
    pub fn prompt_version(&self) -> String {
        let mut h = blake3::Hasher::new();
        h.update(self.system.as_bytes());
        h.update(self.schema.to_string().as_bytes());
        format!(
            "{}-{}-{}",
            self.kind.name(),
            self.template_version,
            &h.finalize().to_hex()[..12]
        )
    }

    /// The rendered system prompt: the same bytes for every request of this task.
    pub fn system_prompt(&self) -> &str {
        &self.system
    }

    /// Longest summary, in words (summaries).
    pub fn max_words(&self) -> u32 {
        self.max_words
    }

    /// The JSON Schema answers must follow.
    pub fn schema(&self) -> &Value {
        &self.schema
    }

    /// The answer schema, compiled once for every answer the task's run checks.
    pub fn compiled(&self) -> &answers::Compiled {
        &self.compiled
    }

    /// Most completion tokens one item's answer can take under the schema's bounds (string
    /// lengths, array sizes), or `None` when some part is unbounded. Packed tasks: one entry of
    /// `items`; metadata: the whole answer.
    pub fn item_token_bound(&self) -> Option<u64> {
        let entry = self
            .schema
            .pointer("/properties/items/items")
            .unwrap_or(&self.schema);
        token_bound(entry)
    }

    /// `response_format` asking for the schema (for endpoints that accept `json_schema`).
    pub fn response_format(&self) -> Value {
        json!({"type": "json_schema", "json_schema": {"name": self.kind.name(), "strict": false, "schema": self.schema}})
    }

    /// `response_format` narrowed to one request: exactly `ids.len()` items, each with one of
    /// `ids` (packed tasks); metadata with candidates: the title one of them (or null), each
    /// author one of them.
    pub fn response_format_for(&self, ids: &[&str], hints: Option<&crate::ingest::Hints>) -> Value {
        let mut schema = self.schema.clone();
        if let Some(h) = hints {
            if !h.titles.is_empty()
                && let Some(t) = schema.pointer_mut("/properties/title")
            {
                let mut options: Vec<Value> = h.titles.iter().map(|t| json!(t)).collect();
                options.push(Value::Null);
                *t = json!({"enum": options});
            }
            if !h.authors.is_empty()
                && let Some(a) = schema.pointer_mut("/properties/authors")
            {
                // One slot per candidate: the name, or "" when that candidate did not write it.
                // A small model asked for a free list stops after the first name.
                let slots: Vec<Value> =
                    h.authors.iter().map(|c| json!({"enum": [c, ""]})).collect();
                *a = json!({"type": "array", "prefixItems": slots, "minItems": slots.len(), "maxItems": slots.len()});
            }
        }
        if let Some(items) = schema.pointer_mut("/properties/items") {
            items["minItems"] = json!(ids.len());
            items["maxItems"] = json!(ids.len());
            if let Some(id) = items.pointer_mut("/items/properties/id") {
                *id = json!({"enum": ids});
            }
        }
        json!({"type": "json_schema", "json_schema": {"name": self.kind.name(), "strict": false, "schema": schema}})
    }

    /// The messages of one request: the stable system prompt, then the items, text last.
    pub fn messages(&self, items: &[Item<'_>]) -> Vec<Message> {
        let mut user = String::from(match self.kind {
            TaskKind::Metadata => "Document:\n",
            _ => "Items:\n",
        });
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                user.push('\n');
            }
            // The id is ours (ASCII); the text is the document's, exactly as ingested.
            user.push_str(&format!(
                "<item id=\"{}\">\n{}\n</item>\n",
                item.id, item.text
            ));
            if let Some(h) = item.hints.filter(|h| !h.is_empty()) {
                user.push_str(&candidates(h));
            }
        }
        vec![Message::system(self.system.clone()), Message::user(user)]
    }
}

/// An upper bound on the tokens of JSON valid under `schema`: about three characters a token
/// (short names and numbers tokenize worse than prose), plus quotes, keys and separators.
pub fn token_bound(schema: &Value) -> Option<u64> {
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        return values
            .iter()
            .map(|v| v.to_string().len() as u64 / 3 + 2)
            .max();
    }
    let types: Vec<&str> = match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => return None,
    };
    let mut best = 0;
    for t in types {
        let b = match t {
            "null" | "boolean" => 2,
            "integer" | "number" => 8,
            "string" => schema.get("maxLength")?.as_u64()? / 3 + 3,
            "array" => {
                let n = schema.get("maxItems")?.as_u64()?;
                n * (token_bound(schema.get("items")?)? + 1) + 2
            }
            "object" => {
                let props = schema.get("properties")?.as_object()?;
                let mut sum = 2;
                for (k, v) in props {
                    sum += k.len() as u64 / 3 + 3 + token_bound(v)?;
                }
                sum
            }
            _ => return None,
        };
        best = best.max(b);
    }
    Some(best)
}

/// The candidates block after a metadata item.
fn candidates(h: &crate::ingest::Hints) -> String {
    let list = |v: &[String]| {
        v.iter()
            .map(|s| serde_json::to_string(s).unwrap_or_default())
            .collect::<Vec<_>>()
            .join(" | ")
    };
    let mut out = String::from("Candidates found in the document's layout and properties:\n");
    if !h.titles.is_empty() {
        out.push_str(&format!("title: {}\n", list(&h.titles)));
    }
    if !h.authors.is_empty() {
        out.push_str(&format!("authors: {}\n", list(&h.authors)));
    }
    out
}

/// The answer schema of a task. Arrays and strings are bounded, so a small model constrained
/// by the schema cannot loop forever inside one.
fn schema(kind: TaskKind, config: &TaskConfig) -> Value {
    let items = |entry: Value| {
        json!({
            "type": "object",
            "properties": {"items": {"type": "array", "maxItems": 64, "items": entry}},
            "required": ["items"],
            "additionalProperties": false
        })
    };
    match kind {
        TaskKind::Entities => items(json!({
            "type": "object",
            "properties": {
                "id": {"type": "string", "maxLength": 64},
                "entities": {"type": "array", "maxItems": config.max_entities, "items": {
                    "type": "object",
                    "properties": {
                        "text": {"type": "string", "minLength": 1, "maxLength": 200},
                        "type": {"enum": config.entity_types}
                    },
                    "required": ["text", "type"],
                    "additionalProperties": false
                }}
            },
            "required": ["id", "entities"],
            "additionalProperties": false
        })),
        TaskKind::Summary => items(json!({
            "type": "object",
            "properties": {
                "id": {"type": "string", "maxLength": 64},
                "summary": {"type": "string", "minLength": 1, "maxLength": config.summary_max_words * 7}
            },
            "required": ["id", "summary"],
            "additionalProperties": false
        })),
        TaskKind::Metadata => config.metadata_schema.clone().unwrap_or_else(|| {
            let list = |max: u32, len: u32| json!({"type": "array", "maxItems": max, "items": {"type": "string", "minLength": 1, "maxLength": len}});
            json!({
                "type": "object",
                "properties": {
                    "title": {"type": ["string", "null"], "maxLength": 200},
                    "authors": list(12, 80),
                    "date": {"type": ["string", "null"], "maxLength": 10},
                    "document_type": {"type": ["string", "null"], "maxLength": 40},
                    "language": {"type": ["string", "null"], "maxLength": 8},
                    "keywords": list(config.metadata_max_keywords, 60),
                    "parties": list(8, 120)
                },
                "required": ["title", "authors", "date", "document_type", "language", "keywords", "parties"],
                "additionalProperties": false
            })
        }),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_schema_that_does_not_compile_is_an_error_not_a_panic() {
        let config = TaskConfig {
            metadata_schema: Some(
                serde_json::json!({"type": "object", "properties": {"x": {"type": 12}}}),
            ),
            ..TaskConfig::default()
        };
        let e = Task::new(TaskKind::Metadata, &config).unwrap_err();
        assert!(matches!(e, TaskError::Schema { .. }), "{e}");
        // The compiled schema judges answers as the schema does.
        let task = Task::new(TaskKind::Metadata, &TaskConfig::default()).unwrap();
        assert!(
            task.compiled()
                .validate(&serde_json::json!({"title": 5}))
                .is_err()
        );
    }

    use super::*;

    fn items() -> [Item<'static>; 2] {
        [
            Item {
                id: "p1",
                text: "On 1 June 2020 Initech hired Peter Gibbons in Austin.",
                hints: None,
            },
            Item {
                id: "p2",
                text: "Initech paid $400 under the Fair Labor Standards Act.",
                hints: None,
            },
        ]
    }

    #[test]
    fn rendered_prompts_match_their_snapshots() {
        let config = TaskConfig::default();
        for kind in [TaskKind::Entities, TaskKind::Summary, TaskKind::Metadata] {
            let task = Task::new(kind, &config).unwrap();
            let m = task.messages(&items());
            let rendered = format!(
                "--- system ---\n{}\n--- user ---\n{}",
                m[0].content, m[1].content
            );
            insta::assert_snapshot!(
                format!("{}_{}", kind.name(), task.template_version),
                rendered
            );
        }
    }

    #[test]
    fn the_system_prefix_is_byte_stable_and_the_document_comes_last() {
        let task = Task::new(TaskKind::Entities, &TaskConfig::default()).unwrap();
        let a = task.messages(&items()[..1]);
        let b = task.messages(&items()[1..]);
        assert_eq!(
            a[0].content.as_bytes(),
            b[0].content.as_bytes(),
            "identical system prompts"
        );
        assert!(
            !a[0].content.contains("Initech"),
            "no document text in the cacheable prefix"
        );
        assert!(b[1].content.trim_end().ends_with("Act.\n</item>"));
        assert_eq!(a.len(), 2);
    }

    #[test]
    fn versions_change_with_the_prompt_or_its_configuration_only() {
        let base = TaskConfig::default();
        let v = |c: &TaskConfig| Task::new(TaskKind::Entities, c).unwrap().prompt_version();
        assert_eq!(v(&base), v(&base));
        assert!(v(&base).starts_with("entities-v2-"));
        let mut other = base.clone();
        other.entity_types.push("vehicle".into());
        assert_ne!(v(&base), v(&other));
        let mut summary = base.clone();
        summary.summary_max_words = 40;
        assert_eq!(
            v(&base),
            v(&summary),
            "summary settings do not touch entities"
        );
    }

    #[test]
    fn a_narrowed_schema_takes_exactly_the_requests_items() {
        let task = Task::new(TaskKind::Entities, &TaskConfig::default()).unwrap();
        let f = task.response_format_for(&["d:p1", "d:p2"], None);
        let schema = &f["json_schema"]["schema"];
        let ok = json!({"items": [{"id": "d:p1", "entities": []}, {"id": "d:p2", "entities": []}]});
        let short = json!({"items": [{"id": "d:p1", "entities": []}]});
        let stranger =
            json!({"items": [{"id": "d:p1", "entities": []}, {"id": "d:p9", "entities": []}]});
        assert!(answers::validate(schema, &ok).is_ok());
        assert!(answers::validate(schema, &short).is_err());
        assert!(answers::validate(schema, &stranger).is_err());
        assert_eq!(
            task.prompt_version(),
            Task::new(TaskKind::Entities, &TaskConfig::default())
                .unwrap()
                .prompt_version(),
            "unit keys do not change"
        );
    }

    #[test]
    fn the_worked_examples_are_valid_answers_of_their_own_schemas() {
        for kind in [TaskKind::Entities, TaskKind::Summary, TaskKind::Metadata] {
            let task = Task::new(kind, &TaskConfig::default()).unwrap();
            let answer = task.system_prompt().lines().last().unwrap();
            let v: Value = serde_json::from_str(answer).unwrap();
            let required = task.schema()["required"].as_array().unwrap();
            for field in required {
                assert!(
                    v.get(field.as_str().unwrap()).is_some(),
                    "{kind:?}: {field}"
                );
            }
            if kind == TaskKind::Entities {
                let types = &task.schema()["properties"]["items"]["items"]["properties"]["entities"]
                    ["items"]["properties"]["type"]["enum"];
                for e in v["items"][0]["entities"].as_array().unwrap() {
                    assert!(types.as_array().unwrap().contains(&e["type"]), "{e}");
                }
            }
        }
    }
}
