# shellcheck shell=bash
# The closing block of tests/lab/deploy-to-lab.sh: where the endpoint and its API key are, how to use this
# checkout's tools, the next commands to try and how to take the lab down. Sourced, not run;
# tests/unit/test_first_command.py holds each command it prints to what is in the checkout.

# lab_api_key_file INVENTORY_DIR: the controller file of the API key that deploy.yml generated for that inventory,
# as roles/sglang_server/defaults/main.yml names it (sglang_server_api_key_file): the directory's name and the
# first 8 hex digits of the SHA-1 of its full path.
lab_api_key_file() {
    local dir
    dir=$(realpath -m "$1")
    echo "$HOME/.config/datacrunch-sglang/api-keys/$(basename "$dir")-$(printf '%s' "$dir" | sha1sum | cut -c1-8)"
}

# print_next_steps HOST ENDPOINT KEY_FILE INVENTORY GATEWAY: the block, for a checkout at the current directory.
# GATEWAY: the lab network's gateway, where the lab services listen for the lab hosts (tests/lab/lab.sh).
print_next_steps() {
    local host=$1 endpoint=$2 key_file=$3 inventory=$4 gateway=$5
    cat <<INFO

Deployed. The lab host $host serves the stand-in SGLang server at $endpoint
(simulated: no GPU, no real model; nothing it shows is a measurement of an H200).
API key: $key_file (mode 0600; this inventory's own key, used by no other inventory).

The tools of this checkout are in .venv/bin (ansible-playbook, ansible-inventory, molecule). In this shell:
  cd $PWD && source .venv/bin/activate

Next commands to try:
  curl -s -H "Authorization: Bearer \$(cat $key_file)" $endpoint/v1/models
INFO
    next_step "ansible-playbook playbooks/status.yml -i $inventory" "the fleet table"
    next_step "ansible-playbook playbooks/benchmark.yml -i $inventory" "a benchmark (simulated figures)"
    next_step "ansible-playbook playbooks/logs.yml -i $inventory" "the server's last log lines"
    printf '\nThe lab services (Hub stand-in :%s, wheel index :%s, NVIDIA apt stand-in :%s) listen on 127.0.0.1\n' \
        "${HUB_PORT:-18090}" "${LAB_WHEEL_PORT:-18091}" "${LAB_NVIDIA_APT_PORT:-18092}"
    printf 'and %s (the lab network'"'"'s gateway) only, not on every interface.\n' "$gateway"
    printf 'When you are done (the lab host and the lab services keep running until then):\n'
    next_step "ansible-playbook playbooks/teardown.yml -i $inventory" "remove the server; the lab host stays"
    next_step "${LAB_NAME:+LAB_NAME=$LAB_NAME }tests/lab/lab.sh down" "remove the lab host and its network (the services with the last lab)"
}

next_step() {
    printf '  %-62s # %s\n' "$1" "$2"
}
