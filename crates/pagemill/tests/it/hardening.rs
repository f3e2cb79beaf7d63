//! Every read is bounded: a client reading a huge body stops at its limit with an error naming
//! it (`doctor` against a 70 MiB model list), and the simulator and `serve` answer an
//! oversized request 413 instead of handing it on empty.

use pagemill_client::error::FailureKind;
use pagemill_client::probe::{Status, check as check_endpoint};
use pagemill_client::{Client, Endpoint};
use pagemill_sim::{Profile, Reply, Sim, serve};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_its_limit_is_refused_with_the_limit_named() {
    // A model list of 70 MiB: doctor reads 64 MiB of it at most.
    let server = serve("127.0.0.1:0".parse().unwrap(), |req| {
        if req.path.ends_with("/models") {
            let mut body = b"{\"data\": [".to_vec();
            body.resize(70 << 20, b' ');
            body.extend_from_slice(b"]}");
            return Reply::status(200)
                .header("content-type", "application/json")
                .bytes(body);
        }
        pagemill_sim::script::completion("OK", None)
    })
    .await
    .unwrap();
    let report = check_endpoint(Endpoint::new("huge", server.base_url(), "m")).await;
    assert_eq!(report.status_of("reachable"), Some(Status::Fail));
    let said = format!("{report:?}");
    assert!(said.contains("over 64 MiB"), "{said}");

    // Any limit, named as given.
    let client = Client::new(Endpoint::new("huge", server.base_url(), "m")).unwrap();
    let err = client.get_json_limited("models", 1024).await.unwrap_err();
    assert_eq!(err.kind, FailureKind::TooLarge);
    assert!(err.message.contains("over 1 KiB"), "{}", err.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_request_is_answered_413() {
    let sim = Sim::start(Profile::instant()).await.unwrap();
    let client = Client::new(Endpoint::new("sim", sim.base_url(), "m")).unwrap();
    let big = bytes::Bytes::from(vec![b' '; (64 << 20) + 1]);
    let (status, body) = client
        .request_bytes(
            http::Method::POST,
            "chat/completions",
            Some("application/json"),
            big,
            1 << 20,
        )
        .await
        .unwrap();
    assert_eq!(status, 413);
    assert!(
        String::from_utf8_lossy(&body).contains("64 MiB"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    // At the limit, the request is read (and refused for what it is, not its size).
    let (status, _) = client
        .request_bytes(
            http::Method::POST,
            "chat/completions",
            Some("application/json"),
            bytes::Bytes::from_static(b"{}"),
            1 << 20,
        )
        .await
        .unwrap();
    assert_eq!(status, 400);
}

/// Writing to a pipe whose reader has gone (`pagemill report --format json | head`) ends
/// quietly with 0, as Unix tools do — not "error: Broken pipe" and 2.
#[test]
fn a_closed_pipe_ends_quietly() {
    use std::process::Stdio;
    let dir = crate::common::tempdir("hardening-pipe");
    std::fs::write(
        dir.join("memo.txt"),
        "Ada Lovelace wrote to Charles Babbage in 1843.\n",
    )
    .unwrap();
    let ok = crate::common::pagemill(&dir)
        .args(["run", "memo.txt", "-e", "sim", "-q", "--format", "json"])
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    for args in [
        vec!["report", "pagemill-out/ledger.sqlite", "--format", "json"],
        vec!["sim", "--print-profile"],
    ] {
        let mut child = crate::common::pagemill(&dir)
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The reader goes away before a byte is written.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert_eq!(String::from_utf8_lossy(&out.stderr), "", "{args:?}");
    }
}

/// `pagemill sim` beyond loopback: refused with no key, said out loud with one; with a key,
/// every route — the ground truth too — wants it, and a wrong one gets an OpenAI-shaped 401.
#[test]
fn a_server_beyond_loopback_needs_a_key_and_checks_it() {
    use std::io::BufRead as _;
    use std::process::Stdio;
    let dir = crate::common::tempdir("hardening-serve");
    let refused = crate::common::pagemill(&dir)
        .args(["sim", "--host", "0.0.0.0", "--port", "0"])
        .env_remove("PAGEMILL_SERVE_KEY")
        .output()
        .unwrap();
    assert_ne!(refused.status.code(), Some(0));
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("--insecure-no-auth") && said.contains("--api-key"),
        "{said}"
    );
    // `serve` the same, before any model is loaded.
    let refused = crate::common::pagemill(&dir)
        .args(["serve", "--host", "0.0.0.0", "--port", "0"])
        .env_remove("PAGEMILL_SERVE_KEY")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(5), "{said}");
    assert!(said.contains("--insecure-no-auth"), "{said}");

    let key = "serve-key-0123456789";
    let mut child = crate::common::pagemill(&dir)
        .args(["sim", "--host", "0.0.0.0", "--port", "0"])
        .env("PAGEMILL_SERVE_KEY", key)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let port = line
        .rsplit(':')
        .next()
        .and_then(|p| p.trim().trim_end_matches("/v1").parse::<u16>().ok())
        .unwrap_or_else(|| panic!("{line}"));
    let get = |path: &str, auth: Option<&str>| -> (u16, String) {
        use std::io::{Read as _, Write as _};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let auth = auth.map_or_else(String::new, |k| format!("Authorization: Bearer {k}\r\n"));
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let status = out.split_whitespace().nth(1).unwrap().parse().unwrap();
        (status, out)
    };
    for path in ["/v1/models", "/sim/log", "/sim/stats"] {
        let (status, body) = get(path, None);
        assert_eq!(status, 401, "{path}");
        assert!(body.contains("\"invalid_api_key\""), "{body}");
        assert_eq!(
            get(path, Some("serve-key-0123456780")).0,
            401,
            "{path}: a wrong key"
        );
        assert_eq!(get(path, Some(key)).0, 200, "{path}: the key");
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let warned = String::from_utf8_lossy(&out.stderr);
    assert!(warned.contains("beyond this machine"), "{warned}");
    assert!(!warned.contains(key), "the key is never printed");
}

/// Files that cannot trick a run: links to files are read and every other odd entry is named
/// with why it was not (a link to a directory, a broken link, a FIFO); an empty `.pdf` is no
/// empty text document; two inputs with the same name and bytes get a result file each; a
/// link planted where the temporary file used to go is not written through; names with
/// terminal escapes are printed inert; nothing to run creates nothing.
#[cfg(unix)]
#[test]
fn inputs_and_outputs_cannot_be_tricked() {
    use std::os::unix::fs::symlink;
    let dir = crate::common::tempdir("hardening-files");
    let docs = dir.join("docs");
    std::fs::create_dir_all(docs.join("a")).unwrap();
    std::fs::create_dir_all(docs.join("b")).unwrap();
    let memo = "Ada Lovelace wrote to Charles Babbage in 1843.\n";
    std::fs::write(docs.join("a/x.txt"), memo).unwrap();
    std::fs::write(docs.join("b/x.txt"), memo).unwrap();
    std::fs::write(
        dir.join("real.txt"),
        "Grace Hopper joined the Navy in 1943.\n",
    )
    .unwrap();
    symlink(dir.join("real.txt"), docs.join("link.txt")).unwrap();
    symlink(dir.join("gone.txt"), docs.join("broken.txt")).unwrap();
    symlink(&docs, docs.join("loop")).unwrap();
    std::fs::write(docs.join("empty.pdf"), b"").unwrap();
    let fifo = docs.join("pipe");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    std::fs::write(docs.join("evil\u{1b}]0;pwned\u{7}.txt"), memo).unwrap();
    // A link planted at the old temporary name of the run summary.
    std::fs::create_dir_all(dir.join("out")).unwrap();
    std::fs::write(dir.join("victim.txt"), "keep me").unwrap();
    symlink(dir.join("victim.txt"), dir.join("out/run-summary.json.tmp")).unwrap();

    let o = crate::common::pagemill(&dir)
        .args(["run", "docs", "-e", "sim", "-o", "out", "-q"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "inputs skipped: {stderr}");
    for said in [
        "a symbolic link to a directory, not followed",
        "a broken symbolic link",
        "not a regular file",
        "an empty file (0 bytes) named `.pdf`",
    ] {
        assert!(stderr.contains(said), "{said}: {stderr}");
    }
    assert!(
        !stderr.contains('\u{1b}') && !stdout.contains('\u{1b}'),
        "escapes printed raw"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("victim.txt")).unwrap(),
        "keep me"
    );
    let results: Vec<String> = std::fs::read_dir(dir.join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json") && n != "run-summary.json")
        .collect();
    // a/x.txt, b/x.txt, link.txt, the escaped name: four inputs, four files.
    assert_eq!(results.len(), 4, "{results:?}");
    assert_eq!(
        results.iter().filter(|n| n.starts_with("x.txt.")).count(),
        2
    );
    assert!(
        results.iter().any(|n| n.starts_with("link.txt.")),
        "{results:?}"
    );
    // No temporary file of ours left (the planted link is someone else's: left alone).
    let temps: Vec<String> = std::fs::read_dir(dir.join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp") && n != "run-summary.json.tmp")
        .collect();
    assert!(temps.is_empty(), "{temps:?}");

    // Nothing readable: a clear error, and no output folder or ledger made.
    let o = crate::common::pagemill(&dir)
        .args(["run", "/nonexistent/input", "-e", "sim", "-o", "nothing"])
        .output()
        .unwrap();
    assert_ne!(o.status.code(), Some(0));
    let said = String::from_utf8_lossy(&o.stderr);
    assert!(
        said.contains("no readable documents") && said.contains("no such file"),
        "{said}"
    );
    assert!(!dir.join("nothing").exists());
}

/// Each kind of failure has its own exit code (README, "Exit codes"): 2 usage, 3 stopped early
/// (tested in run.rs), 1 finished with work given up on (run.rs), 4 endpoint unusable, 5 bad
/// input — where every failure used to exit 2, like a usage error.
#[test]
fn failures_exit_with_their_own_codes() {
    let dir = crate::common::tempdir("hardening-exit");
    std::fs::write(
        dir.join("memo.txt"),
        "Ada Lovelace wrote to Charles Babbage.\n",
    )
    .unwrap();
    let code = |args: &[&str]| {
        let o = crate::common::pagemill(&dir).args(args).output().unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    // Usage: clap's own, and a value refused after parsing.
    assert_eq!(code(&["run", "--no-such-flag"]).0, Some(2));
    assert_eq!(
        code(&["run", "memo.txt", "-e", "sim", "--pack", "zero"]).0,
        Some(2)
    );
    assert_eq!(
        code(&["run", "memo.txt", "-e", "sim", "--tasks", "poems"]).0,
        Some(2)
    );
    // Checked as the command line is read: before the embedded model would start.
    let (c, said) = code(&["run", "memo.txt", "--response-format", "yaml"]);
    assert_eq!(c, Some(2), "{said}");
    assert!(said.contains("yaml") && !said.contains("model"), "{said}");
    let (c, said) = code(&["eval", "g.jsonl", "memo.txt", "--prompt-profile", "tiny"]);
    assert_eq!(c, Some(2), "{said}");
    // Bad input: nothing readable; a gold file that is not one.
    assert_eq!(code(&["run", "missing.txt", "-e", "sim"]).0, Some(5));
    std::fs::write(dir.join("gold.jsonl"), "not json\n").unwrap();
    assert_eq!(code(&["eval", "gold.jsonl", "--results", "."]).0, Some(5));
    // The endpoint cannot be used: nothing listens on its port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        dir.join("p.toml"),
        format!("[[endpoint]]\nname = \"down\"\nbase_url = \"http://127.0.0.1:{port}/v1\"\nmodel = \"m\"\n[endpoint.retry]\nmax_attempts = 1\n"),
    )
    .unwrap();
    let (c, said) = code(&["--config", "p.toml", "run", "memo.txt", "-q", "-o", "down"]);
    assert_eq!(c, Some(4), "{said}");
    assert_eq!(code(&["--config", "p.toml", "chat", "hello"]).0, Some(4));
    assert_eq!(code(&["--config", "p.toml", "doctor"]).0, Some(4));
    // An unknown endpoint's error names the built-in ones too (it said "(known: down)").
    let (c, said) = code(&["--config", "p.toml", "chat", "-e", "nope", "hi"]);
    assert_eq!(c, Some(4), "{said}");
    assert!(said.contains("known: down, sim"), "{said}");
    // A configuration that does not parse points at the annotated example.
    std::fs::write(dir.join("bad.toml"), "[[endpoint]\nname = 1\n").unwrap();
    let (_, said) = code(&["--config", "bad.toml", "chat", "hi"]);
    assert!(said.contains("pagemill.example.toml"), "{said}");
}

/// A file that cannot be read is skipped with its reason, the file named once (it used to be
/// "skipped locked.txt: cannot read `locked.txt`: …"); the others are run. As root, where
/// permissions do not bind, the run is made as `nobody` (`runuser`).
#[cfg(unix)]
#[test]
fn a_file_that_cannot_be_read_is_named_once() {
    use std::os::unix::fs::PermissionsExt;
    let dir = crate::common::tempdir("hardening-perm");
    std::fs::write(dir.join("locked.txt"), "secret\n").unwrap();
    std::fs::write(
        dir.join("ok.txt"),
        "Ada Lovelace wrote to Charles Babbage.\n",
    )
    .unwrap();
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"));
    let mut cmd = if root {
        // `nobody` may not reach the build directory: a copy of the binary beside the files.
        let bin = dir.join("pagemill");
        std::fs::copy(env!("CARGO_BIN_EXE_pagemill"), &bin).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let mut c = std::process::Command::new("runuser");
        c.args(["-u", "nobody", "--"]).arg(bin);
        c
    } else {
        std::process::Command::new(env!("CARGO_BIN_EXE_pagemill"))
    };
    std::fs::set_permissions(
        dir.join("locked.txt"),
        std::fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    let o = cmd
        .current_dir(&dir)
        .env("NO_COLOR", "1")
        .args([
            "run",
            "locked.txt",
            "ok.txt",
            "-e",
            "sim",
            "-q",
            "-o",
            "out",
        ])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{said}");
    let line = said
        .lines()
        .find(|l| l.contains("Permission denied"))
        .unwrap_or_else(|| panic!("{said}"));
    assert_eq!(line.matches("locked.txt").count(), 1, "{line}");
    assert_eq!(said.matches("Permission denied").count(), 1, "{said}");
}

/// Shell completions and a manual page, from the same definitions as `--help`.
#[test]
fn completions_and_a_man_page_are_printed() {
    let dir = crate::common::tempdir("cli-completions");
    let run = |args: &[&str]| {
        let o = crate::common::pagemill(&dir).args(args).output().unwrap();
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    };
    let bash = run(&["completions", "bash"]);
    assert!(
        bash.contains("_pagemill()") && bash.contains("--response-format"),
        "{bash}"
    );
    assert!(run(&["completions", "zsh"]).contains("#compdef pagemill"));
    assert!(run(&["completions", "fish"]).contains("complete -c pagemill"));
    let man = run(&["man"]);
    assert!(
        man.starts_with(".ie") || man.contains(".TH pagemill"),
        "{}",
        &man[..200.min(man.len())]
    );
    assert!(man.contains("eval"), "the subcommands are listed");
}

/// With no `./pagemill.toml`, the user's `$XDG_CONFIG_HOME/pagemill/config.toml` is read, and
/// `${VAR}` in its values comes from the environment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_user_configuration_and_its_variables_are_read() {
    let sim = pagemill_sim::Sim::start(pagemill_sim::Profile::instant())
        .await
        .unwrap();
    let dir = crate::common::tempdir("cli-xdg");
    let xdg = dir.join("xdg");
    std::fs::create_dir_all(xdg.join("pagemill")).unwrap();
    std::fs::write(
        xdg.join("pagemill/config.toml"),
        "[[endpoint]]\nname = \"fromxdg\"\nbase_url = \"${SIM_URL}\"\nmodel = \"sim-model\"\n",
    )
    .unwrap();
    let o = crate::common::pagemill(&dir)
        .env("XDG_CONFIG_HOME", &xdg)
        .env("SIM_URL", sim.base_url())
        .args(["chat", "-e", "fromxdg", "hello"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Unset, the variable is named.
    let o = crate::common::pagemill(&dir)
        .env("XDG_CONFIG_HOME", &xdg)
        .env_remove("SIM_URL")
        .args(["chat", "-e", "fromxdg", "hello"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&o.stderr);
    assert!(
        said.contains("${SIM_URL}") && said.contains("not set"),
        "{said}"
    );
}

/// Tables fit the terminal's width (here `$COLUMNS`, as output is not a terminal): the run
/// table was 137 columns wide.
#[test]
fn tables_fit_the_width_they_are_given() {
    let dir = crate::common::tempdir("cli-width");
    std::fs::write(
        dir.join("memo.txt"),
        "Ada Lovelace wrote to Charles Babbage in 1843.\n",
    )
    .unwrap();
    let widest = |columns: Option<&str>| {
        let mut cmd = crate::common::pagemill(&dir);
        cmd.args(["run", "memo.txt", "-e", "sim", "--force"]);
        if let Some(c) = columns {
            cmd.env("COLUMNS", c);
        }
        let o = cmd.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout)
            .unwrap()
            .lines()
            .filter(|l| l.starts_with(['┌', '│', '└', '╞']))
            .map(|l| l.chars().count())
            .max()
            .unwrap()
    };
    assert!(widest(None) > 100, "the natural width");
    assert!(widest(Some("80")) <= 80);
}
