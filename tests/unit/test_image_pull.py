"""The image the prefetch pulls: the policy, the message each registry refusal gets, and the GPU probe's judgement."""

import pytest
from docker.errors import APIError, ImageNotFound

from ansible_collections.datacrunch.sglang.plugins.module_utils.gpu.checks import container_gpus_check
from ansible_collections.datacrunch.sglang.plugins.module_utils.launch import image_pull

REGISTRY_IMAGE = "lab-registry.test:18093/sglang-standin:v0.5.18"


class FakeImage:
    def __init__(self, image_id):
        self.id = image_id


class FakeImages:
    def __init__(self, local=None, pulled=None, error=None):
        self.local, self.pulled, self.error, self.pulls = local, pulled, error, []

    def get(self, reference):
        if self.local is None:
            raise ImageNotFound("no such image")
        return self.local

    def pull(self, reference):
        self.pulls.append(reference)
        if self.error:
            raise self.error
        return self.pulled


class FakeClient:
    def __init__(self, **kwargs):
        self.images = FakeImages(**kwargs)


def test_a_present_image_is_not_pulled_again():
    client = FakeClient(local=FakeImage("sha256:a"))
    image, actions = image_pull.ensure_image(client, REGISTRY_IMAGE, "missing", check_mode=False)
    assert image.id == "sha256:a" and actions == [] and client.images.pulls == []


def test_a_missing_image_is_pulled_and_said_so():
    client = FakeClient(pulled=FakeImage("sha256:b"))
    image, actions = image_pull.ensure_image(client, REGISTRY_IMAGE, "missing", check_mode=False)
    assert image.id == "sha256:b" and actions == ["pulled " + REGISTRY_IMAGE]


def test_check_mode_only_says_it_would_pull():
    client = FakeClient()
    image, actions = image_pull.ensure_image(client, REGISTRY_IMAGE, "missing", check_mode=True)
    assert image is None and actions == ["pull " + REGISTRY_IMAGE] and client.images.pulls == []


def test_never_refuses_a_missing_image():
    with pytest.raises(image_pull.ImagePullError, match="sglang_server_pull=never forbids pulling it"):
        image_pull.ensure_image(FakeClient(), REGISTRY_IMAGE, "never", check_mode=False)


@pytest.mark.parametrize(("explanation", "fix"), [
    ("manifest for %s not found: manifest unknown: manifest unknown" % REGISTRY_IMAGE,
     "the registry lab-registry.test:18093 has no such image or tag: check sglang_image"),
    ("Head \"https://lab-registry.test:18093/v2/sglang-standin/manifests/v0.5.23\": no basic auth credentials",
     "refused the host's credentials: log the host in (`docker login lab-registry.test:18093` as root"),
    ("unauthorized: authentication required",
     "refused the host's credentials"),
    ("Get \"https://lab-registry.test:18093/v2/\": x509: certificate signed by unknown authority",
     "a private CA goes into /etc/docker/certs.d/lab-registry.test:18093/ca.crt"),
])
def test_each_refusal_gets_its_fix(explanation, fix):
    error = APIError("500 Server Error", explanation=explanation)
    with pytest.raises(image_pull.ImagePullError) as raised:
        image_pull.ensure_image(FakeClient(error=error), REGISTRY_IMAGE, "missing", check_mode=False)
    message = str(raised.value)
    assert message.startswith("image %s is not on this host and cannot be pulled: " % REGISTRY_IMAGE)
    assert explanation in message and fix in message


@pytest.mark.parametrize(("reference", "registry"), [
    ("lmsysorg/sglang:v0.5.18", "docker.io"),
    ("sglang:v0.5.18", "docker.io"),
    ("localhost/sglang-standin:v0.5.18", "localhost"),
    (REGISTRY_IMAGE, "lab-registry.test:18093"),
    ("ghcr.io/org/sglang:v0.5.23", "ghcr.io"),
])
def test_the_registry_of_a_reference(reference, registry):
    assert image_pull.registry_of(reference) == registry


def test_the_probe_must_list_every_gpu():
    listing = "\n".join("GPU %d: NVIDIA H200 (UUID: GPU-%d)" % (index, index) for index in range(8))
    assert container_gpus_check({"ran": True, "exit_code": 0, "output": listing}, 8)["status"] == "pass"
    short = container_gpus_check({"ran": True, "exit_code": 0, "output": listing}, 16)
    assert short["status"] == "fail" and short["summary"] == "a container sees 8 GPUs, the host has 16"
    failed = container_gpus_check({"ran": True, "exit_code": 1, "image": "x:v0.5.18",
                                   "output": "could not select device driver"}, 8)
    assert failed["status"] == "fail" and "could not select device driver" in failed["summary"]
    assert "nvidia-ctk runtime configure" in failed["fix"]


def test_a_probe_that_fails_stops_the_prefetch(monkeypatch):
    monkeypatch.setattr(image_pull, "gpu_probe", lambda *_args, **_kwargs: {
        "image": REGISTRY_IMAGE, "ran": True, "exit_code": 125, "output": "",
        "error": 'could not select device driver "" with capabilities: [[gpu]]'})
    client = FakeClient(local=FakeImage("sha256:a"))
    with pytest.raises(image_pull.ImagePullError) as raised:
        image_pull.prefetch_image(client, REGISTRY_IMAGE, "missing", 8, check_mode=False)
    assert "a container of it does not see the GPUs" in str(raised.value)
    assert raised.value.result["probe"]["status"] == "fail"


def test_a_probe_that_lists_every_gpu_passes(monkeypatch):
    listing = "\n".join("GPU %d: NVIDIA H200" % index for index in range(8))
    monkeypatch.setattr(image_pull, "gpu_probe", lambda *_args, **_kwargs: {
        "image": REGISTRY_IMAGE, "ran": True, "exit_code": 0, "output": listing, "seconds": 0.4})
    result = image_pull.prefetch_image(FakeClient(pulled=FakeImage("sha256:b")), REGISTRY_IMAGE, "missing", 8,
                                       check_mode=False)
    assert result["pulled"] is True and result["probe"]["summary"] == "a container sees 8 GPUs (0.4 s)"
