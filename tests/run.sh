#!/usr/bin/env bash
# The whole test suite, from nothing: sets up what it needs (tests/setup.sh), then runs
#   lint         ruff, ansible-lint (production profile)
#   sanity       ansible-test sanity on the collection
#   unit         pytest tests/unit (pure logic, SGLang's real parser included)
#   compat       the unit tests and a plan run on Python 3.11 with ansible-core 2.19
#   build        ansible-galaxy collection build + install + ansible-doc of every module
#   integration  pytest tests/integration (real Docker engine, lab hosts, Hub stand-in)
#   molecule     every scenario under extensions/molecule/ against lab hosts
#   coverage     (only when named) unit + integration again, with the line coverage of each module_utils file
# Usage: tests/run.sh [--no-setup] [STAGE...]   Prints each stage's duration; exits non-zero on the first failure.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"
export PATH=$REPO_ROOT/.venv/bin:$PATH
export ANSIBLE_FORCE_COLOR=0 PY_COLORS=0

SCENARIOS=(default preflight prefetch multinode benchmark redeploy security)
declare -a DURATIONS=() BACKGROUND_STAGES=() LAUNCHED=()
declare -A BACKGROUND_PID=() # background stage -> pid, until it is waited for

log() { printf '\nrun: %s\n' "$*" >&2; }
die() {
    printf '\nrun: FAILED: %s\n' "$*" >&2
    stop_background_stages
    summary
    exit 1
}

summary() {
    ((${#DURATIONS[@]})) || return 0
    printf '\nrun: stage durations\n' >&2
    printf '  %s\n' "${DURATIONS[@]}" >&2
}

# A stage runs in a subshell with errexit in force, so that any failing command in it fails the stage. Called as the
# condition of an if, or before || or &&, a function runs with errexit off, and only its last command would count
# (a failing ruff before a passing ansible-lint, failing unit tests before the compat stage's plan run): call stage,
# and run stage functions, only as plain commands, as below. A stage adds lines to the summary with stage_note.
NOTES=$REPO_ROOT/tests/output/stage-notes

under_errexit() { # under_errexit CMD...: CMD in a subshell with errexit in force; its exit status in STATUS
    set +e
    (
        set -e
        "$@"
    )
    STATUS=$?
    set -e
}

stage() {
    local name=$1 started=$SECONDS
    shift
    log "stage $name"
    rm -f "$NOTES/$name"
    under_errexit "$@"
    take_notes "$name"
    if ((STATUS != 0)); then
        DURATIONS+=("$name: $((SECONDS - started)) s (failed)")
        die "stage $name"
    fi
    DURATIONS+=("$name: $((SECONDS - started)) s")
}

stage_note() { # stage_note STAGE LINE: a line for the summary, above the stage's own
    mkdir -p "$NOTES"
    printf '%s\n' "$2" >>"$NOTES/$1"
}

take_notes() { # take_notes STAGE: its notes into the summary
    local line
    [[ -f $NOTES/$1 ]] || return 0
    while IFS= read -r line; do
        DURATIONS+=("$line")
    done <"$NOTES/$1"
    rm -f "$NOTES/$1"
}

launch_stages() { # launch_stages DIR NAME...: each stage_NAME at once, in the background, its output and status in DIR;
    # their pids in LAUNCHED
    local logs=$1 name
    shift
    mkdir -p "$logs"
    LAUNCHED=()
    for name in "$@"; do
        rm -f "$logs/$name.log" "$logs/$name.status" "$NOTES/$name"
        (
            started=$SECONDS
            under_errexit "stage_$name" >"$logs/$name.log" 2>&1
            printf '%d %d\n' "$STATUS" "$((SECONDS - started))" >"$logs/$name.status"
        ) &
        LAUNCHED+=($!)
    done
}

report_stage() { # report_stage DIR NAME HEADER NOTE: a launched stage's output and duration; fails when it failed
    local logs=$1 name=$2 rc seconds
    log "stage $name$3"
    cat "$logs/$name.log" >&2
    read -r rc seconds <"$logs/$name.status"
    take_notes "$name"
    if ((rc == 0)); then
        DURATIONS+=("$name: $seconds s$4")
    else
        DURATIONS+=("$name: $seconds s (failed)")
        return 1
    fi
}

side_by_side() { # side_by_side A B: stages A and B at once; each one's output shown whole once both have ended
    local logs=$REPO_ROOT/tests/output/stages failed=0
    log "stages $1 and $2, side by side"
    launch_stages "$logs" "$1" "$2"
    wait "${LAUNCHED[@]}" # these two alone: the background stages go on
    report_stage "$logs" "$1" "" " (beside $2)" || failed=1
    report_stage "$logs" "$2" "" " (beside $1)" || failed=1
    ((failed == 0)) || die "stage $1 or $2"
}

start_background_stages() { # start_background_stages NAME...: those stages at once, in the background;
    # wait_background_stages joins them
    local index names=("$@")
    (($#)) || return 0
    log "stages in the background: $*"
    launch_stages "$REPO_ROOT/tests/output/stages-background" "$@"
    for index in "${!names[@]}"; do
        BACKGROUND_PID[${names[index]}]=${LAUNCHED[index]}
    done
    BACKGROUND_STAGES+=("$@")
}

wait_background_stages() { # wait_background_stages [NAME...]: those background stages (default: all) joined, their
    # output and durations shown once; fails the run when one failed
    local waited=$SECONDS name failed=0 names=() wanted=("$@")
    ((${#wanted[@]})) || wanted=("${BACKGROUND_STAGES[@]}")
    for name in "${wanted[@]}"; do
        [[ -n ${BACKGROUND_PID[$name]:-} ]] && names+=("$name")
    done
    ((${#names[@]})) || return 0
    for name in "${names[@]}"; do
        wait "${BACKGROUND_PID[$name]}" || true
        unset "BACKGROUND_PID[$name]"
    done
    waited=$((SECONDS - waited))
    for name in "${names[@]}"; do
        report_stage "$REPO_ROOT/tests/output/stages-background" "$name" " (ran in the background)" \
            " in the background, $waited s waited for" || failed=1
    done
    ((failed == 0)) || die "stage ${names[*]}"
}

stop_background_stages() { # on a failure elsewhere: the background stages and everything they started
    local name
    for name in "${!BACKGROUND_PID[@]}"; do
        kill_tree "${BACKGROUND_PID[$name]}"
    done
    BACKGROUND_PID=()
}

kill_tree() { # kill_tree PID: the process and its descendants
    local child
    for child in $(pgrep -P "$1" 2>/dev/null); do
        kill_tree "$child"
    done
    kill "$1" 2>/dev/null || true
}

pytest_must_run() { # pytest exit 5 means no test was collected: a broken suite, not a pass
    local rc=0
    "$@" || rc=$?
    if ((rc == 5)); then
        printf 'run: pytest collected no tests (%s): treating it as a failure\n' "$*" >&2
        return 1
    fi
    return $rc
}

stage_lint() {
    ruff check .
    ansible-lint --profile production --strict
}

stage_sanity() {
    tests/sanity/run.sh
}

stage_images() {
    tests/setup.sh images
}

# The unit and integration tests run on three workers, one more than the machine's two cores: both stages leave a
# core idle a fifth of the time on two (the tests wait on ansible-playbook runs, containers and the lab's hosts; on a
# two-core machine the unit stage took 83 s on two workers, 62 s on three, 64 s on four). Each integration test file
# keeps its own lab and runs on one worker; the slowest tests are listed at the end.
stage_unit() {
    pytest_must_run pytest -q -p no:cacheprovider -n 3 tests/unit
}

# The unit tests again on Python 3.11, but for those marked any_python (pyproject.toml), whose outcome does not
# depend on the Python that runs them.
stage_compat() {
    pytest_must_run .venv-py311/bin/pytest -q -p no:cacheprovider -n 3 -m "not any_python" tests/unit
    local version
    version=$(.venv-py311/bin/ansible --version)
    version=${version%%$'\n'*}
    printf 'compat: %s\n' "$version" >&2
    PATH=$REPO_ROOT/.venv-py311/bin:$PATH ansible-playbook playbooks/plan.yml -i tests/fixtures/inventories/plan \
        -e plan_dir="$REPO_ROOT/tests/output/plan-py311" >/dev/null
    [[ -s tests/output/plan-py311/solo-1.json ]]
}

stage_build() {
    local out=$REPO_ROOT/tests/output/build
    rm -rf "$out"
    mkdir -p "$out"
    ansible-galaxy collection build --output-path "$out" . >/dev/null
    # Installed and read as a user would, away from this checkout's ansible.cfg (whose collections path already
    # holds the collection through its link). A plain subshell: with `|| ...` after it, errexit would be off inside.
    (
        cd "$out"
        printf '[defaults]\n' >"$out/ansible.cfg"
        export ANSIBLE_CONFIG=$out/ansible.cfg ANSIBLE_COLLECTIONS_PATH=$out/installed ANSIBLE_NOCOLOR=1
        ansible-galaxy collection install --force --collections-path "$out/installed" \
            "$out"/datacrunch-sglang-*.tar.gz >/dev/null
        # Every module's page from one ansible-doc (its start-up is most of its time); when one is missing (a page
        # that does not render stops them all), each module alone, to name those that do not render.
        local module plugin modules=() pages broken=()
        for module in "$out"/installed/ansible_collections/datacrunch/sglang/plugins/modules/*.py; do
            modules+=("datacrunch.sglang.$(basename "$module" .py)")
        done
        pages=$(ansible-doc "${modules[@]}" 2>&1 || true)
        for module in "${modules[@]}"; do
            grep -q "^> MODULE $module " <<<"$pages" && continue
            grep -q "^> MODULE $module " <<<"$(ansible-doc "$module" 2>&1 || true)" || broken+=("$module")
        done
        if ((${#broken[@]})); then
            printf 'ansible-doc %s does not render\n' "${broken[@]}" >&2
            return 1
        fi
        for plugin in inventory:datacrunch lookup:sglang_profile filter:fleet_status filter:rollout_batches; do
            grep -qF "datacrunch.sglang.${plugin#*:}" <<<"$(ansible-doc -t "${plugin%%:*}" "datacrunch.sglang.${plugin#*:}" 2>&1 || true)" ||
                { printf 'ansible-doc -t %s does not render\n' "$plugin" >&2; return 1; }
        done
    )
    printf 'build: %s installs and its documentation renders\n' "$(basename "$out"/datacrunch-sglang-*.tar.gz)" >&2
}

stage_integration() {
    [[ -d tests/integration ]] || return 0
    pytest_must_run pytest -q -p no:cacheprovider -n 3 --dist loadfile --durations=15 tests/integration
}

# Not in the default run: the unit and integration tests again, measuring the line coverage of each
# plugins/module_utils file by them alone (code run on lab hosts and the molecule scenarios do not count). The table
# lands in tests/output/coverage/module_utils.md.
stage_coverage() {
    local out=$REPO_ROOT/tests/output/coverage measure=(--cov=plugins/module_utils --cov-report=)
    rm -rf "$out"
    mkdir -p "$out"
    export COVERAGE_FILE=$out/coverage.data
    pytest_must_run pytest -q -p no:cacheprovider -n 3 "${measure[@]}" tests/unit
    pytest_must_run pytest -q -p no:cacheprovider -n 3 --dist loadfile "${measure[@]}" --cov-append tests/integration
    coverage report --format=markdown --sort=cover | tee "$out/module_utils.md"
}

# Scenarios run in lanes side by side, each lane's scenarios one after the other; MOLECULE_LANES=1 runs them all in
# one lane. Each scenario has its own lab hosts, inventory, commit record and reports, and lab.sh serialises what the
# labs share (networks, services). A scenario spends much of its time waiting (readiness rounds, containers starting,
# SSH round trips): with two lanes the two cores were busy 1.66 of 2 on average, so a third lane fills the gaps.
# A scenario's time depends on what runs beside it, so lanes are judged by whole runs, not by summing figures taken in
# other pairings (two lanes on a fresh two-core machine: multinode 457 s, prefetch 167, benchmark 188, preflight 179 |
# default 331, redeploy 318, security 297: 991 s). Three lanes, the longest scenario alone with the shortest:
MOLECULE_LANE_1=(multinode prefetch)
MOLECULE_LANE_2=(default benchmark preflight)
MOLECULE_LANE_3=(redeploy security)

molecule_lane() { # molecule_lane LOGDIR SCENARIO...: each scenario in turn; "scenario seconds rc" lines on stdout
    local logs=$1 scenario started rc
    shift
    for scenario in "$@"; do
        started=$SECONDS
        rc=0
        molecule test -s "$scenario" >"$logs/$scenario.log" 2>&1 || rc=$?
        printf '%s %d %d\n' "$scenario" "$((SECONDS - started))" "$rc"
        ((rc == 0)) || return 1
    done
}

stage_molecule() {
    local scenario logs=$REPO_ROOT/tests/output/molecule failed=0 name seconds rc lane pids=()
    local -a all=("${MOLECULE_LANE_1[@]}" "${MOLECULE_LANE_2[@]}" "${MOLECULE_LANE_3[@]}")
    for scenario in "${SCENARIOS[@]}"; do
        if [[ ! -f extensions/molecule/$scenario/molecule.yml ]]; then
            printf 'molecule: scenario %s is missing\n' "$scenario" >&2
            return 1
        fi
    done
    if [[ $(printf '%s\n' "${all[@]}" | sort | paste -sd' ') != $(printf '%s\n' "${SCENARIOS[@]}" | sort | paste -sd' ') ]]; then
        printf 'molecule: the lanes do not hold every scenario once\n' >&2
        return 1
    fi
    rm -rf "$logs"
    mkdir -p "$logs"
    case ${MOLECULE_LANES:-3} in
        1) molecule_lane "$logs" "${all[@]}" >"$logs/lane-1.txt" || failed=1 ;;
        3)
            for lane in 1 2 3; do
                declare -n scenarios=MOLECULE_LANE_$lane
                molecule_lane "$logs" "${scenarios[@]}" >"$logs/lane-$lane.txt" &
                pids+=($!)
                unset -n scenarios
            done
            for lane in "${pids[@]}"; do
                wait "$lane" || failed=1
            done
            ;;
        *)
            printf 'molecule: MOLECULE_LANES=%s: the scenarios run in 3 lanes (MOLECULE_LANE_1/_2/_3 in tests/run.sh), or in 1\n' \
                "$MOLECULE_LANES" >&2
            return 1
            ;;
    esac
    # Each scenario's whole output, one after the other, then its duration.
    while read -r name seconds rc; do
        cat "$logs/$name.log" >&2
        stage_note molecule "  molecule $name: $seconds s$( ((rc == 0)) || printf ' (failed)')"
        ((rc == 0)) || printf 'molecule: scenario %s failed (output above, and in %s)\n' "$name" "$logs/$name.log" >&2
    done < <(cat "$logs"/lane-*.txt)
    # The failures again, last, where a reader of the run's tail sees them.
    while read -r name seconds rc; do
        ((rc == 0)) && continue
        printf '\nmolecule: scenario %s failed; its failing tasks:\n' "$name" >&2
        grep -n -B 3 -A 30 -E '^(fatal|failed): ' "$logs/$name.log" | head -n 120 >&2 || true
        grep -n -E '^(E  |FAILED |ERROR |CRITICAL )' "$logs/$name.log" | head -n 80 >&2 || true
    done < <(cat "$logs"/lane-*.txt)
    return "$failed"
}

setup=true
stages=()
for arg in "$@"; do
    case $arg in
        --no-setup) setup=false ;;
        lint | sanity | unit | compat | build | integration | molecule | coverage) stages+=("$arg") ;;
        *) die "unknown argument $arg" ;;
    esac
done
((${#stages[@]})) || stages=(lint sanity unit compat build integration molecule)

# Setup first: the packages, the Docker engine and the virtualenvs (tests/setup.sh). The lab images, which only the
# integration and molecule stages use, build in the background (tests/setup.sh images), waited for before those.
# Lint and sanity, which need only .venv and keep one core busy each (sanity about 185 CPU-s, lint about 85), run in
# the background too, from the start. Until molecule the two cores are busy whatever the order (measured: 1.84 cores
# on average from setup to molecule, whether lint and sanity started at once or with integration, and integration
# took 643 s instead of 537 beside them): from the start, their verdict comes earliest and the timing-sensitive
# integration tests have the cores to themselves for longest. Their output and verdict come before molecule. Asked
# for alone (tests/run.sh lint sanity), they run side by side.
background_now=()
if $setup; then
    if [[ " ${stages[*]} " == *" integration "* || " ${stages[*]} " == *" molecule "* ||
        " ${stages[*]} " == *" coverage "* ]]; then
        stage setup tests/setup.sh packages docker venv py311 parser
        background_now+=(images)
    else
        stage setup tests/setup.sh
    fi
fi
if [[ " ${stages[*]} " == *" lint sanity "* ]] &&
    [[ " ${stages[*]} " == *" unit "* || " ${stages[*]} " == *" integration "* ]]; then
    background_now+=(lint sanity)
    remaining=()
    for name in "${stages[@]}"; do
        [[ $name == lint || $name == sanity ]] || remaining+=("$name")
    done
    stages=("${remaining[@]}")
fi
start_background_stages "${background_now[@]}"
# Stages that each keep one core busy run two at a time: lint beside sanity, build beside compat.
SIDE_BY_SIDE=(lint:sanity compat:build)
index=0
while ((index < ${#stages[@]})); do
    name=${stages[index]}
    next=${stages[index + 1]:-}
    [[ $name != integration ]] || wait_background_stages images
    [[ $name != molecule && $name != coverage ]] || wait_background_stages
    if [[ " ${SIDE_BY_SIDE[*]} " == *" $name:$next "* ]]; then
        side_by_side "$name" "$next"
        index=$((index + 2))
    else
        stage "$name" "stage_$name"
        index=$((index + 1))
    fi
done
wait_background_stages
summary
log "all stages passed"
