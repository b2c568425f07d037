# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which DataCrunch (Verda) OS image to rent for an SGLang image, by rule.

The API lists the OS images a type accepts (GET /images?instance_type=, for Instant Clusters GET
/images/cluster?instance_type=). An OS image's name carries its CUDA line (``ubuntu-24.04-cuda-13.0-open-docker``);
an image built for CUDA X ships at least the driver CUDA X needs (cuda_compat.MIN_DRIVER). The SGLang image needs a
driver floor of its own (cuda_compat.image_cuda: ``lmsysorg/sglang:v0.5.18`` is CUDA 13.0, R580+). An OS image fits
when the floor of its CUDA line is at least the SGLang image's floor.

No source documents which driver each OS image really ships: this choice avoids the known misfits, and the GPU
preflight's driver check on the host stays the authority.
"""

from __future__ import annotations

import re

from ansible_collections.datacrunch.sglang.plugins.module_utils.common.image_ref import DEFAULT_SGLANG_IMAGE
from ansible_collections.datacrunch.sglang.plugins.module_utils.datacrunch.api import DataCrunchError
from ansible_collections.datacrunch.sglang.plugins.module_utils.gpu import cuda_compat

_OS_CUDA = re.compile(r"(?:^|-)cuda-?(\d+)\.(\d+)(?=-|$)")
_OS_UBUNTU = re.compile(r"ubuntu-(\d+)\.(\d+)")
FORCE_HINT = "datacrunch_image_force: true (module option force)"


class ImageChoiceError(DataCrunchError):
    """No OS image fits, or the one asked for does not; the message names both images and the way out."""


def os_image_cuda(name):
    """'ubuntu-24.04-cuda-12.8-open-docker' -> '12.8'; None when the name carries no CUDA line."""
    match = _OS_CUDA.search(name or "")
    return f"{int(match.group(1))}.{int(match.group(2))}" if match else None


def os_image_floor(name):
    """The least driver an OS image of this CUDA line ships (its CUDA's minimum driver); None when unknown."""
    cuda = os_image_cuda(name)
    return cuda_compat.min_driver_for_cuda(cuda) if cuda else None


def _fits(name, floor):
    have = os_image_floor(name)
    return bool(have) and cuda_compat.driver_at_least(have, floor)


def _preference(name, cluster):
    cuda = tuple(int(part) for part in (os_image_cuda(name) or "0.0").split("."))
    ubuntu = _OS_UBUNTU.search(name)
    # Instances need Docker and the NVIDIA container toolkit: the -docker images bring both.
    ready = cluster or "docker" in name
    return (ready, cuda, tuple(int(part) for part in ubuntu.groups()) if ubuntu else (0, 0), name)


def choose_os_image(accepted, type_name, sglang_image="", sglang_image_version="", wanted="", force=False,
                    cluster=False, variable="datacrunch_image (module option image)"):
    """The OS image to rent, with why: ``{image, cuda, accepted, sglang_image, sglang_cuda, min_driver, reason}``.

    ``accepted``: the names the type accepts. ``wanted``: an explicit choice (kept if it fits, refused otherwise
    unless ``force``). Raises ImageChoiceError naming both images, the accepted ones and the override.
    """
    sglang_image = sglang_image or DEFAULT_SGLANG_IMAGE
    need = cuda_compat.image_cuda(sglang_image, sglang_image_version)
    floor = need["min_driver"]
    need_text = (f"CUDA {need['cuda']}, driver >= {floor}" if floor else need["source"])
    listed = ", ".join(accepted) or "none"
    result = {"accepted": list(accepted), "sglang_image": sglang_image, "sglang_cuda": need["cuda"],
              "min_driver": floor}
    if wanted:
        if force:
            return dict(result, image=wanted, cuda=os_image_cuda(wanted), reason=f"{variable} forced")
        if wanted not in accepted:
            raise ImageChoiceError(
                f"{variable}={wanted!r} is not an OS image that {type_name} accepts (it accepts: {listed}): choose one "
                f"of them, leave {variable} empty to choose by rule, or set {FORCE_HINT}"
            )
        if floor and not _fits(wanted, floor):
            cuda = os_image_cuda(wanted)
            raise ImageChoiceError(
                f"{variable}={wanted!r} ({'CUDA ' + cuda if cuda else 'no CUDA line in its name'}) does not carry a "
                f"driver for sglang_image {sglang_image!r} ({need_text}). {type_name} accepts: {listed}. Choose one "
                f"with CUDA {need['cuda']} or newer, leave {variable} empty to choose by rule, use an SGLang image "
                f"built for an older CUDA (a -cu129 or -cu126 tag), or set {FORCE_HINT} when you know the image's "
                "driver is new enough"
            )
        return dict(result, image=wanted, cuda=os_image_cuda(wanted), reason=f"{variable} fits {sglang_image}")
    candidates = [name for name in accepted if os_image_cuda(name)]
    if floor:
        candidates = [name for name in candidates if _fits(name, floor)]
    if not candidates:
        raise ImageChoiceError(
            f"none of the OS images {type_name} accepts ({listed}) carries a driver for sglang_image "
            f"{sglang_image!r} ({need_text}): use an SGLang image built for an older CUDA (a -cu129 or -cu126 tag), "
            f"or set {variable} with {FORCE_HINT}"
        )
    chosen = max(candidates, key=lambda name: _preference(name, cluster))
    why = (f"the newest CUDA line {type_name} offers for {sglang_image} ({need_text})" if floor
           else f"the newest CUDA line {type_name} offers; the CUDA of {sglang_image} is unknown ({need['source']})")
    return dict(result, image=chosen, cuda=os_image_cuda(chosen), reason=why)
