"""Weight prefetch on two lab hosts (simulated 8x H200 hosts; the Hub is the lab's stand-in): the world after it.

Converge (and molecule's idempotence step) prefetched in shared-storage and fan-out modes. These checks read the
files on the hosts and their sha256, compare with what the Hub serves, ask the Hub stand-in and the seed what they
served to which host, then break things on the hosts and run the playbook again as a user would.
"""

import hashlib
import json
import sys
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))
from tests.support.lab_checks import lab_exec, lab_host_address, recap_changed, run_playbook

HOSTS = ["dcsg-mol-prefetch-1", "dcsg-mol-prefetch-2"]
SEED, PEER = HOSTS
REPO = "datacrunch-lab/tiny-deepseek-r1"
GATED = "datacrunch-lab/tiny-deepseek-r1-gated"
FOLDER = "models--datacrunch-lab--tiny-deepseek-r1"
SHARED_HOME = "/mnt/shared/huggingface"
LOCAL_HOME = "/root/.cache/huggingface"
HUB = "http://127.0.0.1:18090"
REPO_ROOT = Path(__file__).resolve().parents[4]
PLAYBOOK = "playbooks/prefetch.yml"


def hub_json(path):
    with urllib.request.urlopen(HUB + path, timeout=30) as resp:  # noqa: S310 - the lab's http URL
        return json.loads(resp.read())


@pytest.fixture(scope="module")
def expected():
    """sha256 of every file of the repo at main, downloaded straight from the Hub stand-in: (commit, {path: sha})."""
    commit = hub_json(f"/api/models/{REPO}/revision/main")["sha"]
    tree = hub_json(f"/api/models/{REPO}/tree/{commit}?recursive=true")
    files = {}
    for entry in tree:
        if entry["type"] != "file":
            continue
        url = f"{HUB}/{REPO}/resolve/{commit}/{entry['path']}"
        with urllib.request.urlopen(url, timeout=30) as resp:  # noqa: S310 - the lab's http URL
            files[entry["path"]] = hashlib.sha256(resp.read()).hexdigest()
    return commit, files


def host_sha256(host, hf_home, commit, folder=FOLDER):
    snap = f"{hf_home}/hub/{folder}/snapshots/{commit}"
    out = lab_exec(host, "sh", "-c", f"cd {snap} && find . -type l -o -type f | sort | xargs sha256sum", check=False)
    return {line.split()[1][2:]: line.split()[0] for line in out.splitlines() if line.strip()}


def host_files(host, path):
    out = lab_exec(host, "sh", "-c", f"test -d {path} && find {path} -type f | sort || true")
    return out.split()


def served_bytes_by_client():
    """Body bytes the Hub stand-in served for file downloads, per client address (all repos, all time)."""
    totals = {}
    for path, entry in hub_json("/_lab/stats")["stats"].items():
        if "/resolve/" in path:
            for client, nbytes in entry.get("clients", {}).items():
                totals[client] = totals.get(client, 0) + nbytes
    return totals


def delta(before, after, client):
    return after.get(client, 0) - before.get(client, 0)


def playbook(*extra, check=True):
    result = run_playbook(PLAYBOOK, *extra)
    if check:
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return result


def wipe(host, path):
    lab_exec(host, "rm", "-rf", path)


@pytest.fixture(scope="module")
def addresses():
    return {h: lab_host_address(h) for h in HOSTS}


# --- after converge ---------------------------------------------------------------------------------------------


def test_shared_volume_holds_the_verified_snapshot_seen_by_both_hosts(expected):
    commit, files = expected
    for host in HOSTS:
        assert host_sha256(host, SHARED_HOME, commit) == files
        # Downloaded by the commit the plan resolved for the unit, not by branch: no refs/main to follow.
        assert lab_exec(host, "ls", f"{SHARED_HOME}/hub/{FOLDER}/snapshots").split() == [commit]


def test_fanout_put_the_snapshot_in_each_hosts_own_cache(expected):
    commit, files = expected
    for host in HOSTS:
        assert host_sha256(host, LOCAL_HOME, commit) == files
        assert lab_exec(host, "ls", f"{LOCAL_HOME}/hub/{FOLDER}/snapshots").split() == [commit]
    # Each host's cache is its own: the shared volume is elsewhere.
    assert lab_exec(SEED, "stat", "-c", "%d", LOCAL_HOME) != lab_exec(SEED, "stat", "-c", "%d", SHARED_HOME)


# --- modes, from empty caches -----------------------------------------------------------------------------------


def test_shared_mode_downloads_once_and_the_other_host_only_verifies(expected, addresses):
    commit, files = expected
    wipe(SEED, SHARED_HOME)
    before = served_bytes_by_client()
    run = playbook("-e", f"sglang_hf_home={SHARED_HOME}", "-e", "model_cache_mode=shared")
    after = served_bytes_by_client()
    total = sum(int(e["size"]) for e in hub_json(f"/api/models/{REPO}/tree/{commit}?recursive=true"))
    assert delta(before, after, addresses[SEED]) == total
    assert delta(before, after, addresses[PEER]) == 0
    assert host_sha256(PEER, SHARED_HOME, commit) == files
    text = " ".join(run.stdout.split())
    assert "complete, 16 files" in text
    # Each host says where its copy comes from; the one that fetched nothing says so, not "fetched 0.00 Bytes".
    assert "(the seed: one download into the shared HF home); fetched" in text, text[-3000:]
    assert "(in the shared HF home, downloaded by %s); nothing to fetch" % SEED in text, text[-3000:]
    assert "0.00 Bytes" not in text


def test_shared_mode_refuses_hosts_that_do_not_share_the_hf_home(addresses):
    run = playbook("-e", f"sglang_hf_home={LOCAL_HOME}", "-e", "model_cache_mode=shared", check=False)
    assert run.returncode != 0
    assert f"{PEER} does not see a file that {SEED} just wrote in sglang_hf_home={LOCAL_HOME}" in run.stdout
    assert "model_cache_mode=fanout" in run.stdout


def test_fanout_pays_hub_egress_once(expected, addresses):
    commit, files = expected
    for host in HOSTS:
        wipe(host, LOCAL_HOME)
    before = served_bytes_by_client()
    run = playbook("-e", "model_cache_mode=fanout")
    after = served_bytes_by_client()
    total = sum(int(e["size"]) for e in hub_json(f"/api/models/{REPO}/tree/{commit}?recursive=true"))
    assert delta(before, after, addresses[SEED]) == total
    assert delta(before, after, addresses[PEER]) == 0, "the peer must copy from the seed, not from the Hub"
    for host in HOSTS:
        assert host_sha256(host, LOCAL_HOME, commit) == files
    assert f'"{addresses[PEER]}": {total}' in run.stdout.replace("\\", ""), "the seed reports what it served"


# --- damage on the hosts, repaired by the role ----------------------------------------------------------------


def blob_path(host, commit, name):
    return lab_exec(host, "readlink", "-f", f"{LOCAL_HOME}/hub/{FOLDER}/snapshots/{commit}/{name}").strip()


def test_truncated_and_corrupted_shards_are_repaired(expected):
    commit, files = expected
    truncated = blob_path(PEER, commit, "model-00002-of-00008.safetensors")
    lab_exec(PEER, "truncate", "-s", "1000", truncated)
    corrupt = blob_path(SEED, commit, "model-00004-of-00008.safetensors")
    # One byte flipped in the middle, same size.
    lab_exec(SEED, "python3", "-c", (
        "import sys,os;p=sys.argv[1];f=open(p,'r+b');n=os.path.getsize(p)//2;f.seek(n);b=f.read(1);f.seek(n);"
        "f.write(bytes([b[0]^255]));f.close()"
    ), corrupt)
    assert host_sha256(SEED, LOCAL_HOME, commit) != files

    quick = playbook()
    assert serving(recap_changed(quick.stdout)) == {SEED: 0, PEER: 1}, "quick: only the truncated shard is seen"
    assert "repaired model-00002-of-00008.safetensors" in quick.stdout
    assert host_sha256(PEER, LOCAL_HOME, commit) == files

    full = playbook("-e", "model_cache_verify=sha256")
    assert serving(recap_changed(full.stdout)) == {SEED: 1, PEER: 0}
    assert "repaired model-00004-of-00008.safetensors" in full.stdout
    for host in HOSTS:
        assert host_sha256(host, LOCAL_HOME, commit) == files


# --- inputs that must fail before anything is downloaded -------------------------------------------------------


@pytest.fixture()
def empty_caches():
    for host in HOSTS:
        wipe(host, LOCAL_HOME)
    yield
    for host in HOSTS:
        wipe(host, LOCAL_HOME)


def test_wrong_token_fails_before_a_byte_is_written(empty_caches):
    secret = "hf_notAValidLabTokenAtAll0000000000"  # noqa: S105 - a token the lab's Hub rejects
    run = playbook("-e", f"sglang_hf_token={secret}", check=False)
    assert run.returncode != 0
    assert "rejected the token" in run.stdout and "sglang_hf_token" in run.stdout
    assert secret not in run.stdout + run.stderr
    for host in HOSTS:
        assert host_files(host, LOCAL_HOME) == []


def test_gated_repo_needs_a_token_with_access(empty_caches):
    gated = ["-e", f"sglang_model={GATED}", "-e", "sglang_model_revision=main"]
    run = playbook(*gated, check=False)
    assert run.returncode != 0 and "is gated and no token was given" in run.stdout
    for host in HOSTS:
        assert host_files(host, LOCAL_HOME) == []
    token = (REPO_ROOT / "tests/lab/hub/lab-tokens.json").read_text()
    granted = next(t for t, v in json.loads(token)["tokens"].items() if v["granted"])
    ok = playbook(*gated, "-e", f"sglang_hf_token={granted}")
    assert granted not in ok.stdout + ok.stderr
    commit = hub_json(f"/api/models/{GATED}/revision/main")["sha"]
    for host in HOSTS:
        assert len(host_sha256(host, LOCAL_HOME, commit, "models--datacrunch-lab--tiny-deepseek-r1-gated")) == 16


def test_too_little_disk_is_refused_with_the_figures(empty_caches):
    run = playbook("-e", "model_cache_disk_reserve_gb=1000000", check=False)
    assert run.returncode != 0
    assert "not enough disk space" in run.stdout and "disk_reserve_gb=1000000" in run.stdout
    for host in HOSTS:
        assert host_files(host, f"{LOCAL_HOME}/hub/{FOLDER}/blobs") == []


def serving(counts):
    """The recap's counts of the serving hosts (the controller's own checks run on localhost)."""
    return {host: count for host, count in counts.items() if host != "localhost"}


def test_unknown_revision_and_bad_inputs(empty_caches):
    run = playbook("-e", "sglang_model_revision=no-such-branch", "-e", f"sglang_model={REPO}", check=False)
    assert run.returncode != 0
    # Refused by the plan on the controller, which resolves the revision once for the unit.
    assert "has no branch or tag 'no-such-branch' in datacrunch-lab/tiny-deepseek-r1" in " ".join(run.stdout.split())
    bad = playbook("-e", "sglang_model=not-a-model-id", "-e", "sglang_model_revision=main", check=False)
    # Ansible's YAML output doubles the quotes inside a quoted message.
    assert bad.returncode != 0 and "sglang_model='not-a-model-id'" in bad.stdout.replace("''", "'")
    for host in HOSTS:
        assert host_files(host, LOCAL_HOME) == []


def test_check_mode_reports_what_would_be_fetched(empty_caches):
    run = playbook("--check")
    assert "INCOMPLETE (check mode: 16 files" in run.stdout
    for host in HOSTS:
        assert host_files(host, LOCAL_HOME) == []
