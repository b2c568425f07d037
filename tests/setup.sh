#!/usr/bin/env bash
# Set up, from nothing, what the lab and the tests need on a Debian machine (run as root):
#   packages   Docker engine, debootstrap, ssh client, git, the container registry (from Debian's archive)
#   docker     a running Docker engine
#   venv       .venv: Python >= 3.12 with the pinned tools of requirements-dev.txt
#              (every virtualenv is built with uv, pinned in tests/requirements-uv.txt: tests/uv.sh)
#   py311      .venv-py311: Python 3.11 with ansible-core 2.19 (the oldest supported controller)
#   parser     .venv-sglang-parser: SGLang's own argument parser (tests/sglang_parser/setup.sh)
#   images     the lab images (tests/lab/lab.sh build)
# Usage: tests/setup.sh [lab|all|STEP...]   (lab = packages docker venv images; default all)
# Every step is idempotent and prints its duration.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"
# shellcheck source=tests/uv.sh
source tests/uv.sh

log() { printf 'setup: %s\n' "$*" >&2; }
die() {
    printf 'setup: error: %s\n' "$*" >&2
    exit 1
}

timed() {
    local name=$1 started=$SECONDS
    shift
    log "$name ..."
    "$@"
    log "$name done in $((SECONDS - started)) s"
}

find_python() { # find_python MIN_MINOR: the first python3.X (X >= MIN_MINOR) on PATH or under pyenv
    local min=$1 candidate
    for candidate in python3.12 python3.13 python3.11 python3 \
        "$HOME"/.pyenv/versions/3.12*/bin/python3 "$HOME"/.pyenv/versions/3.13*/bin/python3 \
        "$HOME"/.pyenv/versions/3.11*/bin/python3; do
        command -v "$candidate" >/dev/null 2>&1 || [[ -x $candidate ]] || continue
        if "$candidate" -c "import sys; sys.exit(0 if sys.version_info[:2] >= (3, $min) else 1)" 2>/dev/null; then
            command -v "$candidate" 2>/dev/null || echo "$candidate"
            return 0
        fi
    done
    return 1
}

find_python_exact() { # find_python_exact MINOR
    local minor=$1 candidate
    for candidate in "python3.$minor" "$HOME"/.pyenv/versions/3."$minor".*/bin/python3 python3; do
        command -v "$candidate" >/dev/null 2>&1 || [[ -x $candidate ]] || continue
        if "$candidate" -c "import sys; sys.exit(0 if sys.version_info[:2] == (3, $minor) else 1)" 2>/dev/null; then
            command -v "$candidate" 2>/dev/null || echo "$candidate"
            return 0
        fi
    done
    return 1
}

step_packages() {
    local wanted=(docker.io debootstrap openssh-client git curl iproute2 ca-certificates gnupg docker-registry openssl) missing=() package
    for package in "${wanted[@]}"; do
        [[ $(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true) == *"install ok installed"* ]] || missing+=("$package")
    done
    if ((${#missing[@]} == 0)); then
        log "packages already installed"
        return
    fi
    [[ $(id -u) == 0 ]] || die "installing ${missing[*]} needs root"
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

step_docker() {
    if docker info >/dev/null 2>&1; then
        log "Docker engine answers"
        return
    fi
    command -v dockerd >/dev/null || die "dockerd is not installed (run: tests/setup.sh packages)"
    log "starting dockerd (log: /var/log/dockerd.log)"
    setsid dockerd >/var/log/dockerd.log 2>&1 </dev/null &
    local waited=0
    until docker info >/dev/null 2>&1; do
        ((waited++ < 60)) || die "dockerd did not answer within 60 s; see /var/log/dockerd.log"
        sleep 1
    done
}

venv_is_current() { # venv_is_current VENV REQUIREMENTS...
    local venv=$1 stamp
    shift
    stamp=$(cat "$@" | sha256sum | cut -d' ' -f1)
    [[ -x $venv/bin/python && -f $venv/.requirements.sha256 && $(cat "$venv/.requirements.sha256") == "$stamp" ]]
}

make_venv() { # make_venv VENV PYTHON REQUIREMENTS (REQUIREMENTS -r's the controller's requirements.txt)
    local venv=$1 python=$2 requirements=$3
    if venv_is_current "$venv" "$requirements" requirements.txt; then
        log "$venv is current"
        return
    fi
    uv_ready "$python" || die "uv did not install (tests/requirements-uv.txt)"
    uv_make_venv "$venv" "$python"
    uv_install "$venv" -r "$requirements"
    "$venv/bin/python" -c "import ansible, yaml" || die "installing $requirements into $venv failed"
    cat "$requirements" requirements.txt | sha256sum | cut -d' ' -f1 >"$venv/.requirements.sha256"
}

step_venv() {
    local python
    python=$(find_python 12) || die "no Python >= 3.12 found (ansible-core 2.21 needs it); install python3.12"
    make_venv .venv "$python" requirements-dev.txt
}

step_py311() {
    local python
    python=$(find_python_exact 11) || die "no Python 3.11 found for the oldest-controller check"
    make_venv .venv-py311 "$python" requirements-py311.txt
}

step_parser() {
    local python
    python=$(find_python_exact 11) || die "no Python 3.11 found for SGLang's parser"
    SGLANG_PARSER_PYTHON=$python tests/sglang_parser/setup.sh
}

step_images() {
    tests/lab/lab.sh build
}

steps=("$@")
((${#steps[@]})) || steps=(all)
expanded=()
for step in "${steps[@]}"; do
    case $step in
        all) expanded+=(packages docker venv py311 parser images) ;;
        lab) expanded+=(packages docker venv images) ;;
        packages | docker | venv | py311 | parser | images) expanded+=("$step") ;;
        *) die "unknown step $step (steps: lab all packages docker venv py311 parser images)" ;;
    esac
done
# The environments and the lab images are independent of each other (each its own directory, pip's cache is shared
# safely): once the packages and the engine are there, they build at once, each step's output kept apart and shown
# when it ends. SETUP_PARALLEL=0 builds them one after the other.
PARALLEL_STEPS=" venv py311 parser images "
run_parallel() { # run_parallel STEP...: at once; fails when any fails
    # Logs apart per set of steps: tests/run.sh builds .venv while another setup.sh builds the rest in the background.
    local logs=$REPO_ROOT/tests/output/setup/$(IFS=-; echo "$*") step failed=0
    rm -rf "$logs"
    mkdir -p "$logs"
    log "building at once: $*"
    for step in "$@"; do
        (timed "$step" "step_$step" >"$logs/$step.log" 2>&1) &
        printf '%s\n' "$!" >"$logs/$step.pid"
    done
    for step in "$@"; do
        if ! wait "$(cat "$logs/$step.pid")"; then
            failed=1
        fi
        cat "$logs/$step.log" >&2
    done
    ((failed == 0)) || die "a step failed (its output is above)"
}
batch=()
flush_batch() { # the steps gathered so far: at once, or a lone one as it is
    case ${#batch[@]} in
        0) ;;
        1) timed "${batch[0]}" "step_${batch[0]}" ;;
        *) run_parallel "${batch[@]}" ;;
    esac
    batch=()
}
for step in "${expanded[@]}"; do
    if [[ ${SETUP_PARALLEL:-1} != 0 && $PARALLEL_STEPS == *" $step "* ]]; then
        batch+=("$step")
        continue
    fi
    flush_batch
    timed "$step" "step_$step"
done
flush_batch
