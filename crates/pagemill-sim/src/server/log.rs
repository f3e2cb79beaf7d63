//! The ground-truth log: what the server did with each request (received, each write's due
//! and actual send time, tokens, status, fault), on the client's `CLOCK_MONOTONIC` clock.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::Serialize;

/// One body write as the server made it.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct ChunkLog {
    /// When the connection took it to write to the socket (when the handler handed it over,
    /// for a frame the connection never took).
    pub sent_ns: u64,
    /// When the schedule wanted it sent, if it had a schedule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub due_ns: Option<u64>,
    /// Content tokens it carried.
    pub tokens: u32,
}

/// What the server did with one request: the ground truth tests and benchmarks compare with.
#[derive(Debug, Clone, Serialize, Default)]
pub struct LogEntry {
    /// Request number.
    pub index: u64,
    /// Method and path, e.g. `POST /v1/chat/completions`.
    pub route: String,
    /// The client's name for the request (`x-pagemill-request-id`), if it sent one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// When the request had been read.
    pub received_ns: u64,
    /// When headers went out (`None` on a reset before headers).
    pub headers_ns: Option<u64>,
    /// Every body write.
    pub chunks: Vec<ChunkLog>,
    /// When the response ended (or broke).
    pub done_ns: Option<u64>,
    /// Status sent (0 when none).
    pub status: u16,
    /// Prompt tokens counted.
    pub prompt_tokens: u64,
    /// Tokens charged to the tokens/min limit (prompt + `max_tokens`), 0 when not admitted.
    #[serde(default)]
    pub rate_tokens: u64,
    /// Prompt tokens served from the emulated cache.
    pub cached_tokens: u64,
    /// Completion tokens generated.
    pub completion_tokens: u64,
    /// Time spent queued for a slot.
    pub queued_ns: u64,
    /// Fault injected, if any.
    pub fault: Option<String>,
    /// The connection it came on (numbered from 1 in accept order).
    pub connection: u64,
    /// Its place on that connection (1: the connection's first request).
    pub connection_request: u64,
    /// On a TLS connection's first request, what its handshakes took on the server's side
    /// (modelled round trips and the real handshake), from accepting the socket to being ready
    /// to read: what the client's connect waited for. (On plain TCP the client's connect does
    /// not wait: the first request's `network_ns` holds the handshakes.)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_setup_ns: Option<u64>,
    /// Network time this request spent before it was read, slept by the simulator: its flight
    /// (one round trip, there and back), a new connection's slow start and, on plain TCP, the
    /// handshake the client's connect did not wait for. Part of the client's TTFT that the
    /// server's `received_ns` does not see.
    pub network_ns: u64,
    /// When the request's last bytes reached the server's socket (the kernel's receive time
    /// where it gives one): `received_ns` less the server's own wait to read the request and
    /// the modelled network time. On an HTTP/2 connection, the latest bytes of any stream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arrived_ns: Option<u64>,
    /// The request body, as JSON where it was JSON (not in the public log).
    #[serde(skip)]
    pub body: serde_json::Value,
}

impl LogEntry {
    /// The path part of the route.
    pub fn path(&self) -> &str {
        self.route
            .split_once(' ')
            .map_or(&self.route[..], |(_, p)| p)
    }
}

/// The ground-truth log: the last `capacity` entries in memory, and optionally every entry as a
/// JSONL line in a file.
#[derive(Debug)]
pub struct Log {
    entries: Mutex<VecDeque<LogEntry>>,
    capacity: usize,
    file: Option<Mutex<std::io::BufWriter<std::fs::File>>>,
}

impl Log {
    /// A log keeping `capacity` entries in memory.
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(VecDeque::new()),
            capacity,
            file: None,
        }
    }

    /// Also appends every entry to `path` as JSONL.
    pub fn with_file(mut self, path: &std::path::Path) -> std::io::Result<Self> {
        let f = std::fs::File::create(path)?;
        self.file = Some(Mutex::new(std::io::BufWriter::new(f)));
        Ok(self)
    }

    pub(super) fn push(&self, entry: LogEntry) {
        if let Some(f) = &self.file {
            use std::io::Write;
            let mut f = f.lock().unwrap_or_else(|e| e.into_inner());
            if let Ok(line) = serde_json::to_string(&entry) {
                // Flushed per entry: a killed simulator keeps every record it wrote.
                let _ = writeln!(f, "{line}").and_then(|()| f.flush());
            }
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() == self.capacity {
            entries.pop_front();
        }
        if self.capacity > 0 {
            entries.push_back(entry);
        }
    }

    /// Flushes the JSONL file, if any.
    pub fn flush(&self) {
        if let Some(f) = &self.file {
            use std::io::Write;
            let _ = f.lock().unwrap_or_else(|e| e.into_inner()).flush();
        }
    }

    /// The entries in memory, oldest first.
    pub fn entries(&self) -> Vec<LogEntry> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<LogEntry> = entries.iter().cloned().collect();
        v.sort_by_key(|e| e.index);
        v
    }
}
