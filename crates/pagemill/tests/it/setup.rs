//! `./dev`, the README's two commands with their set-up: on a system it does not install
//! packages on, it stops and names the exact packages and the command for that system.

use std::path::Path;
use std::process::Command;

use crate::common::tempdir;

/// Runs `./dev setup --tests` as if on `os`, with a PATH that holds only the shell tools the
/// script uses and cargo: no C++ compiler, no Python, no poppler, no Chromium.
fn setup_on(os: &str) -> (Option<i32>, String) {
    let bin = tempdir(&format!("dev-{os}"));
    let path = std::env::var_os("PATH").unwrap();
    for tool in [
        "bash", "uname", "sed", "sort", "head", "id", "dirname", "cargo",
    ] {
        let found = std::env::split_paths(&path)
            .map(|d| d.join(tool))
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("`{tool}` on PATH"));
        std::os::unix::fs::symlink(found, bin.join(tool)).unwrap();
    }
    let dev = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dev");
    let out = Command::new(bin.join("bash"))
        .arg(dev)
        .args(["setup", "--tests"])
        .env_clear()
        .env("PATH", &bin)
        .env("HOME", &bin)
        .env("PAGEMILL_OS", os)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn dev_names_the_exact_packages_on_fedora_arch_and_macos() {
    for (os, command) in [
        (
            "fedora",
            "sudo dnf install gcc-c++ python3-pip poppler-utils chromium",
        ),
        ("arch", "sudo pacman -S gcc python-pip poppler chromium"),
        (
            "macos",
            "xcode-select --install; brew install python; brew install poppler; brew install --cask chromium",
        ),
    ] {
        let (code, stderr) = setup_on(os);
        assert_eq!(code, Some(1), "{os}: {stderr}");
        assert!(
            stderr.contains(&format!("install them with: {command}\n")),
            "{os}: {stderr}"
        );
        // Each package comes with the reason it is needed.
        assert!(
            stderr.contains("llama.cpp (the embedded model) is C++"),
            "{stderr}"
        );
        assert!(stderr.contains("headless Chromium"), "{stderr}");
    }
}
