# Shared by the benchmark scripts (sourced, not run).

# The release binary's path, built first if needed; extra arguments go before `cargo`
# (e.g. `release_bin env RUSTFLAGS=…`).
release_bin() {
  # The set-up the build needs (cmake and libclang for llama.cpp), as the README's commands
  # get it: without it the build fails and no binary is named.
  local exports
  exports=$(./dev env) || return 1
  eval "$exports"
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

# Upstream llama.cpp's llama-server, built once from PyPI's llama-cpp-python source package
# (its vendored llama.cpp) into ~/.cache/pagemill/llama-server-VERSION, for the same x86-64-v3
# level as pagemill's own build (a native build can SIGILL on VMs that advertise AMX).
# Prints the binary's path; $LLAMA_SERVER wins when set.
LLAMA_CPP_PYTHON_VERSION=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
llama_server_bin() {
  if [[ -n ${LLAMA_SERVER:-} ]]; then echo "$LLAMA_SERVER"; return; fi
  local dir=$HOME/.cache/pagemill/llama-server-$LLAMA_CPP_PYTHON_VERSION
  if [[ ! -x $dir/bin/llama-server ]]; then
    local src; src=$(mktemp -d)
    echo "building llama-server from llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION (once, into $dir)" >&2
    # The source archive itself, from PyPI's simple index (hash-checked): `pip download
    # --no-binary :all:` would also build its build dependencies (cmake, ninja) from source.
    python3 - "$LLAMA_CPP_PYTHON_VERSION" "$src" <<'PY'
import hashlib, re, sys, urllib.request
version, dest = sys.argv[1], sys.argv[2]
page = urllib.request.urlopen("https://pypi.org/simple/llama-cpp-python/").read().decode()
url, sha = re.search(rf'href="([^"#]*llama_cpp_python-{re.escape(version)}\.tar\.gz)#sha256=([0-9a-f]+)"', page).groups()
data = urllib.request.urlopen(url).read()
assert hashlib.sha256(data).hexdigest() == sha, "sha256 mismatch"
open(f"{dest}/llama_cpp_python-{version}.tar.gz", "wb").write(data)
PY
    tar xzf "$src"/llama_cpp_python-*.tar.gz -C "$src"
    local cmake=${CMAKE:-cmake}
    "$cmake" -S "$src"/llama_cpp_python-*/vendor/llama.cpp -B "$src/build" -DCMAKE_BUILD_TYPE=Release \
      -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
      -DLLAMA_BUILD_SERVER=ON -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DBUILD_SHARED_LIBS=OFF > "$src/cmake.log" 2>&1
    "$cmake" --build "$src/build" --target llama-server -j "$(nproc)" > "$src/build.log" 2>&1 \
      || { tail -20 "$src/build.log" >&2; return 1; }
    mkdir -p "$dir/bin" && cp "$src/build/bin/llama-server" "$dir/bin/"
    rm -rf "$src"
  fi
  echo "$dir/bin/llama-server"
}

# Writes to FILE the simulator's PROFILE with its rate limits set to RPM requests and TPM
# tokens a minute.
limited_profile() { # BIN PROFILE FILE RPM TPM
  "$1" sim -p "$2" --print-profile > "$3"
  python3 - "$3" "$4" "$5" <<'PY'
import re, sys
p, rpm, tpm = sys.argv[1:]
s = open(p).read()
s = re.sub(r"requests_per_minute = \d+", f"requests_per_minute = {rpm}", s)
s = re.sub(r"tokens_per_minute = \d+", f"tokens_per_minute = {tpm}", s)
open(p, "w").write(s)
PY
}

# Writes into DEST every document of SRC COPIES times under new names, each page marked with its
# copy (so no two copies share a unit), as text files; prints how many pages that makes.
copies_corpus() { # BIN SRC DEST COPIES
  "$1" ingest --dump "$3.pages" "$2" > /dev/null || true
  python3 - "$3" "$4" <<'PY'
import glob, os, sys
out, copies = sys.argv[1], int(sys.argv[2])
os.makedirs(out, exist_ok=True)
n = 0
for d in sorted(glob.glob(out + ".pages/*")):
    texts = [open(p, encoding="utf-8").read() for p in sorted(glob.glob(os.path.join(d, "page-*.txt")))]
    for c in range(1, copies + 1):
        with open(os.path.join(out, f"{os.path.basename(d)}.copy{c}.txt"), "w", encoding="utf-8") as f:
            f.write("\f".join(f"[copy {c}]\n{t}" for t in texts))
        n += len(texts)
print(n)
PY
}
