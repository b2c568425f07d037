#!/usr/bin/env bash
# Set up from nothing, bring up one lab host (a simulated DataCrunch 8x H200 host) and deploy the lab-tiny profile
# on it with deploy.yml, then show that the endpoint answers with the API key.
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO_ROOT"

tests/setup.sh lab
tests/lab/lab.sh up 1
.venv/bin/ansible-playbook deploy.yml -i inventories/lab

host=$(.venv/bin/ansible-inventory -i inventories/lab --list |
    .venv/bin/python -c 'import json, sys; inv = json.load(sys.stdin); h = inv["sglang_servers"]["hosts"][0]; print(inv["_meta"]["hostvars"][h]["ansible_host"])')
key_file=${SGLANG_API_KEY_FILE:-$HOME/.config/datacrunch-sglang/api-key}
endpoint=http://$host:30000
cat <<INFO

The lab host serves the stand-in SGLang server at $endpoint (simulated: no GPU, no real model).
API key: kept on this machine in $key_file (mode 0600).
Try it:
  curl -s -H "Authorization: Bearer \$(cat $key_file)" $endpoint/v1/models
INFO
printf '\n'
curl -sf -H "Authorization: Bearer $(cat "$key_file")" "$endpoint/v1/models"
printf '\n'
