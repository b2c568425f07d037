# -*- coding: utf-8 -*-
# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Container image references: parse, validate, and read the SGLang version from a tag."""

from __future__ import annotations

import re

# The SGLang release this collection renders flags for by default: its default build is CUDA 13.0 / torch 2.13.
DEFAULT_SGLANG_IMAGE = "lmsysorg/sglang:v0.5.18"

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_DOMAIN = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?)"
_REFERENCE = re.compile(
    r"^(?P<name>(?:%s/)?%s(?:/%s)*)(?::(?P<tag>[\w][\w.-]{0,127}))?(?:@(?P<digest>sha256:[a-f0-9]{64}))?$"
    % (_DOMAIN, _COMPONENT, _COMPONENT)
)
_VERSION_IN_TAG = re.compile(r"^v?(?P<version>\d+\.\d+\.\d+(?:\.post\d+)?)(?:$|[-_.+])")


class ImageRefError(ValueError):
    pass


def parse_image_ref(reference):
    """Split an image reference into name, tag and digest; raise ImageRefError when malformed."""
    if not isinstance(reference, str) or not reference.strip():
        raise ImageRefError("an image reference must be a non-empty string, got %r" % (reference,))
    match = _REFERENCE.match(reference.strip())
    if not match:
        raise ImageRefError(
            "%r is not a well-formed image reference; expected NAME[:TAG][@sha256:DIGEST], "
            "e.g. lmsysorg/sglang:v0.5.18 (names are lower case)" % reference
        )
    name, tag, digest = match.group("name"), match.group("tag"), match.group("digest")
    if tag is None and digest is None:
        tag = "latest"
    return {"name": name, "tag": tag, "digest": digest}


def version_from_tag(tag):
    """SGLang version a tag names (v0.5.18, v0.5.18-cu130, 0.5.15.post1-cu130), or None (latest, dev, custom)."""
    if not tag:
        return None
    match = _VERSION_IN_TAG.match(tag)
    return match.group("version") if match else None


def image_version(reference, explicit=""):
    """The SGLang version of an image: the explicit one when given, else read from the tag, else None."""
    if explicit:
        return str(explicit).lstrip("v")
    return version_from_tag(parse_image_ref(reference)["tag"])
