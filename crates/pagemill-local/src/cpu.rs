//! Does this CPU have the instructions this build's llama.cpp was compiled with?
//!
//! A release binary is meant to run on machines other than the one that built it, so ggml is
//! compiled for a stated level (x86-64-v3 by default, see `.cargo/config.toml`) rather than for
//! the build machine. On a CPU below that level ggml would die of SIGILL at its first vector
//! instruction; this check runs before llama.cpp is touched and says what is missing instead.

/// The x86 features this build's ggml needs, as recorded by the build script.
const NEEDED: &str = env!("PAGEMILL_GGML_X86_FEATURES");

/// The features this build needs that the running CPU lacks (empty when it has them all, and
/// always empty off x86-64).
pub fn missing() -> Vec<&'static str> {
    NEEDED
        .split(',')
        .filter(|f| !f.is_empty())
        .filter(|f| has(f) == Some(false))
        .collect()
}

/// The features this build needs, comma-separated (for the error message).
pub fn needed() -> &'static str {
    NEEDED
}

/// Whether the CPU has `feature`; `None` for a name this check does not know.
#[cfg(target_arch = "x86_64")]
fn has(feature: &str) -> Option<bool> {
    use std::arch::is_x86_feature_detected as d;
    Some(match feature {
        "sse2" => d!("sse2"),
        "sse3" => d!("sse3"),
        "ssse3" => d!("ssse3"),
        "sse4.1" => d!("sse4.1"),
        "sse4.2" => d!("sse4.2"),
        "popcnt" => d!("popcnt"),
        "avx" => d!("avx"),
        "avx2" => d!("avx2"),
        "fma" => d!("fma"),
        "f16c" => d!("f16c"),
        "bmi1" => d!("bmi1"),
        "bmi2" => d!("bmi2"),
        "lzcnt" => d!("lzcnt"),
        "movbe" => d!("movbe"),
        "avxvnni" => d!("avxvnni"),
        "avx512f" => d!("avx512f"),
        "avx512cd" => d!("avx512cd"),
        "avx512vl" => d!("avx512vl"),
        "avx512dq" => d!("avx512dq"),
        "avx512bw" => d!("avx512bw"),
        "avx512vbmi" => d!("avx512vbmi"),
        "avx512vnni" => d!("avx512vnni"),
        "avx512bf16" => d!("avx512bf16"),
        _ => return None,
    })
}

#[cfg(not(target_arch = "x86_64"))]
fn has(_feature: &str) -> Option<bool> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_build_machine_has_what_it_built_for() {
        // Tests run where they were built: nothing can be missing here.
        assert_eq!(missing(), Vec::<&str>::new(), "needed: {}", needed());
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_default_build_needs_x86_64_v3_and_not_the_build_machine() {
        // `.cargo/config.toml` asks for x86-64-v3; a build tied to this machine would list
        // more (avx512f on this CI's CPU) and fail on older ones.
        let needed: Vec<&str> = needed().split(',').collect();
        for f in ["avx", "avx2", "fma", "f16c", "bmi2", "sse4.2"] {
            assert!(needed.contains(&f), "{f} in {needed:?}");
        }
        // Unless the Rust code itself was built for AVX-512 (`-C target-cpu=…`).
        if !cfg!(target_feature = "avx512f") {
            assert!(
                !needed.iter().any(|f| f.starts_with("avx512")),
                "{needed:?}"
            );
        }
        assert_eq!(has("no-such-feature"), None);
    }
}
