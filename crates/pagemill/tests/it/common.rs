//! What the integration tests share: the `pagemill` command in a clean environment, scratch
//! directories, configuration files, the repository's test data, and schema checks.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// A command with a clean environment and `dir` as its working directory: no OpenAI variables,
/// no user configuration, tables at their natural width, no colour.
pub(crate) fn pagemill(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pagemill"));
    cmd.current_dir(dir)
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("PAGEMILL_CONFIG")
        // Never the tester's own ~/.config/pagemill/config.toml.
        .env("XDG_CONFIG_HOME", dir.join(".no-user-config"))
        // Tables at their natural width, whatever the tester's shell exports.
        .env_remove("COLUMNS")
        .env("NO_COLOR", "1");
    cmd
}

/// A fresh scratch directory for one test.
pub(crate) fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pagemill-it-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes a `pagemill.toml` with one endpoint (plus `extra` TOML lines) into `dir`.
pub(crate) fn write_config(dir: &Path, name: &str, base_url: &str, extra: &str) {
    std::fs::write(
        dir.join("pagemill.toml"),
        format!("[[endpoint]]\nname = \"{name}\"\nbase_url = \"{base_url}\"\nmodel = \"sim-model\"\n{extra}"),
    )
    .unwrap();
}

/// A configuration file `dir/file` naming one endpoint `name` at `base_url`, with quick
/// retries.
pub(crate) fn config(dir: &Path, file: &str, name: &str, base_url: &str, extra: &str) -> PathBuf {
    let path = dir.join(file);
    std::fs::write(
        &path,
        format!(
            "[[endpoint]]\nname = \"{name}\"\nbase_url = \"{base_url}\"\nmodel = \"sim-model\"\n{extra}\n\
             [endpoint.retry]\nbase_delay_ms = 5\nmax_delay_ms = 200\n"
        ),
    )
    .unwrap();
    path
}

/// A path in the repository.
pub(crate) fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

/// A document the tests read, from the repository's own `testdata/` (provenance and licences in
/// its README): a clone needs nothing beside it.
pub(crate) fn data(rel: &str) -> PathBuf {
    repo("testdata").join(rel)
}

/// The validator of `schemas/<name>`.
pub(crate) fn schema(name: &str) -> jsonschema::Validator {
    let text = std::fs::read_to_string(repo("schemas").join(name)).unwrap();
    let schema: Value = serde_json::from_str(&text).unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

/// Asserts that `v` follows `schemas/<name>`, listing every violation.
pub(crate) fn assert_follows(name: &str, v: &Value) {
    let errors: Vec<String> = schema(name)
        .iter_errors(v)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{name}: {errors:#?}");
}

/// The PostgreSQL server the tests use (`PAGEMILL_TEST_POSTGRES`; `.ci/run` starts one).
pub(crate) fn postgres_url() -> String {
    std::env::var("PAGEMILL_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A schema of its own on the test server, dropped at the end; `url` works in it. Every
/// call to the server goes on a thread of its own: the synchronous client runs a runtime of
/// its own, which may not start inside the test's.
pub(crate) struct PgSchema {
    pub(crate) url: String,
    pub(crate) schema: String,
}

/// Runs `f` on a thread of its own.
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| s.spawn(f).join().unwrap())
}

impl PgSchema {
    pub(crate) fn new(name: &str) -> Self {
        let schema = format!("pm_it_{name}_{}", std::process::id());
        let base = postgres_url();
        off_runtime(|| {
            let mut c = postgres::Client::connect(&base, postgres::NoTls)
                .unwrap_or_else(|e| panic!("these tests need PostgreSQL at {base}: {e}"));
            c.batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
            ))
            .unwrap();
        });
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
        Self { url, schema }
    }

    /// `f` with a connection to the server, working in this schema.
    pub(crate) fn with<T: Send>(&self, f: impl FnOnce(&mut postgres::Client) -> T + Send) -> T {
        off_runtime(|| {
            let mut c = postgres::Client::connect(&postgres_url(), postgres::NoTls).unwrap();
            c.batch_execute(&format!("SET search_path = {}", self.schema))
                .unwrap();
            f(&mut c)
        })
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let schema = self.schema.clone();
        off_runtime(move || {
            if let Ok(mut c) = postgres::Client::connect(&postgres_url(), postgres::NoTls) {
                let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
            }
        });
    }
}
