# Sourced by tests/setup.sh and tests/sglang_parser/setup.sh: builds the virtualenvs with uv, which installs a
# requirements file several times faster than pip (it unpacks wheels in parallel and writes no bytecode up front; the
# parser venv's 5.5 GB of torch and CUDA libraries take seconds instead of minutes).
#   uv_ready PYTHON          puts the pinned uv (tests/requirements-uv.txt) in .venv-uv, with PYTHON's pip, once
#   uv_make_venv VENV PYTHON  a new venv (pip seeded in it: the lab's wheel index and `pip download` use it)
#   uv_install VENV ARG...    uv pip install ARG... into VENV
# uv reads pip's configuration here (its indexes, find-links, constraints and certificate bundle), so it installs
# what pip would, from where pip would: a machine's local wheel mirror included.
# shellcheck shell=bash

UV_HOME=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.venv-uv
UV_REQUIREMENTS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/requirements-uv.txt
UV=$UV_HOME/bin/uv
UV_INDEX_ARGS=() # where packages come from: for uv venv (its seed) and uv pip install
UV_PIP_ARGS=()   # those and pip's constraints: for uv pip install

uv_is_current() { # uv_is_current STAMP: .venv-uv holds the uv that tests/requirements-uv.txt pins
    [[ -x $UV && -f $UV_HOME/.requirements.sha256 && $(cat "$UV_HOME/.requirements.sha256") == "$1" ]]
}

uv_ready() { # uv_ready PYTHON (once per process: later calls find uv ready and pip's configuration read)
    local python=$1 stamp
    ((${#UV_PIP_ARGS[@]} == 0)) || return 0
    stamp=$(sha256sum <"$UV_REQUIREMENTS" | cut -d' ' -f1)
    if ! uv_is_current "$stamp"; then
        # Several setup steps may get here at once: one builds, the others wait for it.
        (
            flock 9
            if ! uv_is_current "$stamp"; then
                rm -rf "$UV_HOME"
                "$python" -m venv "$UV_HOME"
                "$UV_HOME/bin/pip" install --quiet --disable-pip-version-check -r "$UV_REQUIREMENTS" 2>&1 |
                    grep -v "is ignored: it is neither a file nor a directory" >&2 || true
                "$UV" --version >/dev/null || {
                    printf 'uv did not install into %s\n' "$UV_HOME" >&2
                    exit 1
                }
                printf '%s\n' "$stamp" >"$UV_HOME/.requirements.sha256"
            fi
        ) 9>"$UV_HOME.lock" || return 1
    fi
    uv_follow_pip "$python"
}

uv_follow_pip() { # uv_follow_pip PYTHON: UV_INDEX_ARGS, UV_PIP_ARGS from pip's configuration (files, PIP_* variables)
    local python=$1 line key value item constraints=()
    UV_INDEX_ARGS=(--index-strategy unsafe-best-match) # pip weighs every index alike
    while IFS= read -r line; do
        key=${line%%=*} value=${line#*=}
        value=${value#\'} value=${value%\'}
        for item in $value; do
            case ${key##*.} in
                index-url) UV_INDEX_ARGS+=(--index-url "$item") ;;
                extra-index-url) UV_INDEX_ARGS+=(--extra-index-url "$item") ;;
                find-links) UV_INDEX_ARGS+=(--find-links "$item") ;;
                constraint) constraints+=(--constraint "$item") ;;
                cert) export SSL_CERT_FILE=$item ;;
            esac
        done
    done < <("$python" -m pip config list 2>/dev/null)
    UV_PIP_ARGS=("${UV_INDEX_ARGS[@]}" "${constraints[@]}")
    export UV_PYTHON_DOWNLOADS=never UV_NO_PROGRESS=1
}

uv_make_venv() { # uv_make_venv VENV PYTHON
    rm -rf "$1"
    "$UV" venv --quiet --seed --python "$2" "$1" "${UV_INDEX_ARGS[@]}"
}

uv_install() { # uv_install VENV ARG...
    local venv=$1
    shift
    "$UV" pip install --quiet --python "$venv/bin/python" "${UV_PIP_ARGS[@]}" "$@"
}
