#!/usr/bin/env bash
# The lab's Hub stand-in: olah (offline mode) serving local git repositories, behind gate.py (tokens, gated repos,
# Range, lab controls). A simulation for tests, never shipped with the collection.
#
#   hub.sh start [ADDR...]  create the virtualenv and the repos if needed, start the servers (idempotent): the gate
#                           listens on 127.0.0.1 and on each ADDR (the lab networks' gateways), not on every
#                           interface; olah on 127.0.0.1 only
#   hub.sh stop [ADDR...]   stop this instance's servers; with ADDR, only stop listening there
#   hub.sh status           print whether it runs and where (exit 1 if not running)
#   hub.sh url [--host A]   print the endpoint URL (for hosts: --host <lab network gateway>)
#   hub.sh build            (re)build the repositories
#   hub.sh token NAME       print a lab token: granted (access to the gated repo) or no-access
#   hub.sh move-branch REPO BRANCH REV   point a branch at another commit or tag (a push to the Hub)
#
# Environment: HUB_PORT (18090), HUB_OLAH_PORT (HUB_PORT+1000), HUB_STATE_DIR (tests/lab/.state/hub; one per
# instance), HUB_PYTHON (python3, >= 3.10). Several instances with their own port and state dir coexist.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LAB_STATE="$(cd "$HERE/.." && pwd)/.state"
PORT="${HUB_PORT:-18090}"
OLAH_PORT="${HUB_OLAH_PORT:-$((PORT + 1000))}"
STATE="${HUB_STATE_DIR:-$LAB_STATE/hub}"
VENV="$LAB_STATE/hub-venv"
PYTHON="${HUB_PYTHON:-python3}"
OLAH_VERSION=0.5.4
REQUIREMENTS="olah==$OLAH_VERSION safetensors==0.8.0 numpy"

die() { echo "hub.sh: $*" >&2; exit 1; }

ensure_venv() {
  mkdir -p "$LAB_STATE"
  # One virtualenv for all instances; a lock keeps parallel starts from building it twice.
  exec 9>"$LAB_STATE/hub-venv.lock"
  flock 9
  if [[ "$(cat "$VENV/.lab-requirements" 2>/dev/null)" != "$REQUIREMENTS" ]]; then
    command -v "$PYTHON" >/dev/null || die "HUB_PYTHON=$PYTHON not found: install python3 (>= 3.10) or set HUB_PYTHON"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV" || die "cannot create a virtualenv with $PYTHON: install python3-venv"
    # shellcheck disable=SC2086
    "$VENV/bin/pip" install --quiet --disable-pip-version-check $REQUIREMENTS >"$LAB_STATE/hub-venv-pip.log" 2>&1 \
      || { tail -5 "$LAB_STATE/hub-venv-pip.log" >&2; die "pip install $REQUIREMENTS failed (PyPI reachable?)"; }
    echo "$REQUIREMENTS" >"$VENV/.lab-requirements"
  fi
  flock -u 9
  exec 9>&-
}

build_repos() {
  command -v git >/dev/null || die "git not found: apt-get install git"
  local stamp
  stamp="$(sha256sum "$HERE/build_repos.py" | cut -d' ' -f1)"
  if [[ "${1:-}" == force || "$(cat "$STATE/mirrors/.built" 2>/dev/null)" != "$stamp" ]]; then
    rm -rf "$STATE/mirrors"
    mkdir -p "$STATE/mirrors"
    "$VENV/bin/python" "$HERE/build_repos.py" "$STATE/mirrors" >"$STATE/repos.txt"
    echo "$stamp" >"$STATE/mirrors/.built"
  fi
}

alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

ready() {
  curl -sf -o /dev/null --max-time 5 \
    "http://127.0.0.1:$PORT/api/models/datacrunch-lab/tiny-deepseek-r1/revision/main"
}

# The addresses the running gate listens on, one a line (nothing from a gate that cannot say: an older one).
listening() {
  curl -sf --max-time 5 "http://127.0.0.1:$PORT/_lab/listen" |
    "$PYTHON" -c 'import json, sys; print("\n".join(json.load(sys.stdin)["addresses"]))'
}

# listen_control listen|unlisten ADDR: the running gate starts or stops listening on ADDR.
listen_control() {
  local answer
  answer=$(curl -sS --max-time 5 -X POST -H 'Content-Type: application/json' -d "{\"address\": \"$2\"}" \
    -w '\n%{http_code}' "http://127.0.0.1:$PORT/_lab/$1") || die "the gate on port $PORT did not answer /_lab/$1"
  [[ "${answer##*$'\n'}" == 200 ]] || die "the gate could not $1 on $2:$PORT: ${answer%$'\n'*}"
}

start() {
  mkdir -p "$STATE"
  local address listen_args=()
  if alive "$STATE/gate.pid" && alive "$STATE/olah.pid" && ready && [[ -n "$(listening 2>/dev/null)" ]]; then
    for address in "$@"; do
      grep -qxF "$address" <<<"$(listening)" || listen_control listen "$address"
    done
    echo "hub: running at $(url) on $(listening | paste -sd' ' -) only"
    return 0
  fi
  stop_quiet
  local port
  for port in "$PORT" "$OLAH_PORT"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      die "port $port is already taken by another process: stop it, or set HUB_PORT / HUB_OLAH_PORT"
    fi
  done
  ensure_venv
  build_repos
  cat >"$STATE/olah.toml" <<EOF
[basic]
host = "127.0.0.1"
port = $OLAH_PORT
repos-path = "$STATE/olah-cache"
mirrors-path = ["$STATE/mirrors"]
mirror-netloc = "127.0.0.1:$OLAH_PORT"
mirror-lfs-netloc = "127.0.0.1:$OLAH_PORT"

[accessibility]
offline = true
EOF
  # A plain command in the background (no "cd &&" list), so that no shell stays behind holding the caller's stdout.
  (cd "$STATE" || exit 1; setsid "$VENV/bin/olah-cli" --config "$STATE/olah.toml" --host 127.0.0.1 --port "$OLAH_PORT" \
     --log-path "$STATE/logs" </dev/null >"$STATE/olah.log" 2>&1 & echo $! >"$STATE/olah.pid")
  for address in 127.0.0.1 "$@"; do
    listen_args+=(--listen "$address:$PORT")
  done
  (setsid "$VENV/bin/python" "$HERE/gate.py" "${listen_args[@]}" --upstream "127.0.0.1:$OLAH_PORT" \
     --mirrors "$STATE/mirrors" --config "$HERE/lab-tokens.json" </dev/null >"$STATE/gate.log" 2>&1 &
   echo $! >"$STATE/gate.pid")
  for _ in $(seq 1 120); do
    if ready; then
      echo "hub: running at $(url) on $(listening | paste -sd' ' -) only"
      return 0
    fi
    alive "$STATE/olah.pid" || { tail -20 "$STATE/olah.log" >&2; die "olah exited (log: $STATE/olah.log)"; }
    alive "$STATE/gate.pid" || { tail -20 "$STATE/gate.log" >&2; die "gate exited (log: $STATE/gate.log)"; }
    sleep 0.5
  done
  die "not ready after 60 s on port $PORT (logs: $STATE/olah.log, $STATE/gate.log)"
}

stop_quiet() {
  local f
  for f in "$STATE/gate.pid" "$STATE/olah.pid"; do
    if alive "$f"; then
      kill "$(cat "$f")" 2>/dev/null || true
      for _ in $(seq 1 20); do alive "$f" || break; sleep 0.1; done
      if alive "$f"; then kill -9 "$(cat "$f")" 2>/dev/null || true; fi
    fi
    rm -f "$f"
  done
}

url() {
  local host=127.0.0.1
  if [[ "${1:-}" == --host ]]; then
    [[ -n "${2:-}" ]] || die "url --host needs an address"
    host="$2"
  fi
  echo "http://$host:$PORT"
}

token() {
  local name="${1:-}"
  case "$name" in
    granted) "$PYTHON" -c 'import json,sys; t=json.load(open(sys.argv[1]))["tokens"]; print(next(k for k,v in t.items() if v["granted"]))' "$HERE/lab-tokens.json" ;;
    no-access) "$PYTHON" -c 'import json,sys; t=json.load(open(sys.argv[1]))["tokens"]; print(next(k for k,v in t.items() if not v["granted"]))' "$HERE/lab-tokens.json" ;;
    *) die "token NAME: granted or no-access, not '$name'" ;;
  esac
}

stop() {
  local address
  if [[ $# -eq 0 ]]; then
    stop_quiet
    echo "hub: stopped (port $PORT)"
    return 0
  fi
  if alive "$STATE/gate.pid" && ready; then
    for address in "$@"; do
      listen_control unlisten "$address"
    done
  fi
}

# Point a branch of a lab repository at another commit (or tag), as a push to the Hub would; olah serves the moved
# branch from the next request on.
move_branch() {
  local repo="${1:-}" branch="${2:-}" target="${3:-}" dir commit
  [[ -n "$repo" && -n "$branch" && -n "$target" ]] || die "move-branch REPO BRANCH COMMIT_OR_TAG"
  dir="$STATE/mirrors/models/$repo"
  [[ -d "$dir" ]] || die "no lab repository $repo (known: $(cd "$STATE/mirrors/models" && echo */*))"
  commit="$(git -C "$dir" rev-parse --verify --quiet "$target^{commit}")" || die "$repo has no commit or tag $target"
  git -C "$dir" update-ref "refs/heads/$branch" "$commit"
  echo "hub: $repo $branch -> $commit"
}

case "${1:-}" in
  start) shift; start "$@" ;;
  move-branch) shift; move_branch "$@" ;;
  stop) shift; stop "$@" ;;
  status)
    if alive "$STATE/gate.pid" && alive "$STATE/olah.pid" && ready; then
      echo "hub: running at $(url) on $(listening | paste -sd' ' -) only"
    else echo "hub: not running (port $PORT)"; exit 1; fi ;;
  url) shift; url "$@" ;;
  build) ensure_venv; build_repos force; cat "$STATE/repos.txt" ;;
  token) shift; token "$@" ;;
  *) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
