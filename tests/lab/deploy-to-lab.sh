#!/usr/bin/env bash
# Set up from nothing, bring up one lab host (a simulated DataCrunch 8x H200 host) and deploy the lab-tiny profile
# on it with deploy.yml, then show that the endpoint answers with the API key.
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO_ROOT"

tests/setup.sh lab
tests/lab/lab.sh up 1
.venv/bin/ansible-playbook deploy.yml -i inventories/lab

read -r host gateway < <(.venv/bin/ansible-inventory -i inventories/lab --list |
    .venv/bin/python -c 'import json, sys; inv = json.load(sys.stdin); h = inv["sglang_servers"]["hosts"][0]; v = inv["_meta"]["hostvars"][h]; print(v["ansible_host"], v["lab_gateway"])')
# shellcheck source=tests/lab/next-steps.sh
source tests/lab/next-steps.sh
key_file=$(lab_api_key_file inventories/lab)
endpoint=http://$host:30000
printf 'The endpoint answers with the API key:\n'
curl -sf -H "Authorization: Bearer $(cat "$key_file")" "$endpoint/v1/models"
printf '\n'
print_next_steps "$host" "$endpoint" "$key_file" inventories/lab "$gateway"
