#!/usr/bin/env bash
# Builds the SGLang TEST STAND-IN images localhost/sglang-standin:v<version> (not SGLang: see README.md) for every
# version in plugins/module_utils/launch/cli_flags.py, FROM datacrunch-sglang-lab/debian:bookworm.
# Idempotent: an image whose sglang-standin.inputs-sha256 label matches its inputs (this folder's files, the flag
# data, the base image, the version) is left as it is. Usage: build.sh [--force] [VERSION...]
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../../.." && pwd)
base=datacrunch-sglang-lab/debian:bookworm
repo=localhost/sglang-standin
flags="$root/plugins/module_utils/launch/cli_flags.py"
force=false
if [ "${1:-}" = "--force" ]; then force=true; shift; fi

log() { printf 'sglang-standin build: %s\n' "$*" >&2; }

docker image inspect "$base" >/dev/null 2>&1 \
  || { log "base image $base is missing: build it first (tests/lab/lab.sh build)"; exit 1; }
base_id=$(docker image inspect -f '{{.Id}}' "$base")

versions=("$@")
if [ ${#versions[@]} -eq 0 ]; then
  mapfile -t versions < <(python3 -c "
import importlib.util, sys
spec = importlib.util.spec_from_file_location('flags', sys.argv[1]); m = importlib.util.module_from_spec(spec)
spec.loader.exec_module(m); print('\n'.join(m.supported_versions()))" "$flags")
fi

context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
tar -C "$here" --exclude=__pycache__ --exclude='*.pyc' -cf - Dockerfile sglang | tar -C "$context" -xf -
cp "$flags" "$context/sglang/standin/sglang_cli_flags.py"
content_hash=$(cd "$context" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)

for version in "${versions[@]}"; do
  image="$repo:v$version"
  inputs=$(printf '%s %s %s\n' "$content_hash" "$base_id" "$version" | sha256sum | cut -d' ' -f1)
  current=$(docker image inspect -f '{{index .Config.Labels "sglang-standin.inputs-sha256"}}' "$image" 2>/dev/null || true)
  if ! $force && [ "$current" = "$inputs" ]; then
    log "$image is up to date"
    continue
  fi
  start=$SECONDS
  if ! out=$(docker build --build-arg "SGLANG_STANDIN_VERSION=$version" --build-arg "SGLANG_STANDIN_INPUTS=$inputs" \
    -t "$image" "$context" 2>&1); then
    printf '%s\n' "$out" >&2
    log "docker build of $image failed"
    exit 1
  fi
  docker run --rm "$image" python3 -c "import sglang; assert sglang.__version__ == '$version'" \
    || { log "$image does not import sglang $version"; exit 1; }
  log "built $image in $((SECONDS - start)) s"
done
