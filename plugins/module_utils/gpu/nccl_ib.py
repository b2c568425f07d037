# -*- coding: utf-8 -*-
# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""NCCL's InfiniBand settings from a host's RDMA devices: which HCAs, which GID index, which partition key.

Pure functions of the ``ib_devices`` the preflight publishes in ``sglang_gpu`` (active devices with ``name``,
``link_layer`` and ``pkeys``, the non-empty entries of the port's P_Key table as ``{"index", "value"}``). The
preflight shows the result and judges a unit's partitions with them; the launch renders the same result into the
container's environment.

- ``NCCL_IB_HCA``: when InfiniBand devices exist, only those, matched exactly (``=mlx5_0,mlx5_1``), so that a
  front-end Ethernet NIC of the same vendor is never taken as a rail; on a RoCE-only host, its RoCE devices.
- ``NCCL_IB_GID_INDEX``: 3 (RoCE v2 on IPv4 in the usual GID table) only when every device is RoCE.
- ``NCCL_IB_PKEY``: an index into the P_Key table. Verda's Instant Clusters partition their InfiniBand fabric and
  their documentation asks containers to set ``NCCL_IB_PKEY=1``
  (https://docs.verda.com/clusters/instant-clusters/good-to-know/). The index chosen is the one entry that is a full
  member (bit 0x8000) of a partition other than the default one (0x7fff/0xffff); with none or several such entries,
  Verda's documented 1 and a note. RoCE-only hosts get none.
"""

from __future__ import annotations

FULL_MEMBER = 0x8000
DEFAULT_PARTITION = 0x7FFF
DOCUMENTED_PKEY_INDEX = "1"
ROCE_GID_INDEX = "3"
PARTITION_FIX = (
    "put hosts of one Instant Cluster (one partition) into the unit, or ask the provider to add them to one partition"
)
PKEY_SOURCE = "https://docs.verda.com/clusters/instant-clusters/good-to-know/"


def _as_int(value):
    try:
        return int(str(value), 0)
    except (TypeError, ValueError):
        return None


def pkey_hex(value):
    return "0x%04x" % value


def _link_layer(device):
    return str(device.get("link_layer") or "").strip().lower() if isinstance(device, dict) else ""


def infiniband_devices(devices):
    return [device for device in devices or [] if _link_layer(device) == "infiniband"]


def roce_devices(devices):
    return [device for device in devices or [] if _link_layer(device) == "ethernet"]


def partition_entries(device):
    """(index, value) of the P_Key entries that make this port a full member of a non-default partition."""
    entries = []
    for entry in device.get("pkeys") or []:
        index, value = _as_int(entry.get("index")), _as_int(entry.get("value"))
        if index is None or value is None:
            continue
        if value & FULL_MEMBER and (value & DEFAULT_PARTITION) != DEFAULT_PARTITION:
            entries.append((index, value))
    return entries


def partitions(devices):
    """The non-default partitions (as 0x.... strings) the host's InfiniBand ports are full members of."""
    held = {value for device in infiniband_devices(devices) for _index, value in partition_entries(device)}
    return sorted(pkey_hex(value) for value in held)


def settings(devices, hca="", gid_index="", pkey=""):
    """NCCL_IB_* for one host: ``{hca, gid_index, pkey, pkey_value, link_layer, notes}`` (empty strings: unset).

    ``hca``, ``gid_index`` and ``pkey`` are the user's overrides (sglang_server_nccl_ib_*); each wins alone.
    """
    infiniband = infiniband_devices(devices)
    roce = roce_devices(devices)
    chosen = infiniband or roce
    result = {
        "hca": "",
        "gid_index": "",
        "pkey": "",
        "pkey_value": "",
        "link_layer": "InfiniBand" if infiniband else ("RoCE" if roce else ""),
        "notes": [],
    }
    if chosen:
        result["hca"] = "=" + ",".join(sorted(str(device["name"]) for device in chosen))
    if roce and not infiniband:
        result["gid_index"] = ROCE_GID_INDEX
    if infiniband:
        candidates = sorted({entry for device in infiniband for entry in partition_entries(device)})
        if len(candidates) == 1:
            index, value = candidates[0]
            result["pkey"], result["pkey_value"] = str(index), pkey_hex(value)
        else:
            result["pkey"] = DOCUMENTED_PKEY_INDEX
            found = (
                "several partitions in the P_Key tables ("
                + ", ".join("%s at index %d" % (pkey_hex(value), index) for index, value in candidates)
                + ")"
                if candidates
                else "no partition other than the default in the P_Key tables"
            )
            result["notes"].append(
                "%s of %s: NCCL_IB_PKEY=%s, as Verda documents for Instant Clusters (%s); set "
                "sglang_server_nccl_ib_pkey to the index of the unit's partition to choose"
                % (found, ", ".join(sorted(str(device["name"]) for device in infiniband)), DOCUMENTED_PKEY_INDEX,
                   PKEY_SOURCE)
            )
    if hca != "" and hca is not None:
        result["hca"] = str(hca)
    if gid_index != "" and gid_index is not None:
        result["gid_index"] = str(gid_index)
    if pkey != "" and pkey is not None:
        result["pkey"], result["pkey_value"], result["notes"] = str(pkey), "", []
    return result


def partition_mismatch(unit, cluster=""):
    """A message when the InfiniBand hosts of one unit are full members of different partitions, else ''.

    ``unit`` maps host name to its ``ib_devices``; hosts without InfiniBand devices are not judged here.
    """
    held = {host: partitions(devices) for host, devices in sorted(unit.items()) if infiniband_devices(devices)}
    if len({tuple(values) for values in held.values()}) <= 1:
        return ""
    return (
        "the hosts of sglang_cluster=%r are members of different InfiniBand partitions (%s, from the P_Key tables "
        "under /sys/class/infiniband/*/ports/*/pkeys): NCCL between them cannot work"
        % (cluster, ", ".join("%s %s" % (host, "/".join(values) or "none") for host, values in held.items()))
    )
