//! Records which x86 instruction-set extensions this build's llama.cpp was compiled for, so the
//! engine can refuse to start on a CPU without them (a clear error instead of SIGILL).
//!
//! llama-cpp-sys-2 compiles ggml with the `GGML_*` options it is given (`.cargo/config.toml`
//! sets x86-64-v3) and, under `-C target-cpu=…`, with everything that target enables. Both reach
//! this script the same way they reach llama-cpp-sys-2's: as environment variables.

fn main() {
    const OPTIONS: &[(&str, &[&str])] = &[
        ("GGML_SSE42", &["sse4.2"]),
        ("GGML_AVX", &["avx"]),
        ("GGML_AVX2", &["avx2"]),
        ("GGML_FMA", &["fma"]),
        ("GGML_F16C", &["f16c"]),
        ("GGML_BMI2", &["bmi2"]),
        ("GGML_AVX_VNNI", &["avxvnni"]),
        (
            "GGML_AVX512",
            &["avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw"],
        ),
        ("GGML_AVX512_VBMI", &["avx512vbmi"]),
        ("GGML_AVX512_VNNI", &["avx512vnni"]),
        ("GGML_AVX512_BF16", &["avx512bf16"]),
    ];
    let mut needed: Vec<String> = Vec::new();
    for (var, features) in OPTIONS {
        println!("cargo:rerun-if-env-changed={var}");
        let on = std::env::var(var).is_ok_and(|v| {
            matches!(
                v.to_ascii_uppercase().as_str(),
                "ON" | "1" | "TRUE" | "YES" | "Y"
            )
        });
        if on {
            needed.extend(features.iter().map(|f| (*f).to_owned()));
        }
    }
    // Under `-C target-cpu=…` ggml is built for that CPU (GGML_NATIVE, or -march), and so is
    // the Rust code: everything the target enables is needed.
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("x86_64") {
        if let Ok(features) = std::env::var("CARGO_CFG_TARGET_FEATURE") {
            needed.extend(features.split(',').map(str::to_owned));
        }
    } else {
        needed.clear();
    }
    needed.sort();
    needed.dedup();
    println!(
        "cargo:rustc-env=PAGEMILL_GGML_X86_FEATURES={}",
        needed.join(",")
    );
}
