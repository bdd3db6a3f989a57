#!/usr/bin/env bash
# Polyglot tests: a real auditlog-server on a free loopback port, called from
# Python (grpcio, stubs generated at test time) and from Node (@grpc/grpc-js,
# proto loaded at run time), as services in other languages would call it.
#
#   bash tests/polyglot/run.sh
#
# Needs python3 (with venv) and node/npm besides Rust. The Python venv and
# node_modules live in <cargo target dir>/polyglot/ and are reused while
# requirements.txt / package-lock.json are unchanged; nothing lands in the
# tree. Ends with "polyglot: N passed, N failed" and exits non-zero on any
# failure, including a server that does not exit 0 on SIGTERM.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

started=$SECONDS
step() { printf 'polyglot [%3ss] %s\n' "$((SECONDS - started))" "$*"; }
sha() { cat "$@" | sha256sum | cut -d' ' -f1; }

# Installed state is shared between runs: one run at a time.
target_dir="$(cargo metadata --no-deps --format-version 1 |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
work="$target_dir/polyglot"
mkdir -p "$work"
if command -v flock >/dev/null; then
  exec 9>"$work/.lock"
  flock 9
fi

# --- the server ---------------------------------------------------------------
step "building auditlog-server and the auditlog CLI"
cargo build --quiet -p auditlog-server -p auditlog-client --bins
server_bin="$target_dir/debug/auditlog-server"
cli_bin="$target_dir/debug/auditlog"

# --- Python -------------------------------------------------------------------
venv="$work/venv"
py="$venv/bin/python"
want="$(sha "$here/requirements.txt"; python3 --version)"
if [[ ! -x "$py" || "$(cat "$venv/.installed" 2>/dev/null)" != "$want" ]] ||
  ! "$py" -c 'import grpc, grpc_tools, grpc_status, grpc_health, grpc_reflection' 2>/dev/null; then
  step "creating the Python venv in $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$py" -m pip install --quiet --disable-pip-version-check --no-input -r "$here/requirements.txt"
  printf '%s' "$want" >"$venv/.installed"
else
  step "Python venv up to date ($venv)"
fi

# --- Node ---------------------------------------------------------------------
node_dir="$work/node"
want="$(sha "$here/package.json" "$here/package-lock.json"; node --version)"
if [[ ! -d "$node_dir/node_modules" || "$(cat "$node_dir/.installed" 2>/dev/null)" != "$want" ]]; then
  step "installing Node packages in $node_dir"
  rm -rf "$node_dir"
  mkdir -p "$node_dir"
  cp "$here/package.json" "$here/package-lock.json" "$node_dir/"
  (cd "$node_dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
  printf '%s' "$want" >"$node_dir/.installed"
else
  step "Node packages up to date ($node_dir)"
fi

# --- start the server ---------------------------------------------------------
tmp="$(mktemp -d "${TMPDIR:-/tmp}/auditlog-polyglot.XXXXXX")"
server_pid=""
log_shown=0
cleanup() {
  local rc=$?
  if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  if [[ $rc -ne 0 && $log_shown -eq 0 && -f "$tmp/server.log" ]]; then
    echo "polyglot: server log (last 40 lines):" >&2
    tail -n 40 "$tmp/server.log" >&2 || true
  fi
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

hook_secret="whsec_$(python3 -c 'import base64, os; print(base64.b64encode(os.urandom(24)).decode())')"

# A port picked free can be taken before the server binds it: try again.
for attempt in 1 2 3; do
  port="$(free_port)"
  addr="127.0.0.1:$port"
  rm -rf "$tmp/data"
  step "starting auditlog-server on $addr (data in $tmp/data)"
  hook_port="$(free_port)"
  # Every event goes out as a signed webhook to test_webhooks.py's receiver.
  cat >"$tmp/server.toml" <<TOML
[[webhooks]]
name = "python"
url = "http://127.0.0.1:$hook_port/hook"
secret = "$hook_secret"
start = "beginning"
max_backoff_secs = 1
TOML
  NO_COLOR=1 "$server_bin" --config "$tmp/server.toml" --listen "$addr" --data-dir "$tmp/data" \
    >"$tmp/server.log" 2>&1 </dev/null &
  server_pid=$!
  if "$py" "$here/test_client.py" --target "$addr" --wait-healthy 60 --pid "$server_pid"; then
    break
  fi
  if kill -0 "$server_pid" 2>/dev/null || [[ $attempt -eq 3 ]]; then
    echo "polyglot: the server did not become healthy" >&2
    exit 1
  fi
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
  echo "polyglot: the server exited at start (port taken?); retrying" >&2
  tail -n 5 "$tmp/server.log" >&2 || true
done

# --- the tests ----------------------------------------------------------------
passed=0
failed=0
failures=()
run() {
  local name=$1
  shift
  step "running $name"
  if "$@"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    failures+=("$name")
  fi
}
run "Python client (test_client.py)" "$py" "$here/test_client.py" --target "$addr"
run "Node client (test_client.mjs)" env AUDITLOG_TARGET="$addr" POLYGLOT_NODE_DIR="$node_dir" \
  node "$here/test_client.mjs"
run "Webhooks verified in Python (test_webhooks.py)" "$py" "$here/test_webhooks.py" \
  --target "$addr" --hook-port "$hook_port" --secret "$hook_secret"
# The verifier key as an operator hands it out, from the data directory.
verifier_key="$("$server_bin" --config "$tmp/server.toml" --data-dir "$tmp/data" \
  --print-verifier-key 2>/dev/null)"
# A bundle of everything logged so far, for the Python bundle verifier.
"$cli_bin" --server "$addr" bundle export --since 2000-01-01 --output "$tmp/all.bundle.json" >/dev/null
run "Checkpoints, proofs and a bundle verified in Python (test_proofs.py)" "$py" "$here/test_proofs.py" \
  --target "$addr" --data-dir "$tmp/data" --verifier-key "$verifier_key" --bundle "$tmp/all.bundle.json"

# --- stop the server: SIGTERM must end it with exit code 0 --------------------
step "stopping the server (SIGTERM)"
kill -TERM "$server_pid"
for _ in $(seq 300); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$server_pid" 2>/dev/null; then
  echo "polyglot: the server is still running 30 s after SIGTERM" >&2
  failed=$((failed + 1))
  failures+=("server shutdown")
else
  server_rc=0
  wait "$server_pid" || server_rc=$?
  server_pid=""
  if [[ $server_rc -ne 0 ]]; then
    echo "polyglot: the server exited with $server_rc after SIGTERM, not 0" >&2
    failed=$((failed + 1))
    failures+=("server shutdown")
  fi
fi

if ((failed > 0)); then
  printf 'polyglot: failed: %s\n' "${failures[@]}" >&2
  echo "polyglot: server log (last 40 lines):" >&2
  tail -n 40 "$tmp/server.log" >&2 || true
  log_shown=1
fi
step "done"
echo "polyglot: $passed passed, $failed failed"
((failed == 0))
