# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which host driver an SGLang image needs.

An SGLang image is built against one CUDA toolkit; the host's NVIDIA driver must be at least that toolkit's
minimum driver. CUDA's minor-version compatibility would let a CUDA 12.x program run on any R525+ driver, but
SGLang compiles kernels at run time from PTX (DeepGEMM, Triton, FlashInfer), and PTX built by a newer toolkit
needs the driver that shipped with it. So the floor used here is the toolkit's own minimum driver.

Minimum Linux x86_64 driver of each CUDA toolkit (GA release), from NVIDIA's CUDA Toolkit release notes, table
"CUDA Toolkit and Corresponding Driver Versions":

======  ===========  =====================================================
CUDA    min driver   note
======  ===========  =====================================================
12.4    550.54.14    R550
12.5    555.42.02    R555
12.6    560.28.03    R560
12.8    570.26       R570 (first toolkit with Blackwell)
12.9    575.51.03    R575
13.0    580.65.06    R580; every 13.x toolkit needs an R580+ driver
======  ===========  =====================================================

The CUDA of an SGLang image (``lmsysorg/sglang``):

* a tag suffix ``-cu124``, ``-cu126``, ``-cu128``, ``-cu129``, ``-cu130`` names it;
* otherwise the default build of the version: 0.5.18 and later are CUDA 13.0 (0.5.18 and 0.5.23 checked), 0.4.x
  are CUDA 12.4; for other versions the CUDA is unknown and must be given (the profile's ``min_driver``, or the
  role variable that overrides it).
* moving tags (``latest``, ``dev``) and digests without a version are unknown too: pin a version.

Standard library only: this module is imported on the controller and on hosts.
"""

from __future__ import annotations

import re

MIN_DRIVER = {
    "12.4": "550.54.14",
    "12.5": "555.42.02",
    "12.6": "560.28.03",
    "12.8": "570.26",
    "12.9": "575.51.03",
    "13.0": "580.65.06",
}

# Image variants SGLang publishes per version, newest CUDA first; the advice offers the newest that fits.
VARIANTS = ("cu130", "cu129", "cu126")

# Default builds: (first version, CUDA), newest first; a version at or above the first version gets that CUDA.
DEFAULT_BUILDS = (((0, 5, 18), "13.0"),)
# Default builds of a whole minor series.
SERIES_BUILDS = {
    (0, 4): "12.4",
}

MOVING_TAGS = ("latest", "dev", "nightly", "main")

_VERSION = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)(?:\.post(\d+))?")
_SUFFIX = re.compile(r"-cu(\d{2})(\d)\b")


def parse_image(reference):
    """Split an image reference into ``{repository, tag, digest, version, cuda_suffix}``.

    ``lmsysorg/sglang:v0.5.18-cu129@sha256:ab..`` -> repository ``lmsysorg/sglang``, tag ``v0.5.18-cu129``,
    digest ``sha256:ab..``, version ``(0, 5, 18)``, cuda_suffix ``12.9``.
    """
    reference = (reference or "").strip()
    digest = ""
    if "@" in reference:
        reference, digest = reference.split("@", 1)
    repository, tag = reference, ""
    last = reference.rsplit("/", 1)[-1]
    if ":" in last:
        repository, tag = reference.rsplit(":", 1)
    version = None
    match = _VERSION.match(tag)
    if match:
        version = tuple(int(part) for part in match.group(1, 2, 3))
    cuda_suffix = ""
    suffix = _SUFFIX.search(tag)
    if suffix:
        cuda_suffix = f"{int(suffix.group(1))}.{int(suffix.group(2))}"
    return {"repository": repository, "tag": tag, "digest": digest, "version": version, "cuda_suffix": cuda_suffix}


def parse_version(text):
    """'0.5.18', 'v0.5.18.post1' -> (0, 5, 18); None when it is not a version."""
    match = _VERSION.match((text or "").strip())
    return tuple(int(part) for part in match.group(1, 2, 3)) if match else None


def driver_tuple(version):
    """'580.159.04' -> (580, 159, 4); None when it is not a driver version."""
    parts = re.findall(r"\d+", version or "")
    return tuple(int(part) for part in parts) if parts else None


def driver_at_least(driver, minimum):
    """True when driver >= minimum (both like '580.65.06'); False when either is unreadable."""
    have, need = driver_tuple(driver), driver_tuple(minimum)
    if have is None or need is None:
        return False
    return have >= need


def min_driver_for_cuda(cuda):
    """Minimum driver of a CUDA toolkit '12.9' -> '575.51.03'; a 13.x toolkit not in the table needs R580."""
    if cuda in MIN_DRIVER:
        return MIN_DRIVER[cuda]
    major = (cuda or "").split(".")[0]
    if major == "13":
        return MIN_DRIVER["13.0"]
    return None


def image_cuda(reference, version_hint=""):
    """The CUDA of an SGLang image: ``{cuda, min_driver, source}``; cuda None with the reason in source."""
    parsed = parse_image(reference)
    if parsed["cuda_suffix"]:
        cuda = parsed["cuda_suffix"]
        return {
            "cuda": cuda,
            "min_driver": min_driver_for_cuda(cuda),
            "source": "tag suffix -cu{}".format(cuda.replace(".", "")),
        }
    version = parse_version(version_hint) or parsed["version"]
    if version is None:
        if parsed["tag"] in MOVING_TAGS:
            reason = "the tag {!r} moves between releases".format(parsed["tag"])
        elif parsed["digest"] and not parsed["tag"]:
            reason = "a digest alone does not say the version"
        else:
            reason = "the tag {!r} does not say the SGLang version".format(parsed["tag"])
        return {"cuda": None, "min_driver": None, "source": reason}
    label = "v" + ".".join(str(part) for part in version)
    for first, cuda in DEFAULT_BUILDS:
        if version >= first:
            return {"cuda": cuda, "min_driver": min_driver_for_cuda(cuda), "source": f"default build of {label}"}
    cuda = SERIES_BUILDS.get(version[:2])
    if cuda:
        return {"cuda": cuda, "min_driver": min_driver_for_cuda(cuda), "source": f"default build of {label}"}
    return {"cuda": None, "min_driver": None, "source": f"the CUDA of the default build of {label} is not known"}


def variant(reference, suffix):
    """The same image with another CUDA variant tag: (lmsysorg/sglang:v0.5.18, cu129) -> ...:v0.5.18-cu129."""
    parsed = parse_image(reference)
    tag = _SUFFIX.sub("", parsed["tag"]) if parsed["cuda_suffix"] else parsed["tag"]
    return "{}:{}-{}".format(parsed["repository"], tag, suffix)


def fitting_variant(reference, driver):
    """The newest published CUDA variant of the image that the driver runs; None when none does."""
    version = parse_image(reference)["version"]
    # The -cuNNN variants are published from the 0.5 series on.
    if version is None or version < (0, 5, 0):
        return None
    for suffix in VARIANTS:
        cuda = f"{int(suffix[2:4])}.{int(suffix[4])}"
        if driver_at_least(driver, MIN_DRIVER[cuda]):
            return variant(reference, suffix)
    return None


def check_driver(reference, driver, version_hint="", min_driver=""):
    """Is the host driver new enough for the image?

    ``min_driver`` (a profile's or the user's) overrides the image's own floor. Returns ``{ok, cuda, min_driver,
    source, message, fix}``; ``ok`` is None when the floor is unknown (the message says what to set).
    """
    info = image_cuda(reference, version_hint)
    floor = (min_driver or "").strip() or info["min_driver"]
    source = "set explicitly" if (min_driver or "").strip() else info["source"]
    result = {"ok": None, "cuda": info["cuda"], "min_driver": floor or "", "source": source, "message": "", "fix": ""}
    if not driver_tuple(driver):
        result["ok"] = False
        result["message"] = f"the host's NVIDIA driver version is unknown ({driver!r})"
        result["fix"] = "install the NVIDIA driver (R580 or newer for CUDA 13 images) so that nvidia-smi works"
        return result
    if not floor:
        result["message"] = "cannot tell which driver {} needs: {}".format(reference, info["source"])
        result["fix"] = (
            "pin a versioned tag (e.g. lmsysorg/sglang:v0.5.18 or a -cu129 variant), or set sglang_image_version, "
            "or set the profile's min_driver / gpu_host_min_driver"
        )
        return result
    if driver_at_least(driver, floor):
        result["ok"] = True
        cuda = " (CUDA {})".format(info["cuda"]) if info["cuda"] and source != "set explicitly" else ""
        result["message"] = f"driver {driver} >= {floor} needed by {reference}{cuda}"
        return result
    result["ok"] = False
    what = "CUDA {}, {}".format(info["cuda"], source) if info["cuda"] and source != "set explicitly" else source
    result["message"] = f"driver {driver} is older than {floor} needed by {reference} ({what})"
    fits = fitting_variant(reference, driver)
    if fits and fits != reference:
        result["fix"] = (
            f"set sglang_image: {fits} (built for a CUDA this driver runs), or upgrade the driver to >= {floor}"
        )
    else:
        result["fix"] = (
            "upgrade the NVIDIA driver to >= {} (R{}); no published variant of this image runs on {}".format(
                floor,
                floor.split(".")[0],
                driver,
            )
        )
    return result
