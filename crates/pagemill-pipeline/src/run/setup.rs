//! What a run will do before it is fitted to a model: the tasks asked for with their
//! configuration, and the run options. [`Setup::fitted`] fits them to how the endpoint's model
//! is prompted (a small model gets one item a request and a short entity list).

use std::path::Path;

use pagemill_client::PromptProfile;
use serde_json::Value;

use super::{RunOptions, Tasks};
use crate::tasks::{Task, TaskConfig, TaskError, TaskKind};

/// Most items in one request to a small model: one. Measured with `pagemill eval` on the
/// examples' gold (embedded model, one core; `bench/eval-local.sh`): pack 1 against pack 8 gave
/// summaries of ROUGE-L 0.48 against 0.00 and source support 0.78 against 0.41, the same
/// entities (F1 0.00 both: the 135M model's mentions are all dropped as ungrounded or copied
/// from the prompt) and metadata (0.42), fewer prompt tokens a page (2,722 against 3,023: packs
/// were cut and their items asked again alone), the same wall time (135 s). Earlier, with
/// packs of up to 4: ROUGE-L 0.16 against 0.48.
pub const SMALL_PACK: usize = 1;

/// Most entities in one item's answer from a small model.
pub const SMALL_ENTITIES: u32 = 40;

/// Tokens of a document's head that the metadata task reads.
pub const METADATA_TOKENS: u64 = 1500;

/// The tasks asked for and how.
#[derive(Debug, Clone)]
pub struct Setup {
    /// Which tasks, in order.
    pub kinds: Vec<TaskKind>,
    /// How they are prompted.
    pub config: TaskConfig,
    /// How the run goes.
    pub opts: RunOptions,
}

/// Why a setting cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A prompt template did not render.
    #[error(transparent)]
    Task(#[from] TaskError),
    /// The metadata schema file cannot be read.
    #[error("reading the metadata schema `{path}`: {source}")]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The metadata schema is not a usable schema.
    #[error("the metadata schema `{path}`: {why}")]
    Schema {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        why: String,
    },
}

impl Setup {
    /// The tasks as configured (for the standard prompt profile).
    pub fn tasks(&self) -> Result<Tasks, TaskError> {
        build(&self.kinds, &self.config)
    }

    /// The tasks and options fitted to `profile`: a small model gets at most [`SMALL_PACK`]
    /// items a request, at most [`SMALL_ENTITIES`] entities an item, its own summary prompt,
    /// and no quality re-asks (see docs/ARCHITECTURE.md, "Prompt profiles").
    pub fn fitted(&self, profile: PromptProfile) -> Result<(Tasks, RunOptions), TaskError> {
        let mut opts = self.opts.clone();
        if profile != PromptProfile::Small {
            return Ok((self.tasks()?, opts));
        }
        let mut config = self.config.clone();
        config.max_entities = config.max_entities.min(SMALL_ENTITIES);
        config.small = true;
        opts.max_pack = opts.max_pack.min(SMALL_PACK);
        opts.quality_reasks = false;
        Ok((build(&self.kinds, &config)?, opts))
    }
}

fn build(kinds: &[TaskKind], config: &TaskConfig) -> Result<Tasks, TaskError> {
    let mut tasks = Tasks {
        entities: None,
        summary: None,
        metadata: None,
        metadata_tokens: METADATA_TOKENS,
    };
    for &kind in kinds {
        let task = Task::new(kind, config)?;
        match kind {
            TaskKind::Entities => tasks.entities = Some(task),
            TaskKind::Summary => tasks.summary = Some(task),
            TaskKind::Metadata => tasks.metadata = Some(task),
        }
    }
    Ok(tasks)
}

/// A user's metadata schema, read and checked: JSON, a valid JSON Schema, and an object schema
/// (metadata is an object).
pub fn metadata_schema(path: &Path) -> Result<Value, SetupError> {
    let text = std::fs::read_to_string(path).map_err(|source| SetupError::Read {
        path: path.into(),
        source,
    })?;
    let bad = |why: String| SetupError::Schema {
        path: path.into(),
        why,
    };
    let schema: Value = serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
    if schema.get("type").and_then(|t| t.as_str()) != Some("object") {
        return Err(bad(
            "must be a JSON Schema with \"type\": \"object\"".to_owned()
        ));
    }
    crate::tasks::answers::check_schema(&schema).map_err(bad)?;
    Ok(schema)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_model_gets_one_item_a_request_and_fewer_entities() {
        let setup = Setup {
            kinds: vec![TaskKind::Entities, TaskKind::Summary],
            config: TaskConfig::default(),
            opts: RunOptions::default(),
        };
        let (_, standard) = setup.fitted(PromptProfile::Standard).unwrap();
        assert_eq!(standard, setup.opts, "the standard profile changes nothing");
        let (tasks, small) = setup.fitted(PromptProfile::Small).unwrap();
        assert_eq!(small.max_pack, SMALL_PACK);
        assert!(!small.quality_reasks);
        assert!(tasks.metadata.is_none(), "only the tasks asked for");
        assert_ne!(
            tasks.summary.unwrap().prompt_version(),
            setup.tasks().unwrap().summary.unwrap().prompt_version(),
            "its own summary prompt"
        );
    }

    #[test]
    fn a_metadata_schema_must_be_an_object_schema() {
        let dir = std::env::temp_dir().join(format!("pagemill-setup-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let write = |name: &str, text: &str| {
            let p = dir.join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let ok = write(
            "ok.json",
            r#"{"type": "object", "properties": {"x": {"type": "string"}}}"#,
        );
        assert!(metadata_schema(&ok).is_ok());
        let list = write("list.json", r#"{"type": "array"}"#);
        assert!(
            metadata_schema(&list)
                .unwrap_err()
                .to_string()
                .contains("\"object\"")
        );
        let broken = write("broken.json", "{not json");
        assert!(
            metadata_schema(&broken)
                .unwrap_err()
                .to_string()
                .contains("not JSON")
        );
        assert!(matches!(
            metadata_schema(&dir.join("missing.json")),
            Err(SetupError::Read { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
