//! Every read is bounded: a client reading a huge body stops at its limit with an error naming
//! it (`doctor` against a 70 MiB model list), and the simulator and `serve` answer an
//! oversized request 413 instead of handing it on empty.

use pagemill::commands::doctor::{Status, check_endpoint, status_of};
use pagemill_client::error::FailureKind;
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
    assert_eq!(status_of(&report, "reachable"), Some(Status::Fail));
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
    let dir = crate::chat::tempdir("hardening-pipe");
    std::fs::write(
        dir.join("memo.txt"),
        "Ada Lovelace wrote to Charles Babbage in 1843.\n",
    )
    .unwrap();
    let ok = crate::chat::pagemill(&dir)
        .args(["run", "memo.txt", "-e", "sim", "-q", "--json"])
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
        let mut child = crate::chat::pagemill(&dir)
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
    let dir = crate::chat::tempdir("hardening-serve");
    let refused = crate::chat::pagemill(&dir)
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

    let key = "serve-key-0123456789";
    let mut child = crate::chat::pagemill(&dir)
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
