# Shared by the benchmark scripts (sourced, not run).

# The release binary's path, built first if needed; extra arguments go before `cargo`
# (e.g. `release_bin env RUSTFLAGS=…`).
release_bin() {
  "$@" cargo build --release --locked -p pagemill --message-format=json 2>/dev/null \
    | python3 -c 'import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("executable") and m["target"]["name"]=="pagemill": print(m["executable"])' | tail -1
}

# A free loopback port.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Waits until the OpenAI-compatible servers on these ports answer /v1/models (20 s at most).
wait_ready() {
  local p
  for p in "$@"; do
    for _ in $(seq 200); do curl -sf "http://127.0.0.1:$p/v1/models" > /dev/null && break; sleep 0.1; done
  done
}

# pagemill.toml endpoints for NAME:PORT pairs, model `local`, generous timeouts.
endpoints_toml() {
  local pair
  for pair in "$@"; do
    cat <<TOML
[[endpoint]]
name = "${pair%%:*}"
base_url = "http://127.0.0.1:${pair##*:}/v1"
model = "local"
transport = { request_timeout_secs = 600, idle_timeout_secs = 600 }

TOML
  done
}
