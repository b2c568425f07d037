"""What the converge did with the image: the host did not have the scenario's image (the lab registry's), so the
deploy pulled it while the weights downloaded, probed the GPUs in it as soon as it was there, and the second run
(molecule's idempotence step) pulled nothing.

Read from the world only: the host engine's events (the pull, the probe container), the lab registry's log (when the
host first asked for the image) and the times of the weight files in the host's Hugging Face cache. This file runs
before test_default.py, whose deploys would push the converge's events out of the engine's buffer.
"""

import json
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))
from tests.support.lab_checks import REPO_ROOT, lab_exec, lab_host_address

HOST_NAME = "dcsg-mol-default-1"
BLOBS = "/root/.cache/huggingface/hub/models--datacrunch-lab--tiny-deepseek-r1/blobs"
REGISTRY = REPO_ROOT / "tests" / "lab" / "services" / "registry.sh"


def registry(*args):
    return subprocess.run([str(REGISTRY), *args], capture_output=True, text=True, check=True).stdout.strip()


IMAGE = registry("name") + "/sglang-standin:v0.5.18"


def host_events(*filters):
    out = lab_exec(HOST_NAME, "docker", "events", "--since", "0", "--until", "0s", "--format", "{{json .}}",
                   *[arg for item in filters for arg in ("--filter", item)])
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def registry_requests(address, path):
    """Times (epoch seconds) of the registry's answers to this host for a path."""
    times = []
    for line in Path(registry("log")).read_text().splitlines():
        if 'msg="response completed' in line and f'remoteaddr="{address}:' in line and path in line:
            stamp = re.search(r'time="([^"]+)"', line).group(1)
            times.append(datetime.fromisoformat(stamp[:26].rstrip("Z") + "+00:00").timestamp())
    return times


def test_the_image_was_pulled_and_probed_while_the_weights_downloaded():
    pulls = [event for event in host_events("type=image", "event=pull") if event["id"] == IMAGE]
    assert len(pulls) == 1, "the image was pulled %d times (converge and its second run): %s" % (len(pulls), pulls)
    pulled_at = pulls[0]["timeNano"] / 1e9
    # The registry serves every lab on this machine, and a later lab may reuse the address: this host's requests only.
    created = subprocess.run(["docker", "inspect", "-f", "{{.Created}}", HOST_NAME], capture_output=True, text=True,
                             check=True).stdout.strip()
    host_since = datetime.fromisoformat(created[:26].rstrip("Z") + "+00:00").timestamp()
    asked = [at for at in registry_requests(lab_host_address(HOST_NAME), "/v2/sglang-standin/manifests/v0.5.18")
             if at > host_since]
    assert asked, "the host never asked the lab registry for the image"
    blob_times = [float(value) for value in lab_exec(HOST_NAME, "sh", "-c", f"stat -c %.9Y {BLOBS}/*").split()]
    assert len(blob_times) >= 8
    download_started, download_ended = min(blob_times), max(blob_times)
    # The pull began before the last weight file was written, and was done before it: it ran alongside.
    assert min(asked) < download_ended and pulled_at < download_ended, (
        "pull asked %.1f s, done %.1f s after the download's first file; the download ended %.1f s after it"
        % (min(asked) - download_started, pulled_at - download_started, download_ended - download_started))
    probes = [event for event in host_events("type=container", "event=start", "label=datacrunch.sglang.probe")
              if event["Actor"]["Attributes"].get("image") == IMAGE]
    assert probes, "no GPU probe ran in the pulled image"
    probed_at = probes[0]["timeNano"] / 1e9
    assert pulled_at <= probed_at < download_ended, (
        "the GPU probe started %.1f s after the pull, %.1f s before the download ended"
        % (probed_at - pulled_at, download_ended - probed_at))
