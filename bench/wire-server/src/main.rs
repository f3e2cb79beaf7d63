//! `wire-server [--port N] [--chunks N] [--delay-ms MS] [--threads N] [--nodelay BOOL]`: a loopback
//! OpenAI-compatible `POST /v1/chat/completions` (and `GET /v1/models`) that streams every
//! request the same answer — N content chunks of one token each, a usage chunk and `[DONE]` —
//! writing and flushing each SSE event on its own, as real inference servers do (one write per
//! token). `--delay-ms` spaces the content chunks; 0 sends them back to back. HTTP/1.1
//! keep-alive, chunked transfer encoding; the prompt is not read beyond its length.
//!
//! Deliberately independent of pagemill (hand-written HTTP on tokio, no shared code), so a
//! figure measured against it is not one only pagemill's simulator can produce.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

struct Opts {
    port: u16,
    chunks: usize,
    delay: Duration,
    threads: usize,
    nodelay: bool,
}

fn opts() -> Opts {
    let mut o = Opts {
        port: 0,
        chunks: 16,
        delay: Duration::ZERO,
        threads: 1,
        nodelay: true,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let value = pair.get(1).map(String::as_str).unwrap_or("");
        match pair[0].as_str() {
            "--port" => o.port = value.parse().expect("--port N"),
            "--chunks" => o.chunks = value.parse().expect("--chunks N"),
            "--delay-ms" => o.delay = Duration::from_secs_f64(value.parse::<f64>().expect("--delay-ms MS") / 1000.0),
            "--threads" => o.threads = value.parse().expect("--threads N"),
            "--nodelay" => o.nodelay = value.parse().expect("--nodelay true|false"),
            other => panic!("unknown argument {other}"),
        }
    }
    o
}

fn main() {
    let o = opts();
    let rt = if o.threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(o.threads)
            .enable_all()
            .build()
    }
    .expect("runtime");
    rt.block_on(serve(o));
}

async fn serve(o: Opts) {
    // Room for a client's burst of new connections: `TcpListener::bind` queues 128, and a
    // handshake dropped from a full queue is retried a second later (measured as connect time).
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_reuseaddr(true).expect("SO_REUSEADDR");
    socket.bind(([127, 0, 0, 1], o.port).into()).expect("bind");
    let listener: TcpListener = socket.listen(4096).expect("listen");
    // The port on stdout, for scripts that asked for port 0.
    println!("{}", listener.local_addr().expect("addr").port());
    let events = std::sync::Arc::new(Events::new(o.chunks));
    loop {
        let Ok((sock, _)) = listener.accept().await else { continue };
        // With TCP_NODELAY (the default here; uvicorn and Go servers set it) every event is its
        // own segment; without it (hyper's default), Nagle's algorithm lets the events written
        // while one is unacknowledged share a segment.
        let _ = sock.set_nodelay(o.nodelay);
        let events = events.clone();
        let delay = o.delay;
        tokio::spawn(async move {
            let _ = connection(sock, &events, delay).await;
        });
    }
}

/// Every event of the answer, framed as an HTTP chunk holding one SSE event.
struct Events {
    content: Vec<u8>,
    usage: Vec<u8>,
    done: Vec<u8>,
    chunks: usize,
}

fn http_chunk(payload: &str) -> Vec<u8> {
    let mut v = format!("{:x}\r\n", payload.len()).into_bytes();
    v.extend_from_slice(payload.as_bytes());
    v.extend_from_slice(b"\r\n");
    v
}

impl Events {
    fn new(chunks: usize) -> Self {
        let content = http_chunk(
            "data: {\"id\":\"chatcmpl-wire\",\"object\":\"chat.completion.chunk\",\"created\":0,\"model\":\"wire\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" word\"},\"finish_reason\":null}]}\n\n",
        );
        let usage = http_chunk(&format!(
            "data: {{\"id\":\"chatcmpl-wire\",\"object\":\"chat.completion.chunk\",\"created\":0,\"model\":\"wire\",\"choices\":[{{\"index\":0,\"delta\":{{}},\"finish_reason\":\"stop\"}}],\"usage\":{{\"prompt_tokens\":0,\"completion_tokens\":{chunks},\"total_tokens\":{chunks}}}}}\n\n"
        ));
        let mut done = http_chunk("data: [DONE]\n\n");
        done.extend_from_slice(b"0\r\n\r\n");
        Self {
            content,
            usage,
            done,
            chunks,
        }
    }
}

const STREAM_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n";

async fn connection(mut sock: TcpStream, ev: &Events, delay: Duration) -> std::io::Result<()> {
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    loop {
        // Headers.
        let end = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i + 4;
            }
            let mut tmp = [0u8; 16 * 1024];
            let n = sock.read(&mut tmp).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&tmp[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let get = head.starts_with("get ");
        while buf.len() < end + length {
            let mut tmp = [0u8; 16 * 1024];
            let n = sock.read(&mut tmp).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&tmp[..n]);
        }
        buf.drain(..end + length);
        if get {
            let body = b"{\"object\":\"list\",\"data\":[{\"id\":\"wire\",\"object\":\"model\"}]}";
            let reply = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                body.len()
            );
            sock.write_all(reply.as_bytes()).await?;
            sock.write_all(body).await?;
            continue;
        }
        // The stream: one write per event, each flushed to the socket before the next.
        sock.write_all(STREAM_HEAD).await?;
        for _ in 0..ev.chunks {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            sock.write_all(&ev.content).await?;
        }
        sock.write_all(&ev.usage).await?;
        sock.write_all(&ev.done).await?;
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
