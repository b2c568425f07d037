#!/usr/bin/env bash
# ansible-test sanity on the collection, as a copy of the checkout under ansible_collections/datacrunch/sglang
# (where ansible-test needs it), with its pip bootstrap served from the local cache.
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VENV=${VENV:-$REPO_ROOT/.venv}
WORK=$REPO_ROOT/tests/output/sanity
TREE=$WORK/ansible_collections/datacrunch/sglang

pip_version=$(grep -m 1 -o "pip='[0-9.]*'" "$VENV"/lib/python3*/site-packages/ansible_test/_internal/python_requirements.py)
pip_version=${pip_version#pip=\'}
pip_version=${pip_version%\'}
cache=$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py
mkdir -p "$(dirname "$cache")"
cp "$REPO_ROOT/tests/sanity/get_pip_offline.py" "$cache"

rm -rf "$WORK"
mkdir -p "$TREE"
# Tracked files plus new ones not ignored: what a commit of the working tree would hold. Left out: the links that make
# the checkout usable in place (collections/ and playbooks/collections back to the checkout, datacrunch ->
# inventories/datacrunch), which are not collection content (galaxy.yml's build_ignore drops them too).
(cd "$REPO_ROOT" && git ls-files -z --cached --others --exclude-standard |
    grep -zv -e '^collections/' -e '^playbooks/collections$' -e '^datacrunch$' |
    xargs -0 -I{} sh -c '[ -e "{}" ] || [ -L "{}" ] && echo "{}"' |
    tr '\n' '\0' | xargs -0 cp --parents -P -t "$TREE")
cd "$TREE"
git init -q . && git add -A >/dev/null && git -c user.email=ci@localhost -c user.name=ci commit -qm tree
# ansible-test finds the interpreter by name (python3.X): put the one behind the venv first on PATH, ahead of any
# version-manager shims.
python=$(readlink -f "$VENV/bin/python")
version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
PATH=$VENV/bin:$(dirname "$python"):$PATH exec ansible-test sanity --venv --python "${SANITY_PYTHON:-$version}" \
    --color no "$@"
