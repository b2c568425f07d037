"""module_utils/common/network_address.py: which addresses keep rendezvous and NCCL traffic inside a private
network (RFC 1918, RFC 6598 shared space, IPv6 unique local), and what is an IP address at all."""

import pytest

from ansible_collections.datacrunch.sglang.plugins.module_utils.common.network_address import (
    is_ip_address,
    is_private_address,
)


@pytest.mark.parametrize("address", ["10.0.0.5", "172.16.3.4", "192.168.1.20", "100.64.0.1", "100.127.255.254",
                                     "fd00::5", " 10.1.2.3 "])
def test_private_addresses(address):
    assert is_private_address(address) is True


@pytest.mark.parametrize("address", [
    "8.8.8.8", "100.128.0.1", "2001:4860:4860::8888",  # public (100.128/10 is past the shared space)
    "127.0.0.1", "::1",  # loopback: another host cannot reach it
    "169.254.10.1", "fe80::1",  # link-local
    "224.0.0.1", "ff02::1",  # multicast
    "0.0.0.0", "::",  # unspecified
    "gpu-0", "", None, "10.0.0.256",  # not addresses
])
def test_addresses_that_are_not_private(address):
    assert is_private_address(address) is False


def test_what_is_an_ip_address():
    assert is_ip_address("10.0.0.5") and is_ip_address("fd00::5") and is_ip_address(" 8.8.8.8\n")
    assert not is_ip_address("gpu-0.example.com")
    assert not is_ip_address("10.0.0.0/8")
    assert not is_ip_address(None)
