//! Why a simulator could not start: its profile, its fault script, its gold file, or its
//! socket.

use std::path::PathBuf;

/// Why a simulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The profile is neither a preset nor a readable file.
    #[error("`{name}` is neither a preset ({presets}) nor a readable file: {source}")]
    UnknownProfile {
        /// What was asked for.
        name: String,
        /// The presets, comma-separated.
        presets: String,
        /// Why the file could not be read.
        source: std::io::Error,
    },
    /// The profile file is not a valid profile.
    #[error("profile `{name}`: {source}")]
    Profile {
        /// The file.
        name: String,
        /// What is wrong.
        source: toml::de::Error,
    },
    /// The fault script names a fault that does not exist.
    #[error("unknown fault `{0}` in the profile's script")]
    UnknownFault(String),
    /// The gold file cannot be read or parsed.
    #[error("gold file `{}`{}: {why}", file.display(), line.map(|n| format!(" line {n}")).unwrap_or_default())]
    Gold {
        /// The file.
        file: PathBuf,
        /// The line (1-based), when one is at fault.
        line: Option<usize>,
        /// What is wrong.
        why: String,
    },
    /// The server could not listen.
    #[error("the simulator cannot listen: {0}")]
    Listen(#[from] std::io::Error),
}
