"""Which network interface carries an address (for GLOO_SOCKET_IFNAME / NCCL_SOCKET_IFNAME).

gloo and NCCL otherwise advertise the address the hostname resolves to, often loopback, and a
gang across hosts never connects. Pure Python: `ip -j addr` when iproute2 is present (sees
every address), else the SIOCGIFADDR ioctl per interface (primary IPv4 address).
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import shutil
import socket
import struct
import subprocess
from typing import Iterator, Optional

_SIOCGIFADDR = 0x8915


def _resolve(host: str) -> set[str]:
    try:
        return {str(ipaddress.ip_address(host))}
    except ValueError:
        pass
    try:
        return {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return set()


def _ip_json() -> Iterator[tuple[str, str]]:
    ip = shutil.which("ip")
    if ip is None:
        return
    try:
        out = subprocess.run([ip, "-j", "addr"], capture_output=True, text=True, timeout=10)
        links = json.loads(out.stdout or "[]")
    except (OSError, subprocess.SubprocessError, ValueError):
        return
    for link in links:
        for info in link.get("addr_info", []):
            if "local" in info and "ifname" in link:
                yield link["ifname"], str(ipaddress.ip_address(info["local"]))


def _ioctl() -> Iterator[tuple[str, str]]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _, name in socket.if_nameindex():
            try:
                req = struct.pack("256s", name.encode()[:15])
                res = fcntl.ioctl(s.fileno(), _SIOCGIFADDR, req)
            except OSError:
                continue
            yield name, socket.inet_ntoa(res[20:24])


def interface_of(host: str) -> Optional[str]:
    """The name of the local interface that has `host`'s address, or None."""
    wanted = _resolve(host)
    if not wanted or wanted & {"0.0.0.0", "::"}:
        return None
    for source in (_ip_json, _ioctl):
        for name, addr in source():
            if addr in wanted:
                return name
    return None
