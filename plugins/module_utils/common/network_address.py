# -*- coding: utf-8 -*-
# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Address classes that decide where rendezvous and NCCL traffic may go."""

from __future__ import annotations

import ipaddress

# Carrier-grade NAT space: not "private" to Python, but private to the clouds that use it for internal networks.
_SHARED_SPACE = ipaddress.ip_network("100.64.0.0/10")


def is_private_address(address):
    """True for addresses that stay inside a private network (RFC 1918, RFC 6598, IPv6 ULA)."""
    try:
        ip = ipaddress.ip_address(str(address).strip())
    except ValueError:
        return False
    if ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_unspecified:
        return False
    if ip.version == 4 and ip in _SHARED_SPACE:
        return True
    return ip.is_private


def is_ip_address(address):
    try:
        ipaddress.ip_address(str(address).strip())
    except ValueError:
        return False
    return True
