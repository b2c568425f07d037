#!/usr/bin/env bash
# Builds what tests/sglang_parser needs to run SGLang's own argument parser without a GPU:
#   .venv-sglang-parser/               Python 3.11 venv with torch (CUDA build, imported on CPU) and the modules
#                                      that sglang.srt.server_args imports (requirements.txt), built with uv
#                                      (tests/uv.sh)
#   tests/sglang_parser/.cache/sglang-<version>/   each supported sglang wheel, unpacked (imported from sys.path)
#   tests/sglang_parser/.cache/site-<version>/     the per-version pins (requirements-<version>.txt, e.g. transformers)
# The supported versions are the names of the requirements-<version>.txt files. Idempotent: each part is rebuilt
# only when its inputs changed (a sha256 stamp beside it). Usage: tests/sglang_parser/setup.sh [--force]
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
venv="$root/.venv-sglang-parser"
cache="$here/.cache"
python=${SGLANG_PARSER_PYTHON:-python3}
force=false
[ "${1:-}" = "--force" ] && force=true

log() { printf 'sglang_parser setup: %s\n' "$*" >&2; }

stamp_of() { cat "$@" | sha256sum | cut -d' ' -f1; }

# shellcheck source=tests/uv.sh
source "$root/tests/uv.sh"

pip_quiet() {  # pip with this machine's noise about local index folders left out; keeps pip's exit status
  local out rc=0
  out=$("$venv/bin/pip" --disable-pip-version-check "$@" 2>&1) || rc=$?
  printf '%s\n' "$out" | grep -v -e "is ignored: it is neither a file nor a directory" -e '^$' >&2 || true
  return $rc
}

up_to_date() {  # up_to_date STAMPFILE HASH
  ! $force && [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]
}

pyver=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [ "$pyver" != "3.11" ]; then
  log "needs Python 3.11 (the torch wheels on this machine are cp311), but $python is $pyver:" \
      "set SGLANG_PARSER_PYTHON to a python3.11"
  exit 1
fi

start=$SECONDS
mkdir -p "$cache"

venv_hash=$(stamp_of "$here/requirements.txt" <(echo "$pyver"))
if up_to_date "$venv/.requirements.sha256" "$venv_hash"; then
  log "venv up to date: $venv"
else
  log "building $venv"
  uv_ready "$python" || { log "uv did not install (tests/requirements-uv.txt)"; exit 1; }
  uv_make_venv "$venv" "$python"
  uv_install "$venv" -r "$here/requirements.txt"
  "$venv/bin/python" -c 'import torch, torchvision' 2>/dev/null \
    || { log "torch does not import in $venv"; exit 1; }
  echo "$venv_hash" > "$venv/.requirements.sha256"
fi

for req in "$here"/requirements-*.txt; do
  version=$(basename "$req" .txt)
  version=${version#requirements-}
  site="$cache/site-$version"
  src="$cache/sglang-$version"

  site_hash=$(stamp_of "$req" <(echo "$venv_hash"))
  if up_to_date "$site/.sha256" "$site_hash"; then
    log "per-version packages up to date: $site"
  else
    rm -rf "$site"
    uv_ready "$python" || { log "uv did not install (tests/requirements-uv.txt)"; exit 1; }
    uv_install "$venv" --no-deps --target "$site" -r "$req"
    echo "$site_hash" > "$site/.sha256"
  fi

  if up_to_date "$src/.version" "$version"; then
    log "sglang $version up to date: $src"
  else
    rm -rf "$src" "$cache/wheel-$version"
    pip_quiet download --quiet --no-deps "sglang==$version" -d "$cache/wheel-$version"
    wheel=$(ls "$cache/wheel-$version/sglang-$version"-*.whl)
    mkdir -p "$src"
    "$venv/bin/python" -m zipfile -e "$wheel" "$src"
    rm -rf "$cache/wheel-$version"
    echo "$version" > "$src/.version"
  fi
done

log "ready in $((SECONDS - start)) s"
