"""Pod networking: the bridge, one network namespace + veth per pod, pod IPs."""
from __future__ import annotations

import ipaddress
import logging
import os
import subprocess
from pathlib import Path

from ..paths import BRIDGE, BRIDGE_IP, POD_CIDR

log = logging.getLogger(__name__)

NETNS_DIR = Path("/run/netns")
NETNS_PREFIX = "kl-"
VETH_PREFIX = "klv"


class NetworkError(Exception):
    """An ``ip`` command failed."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise NetworkError(f"ip {' '.join(args)}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def _short_id(uid: str) -> str:
    return uid.replace("-", "")[:12]


def netns_name(uid: str) -> str:
    """``kl-<12 hex of the pod uid>``."""
    return NETNS_PREFIX + _short_id(uid)


def veth_name(uid: str) -> str:
    """The host end of the pod's veth (15 characters, the kernel's limit)."""
    return VETH_PREFIX + _short_id(uid)


def netns_exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def ensure_bridge() -> None:
    """Create bridge ``kubelab0`` with the host address of the pod network; idempotent."""
    prefix = ipaddress.ip_network(POD_CIDR).prefixlen
    if _ip("link", "show", BRIDGE, check=False).returncode != 0:
        _ip("link", "add", BRIDGE, "type", "bridge")
    addrs = _ip("-o", "addr", "show", "dev", BRIDGE).stdout
    if f" {BRIDGE_IP}/" not in addrs:
        _ip("addr", "add", f"{BRIDGE_IP}/{prefix}", "dev", BRIDGE)
    _ip("link", "set", BRIDGE, "up")


class IpAllocator:
    """Hands out addresses of one node's pod CIDR, round robin, one per pod uid.

    The network address, the broadcast address and the first host (``.1``,
    conventionally the gateway) are never given out. Allocations live in the
    pod records; the allocator is rebuilt from them on start, and continues
    after ``last`` (the most recently handed out address), so freed addresses
    are not reused sooner than necessary.
    """

    def __init__(self, cidr: str, held: dict[str, str] | None = None, last: str | None = None):
        self.network = ipaddress.ip_network(cidr)
        self._hosts = [str(h) for h in self.network.hosts()][1:]
        self._by_uid: dict[str, str] = dict(held or {})
        self._next = self._hosts.index(last) + 1 if last in self._hosts else 0

    def allocate(self, uid: str) -> str:
        """The address of ``uid`` (the same one again if it already has one)."""
        if uid in self._by_uid:
            return self._by_uid[uid]
        used = set(self._by_uid.values())
        for i in range(len(self._hosts)):
            ip = self._hosts[(self._next + i) % len(self._hosts)]
            if ip not in used:
                self._by_uid[uid] = ip
                self._next = (self._next + i + 1) % len(self._hosts)
                return ip
        raise NetworkError(f"pod CIDR {self.network} is exhausted")

    def release(self, uid: str) -> None:
        self._by_uid.pop(uid, None)


def setup_pod_network(uid: str, ip: str) -> tuple[str, str]:
    """Create the pod's netns and veth, address ``ip``, default route via the bridge.

    Anything left from an earlier attempt is removed first. Returns (netns, veth).
    """
    ns, veth = netns_name(uid), veth_name(uid)
    teardown_pod_network(ns, veth)
    prefix = ipaddress.ip_network(POD_CIDR).prefixlen
    _ip("netns", "add", ns)
    _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
    _ip("link", "set", veth, "master", BRIDGE, "up")
    try:  # lets a pod reach itself through a Service address
        Path(f"/sys/class/net/{veth}/brport/hairpin_mode").write_text("1")
    except OSError as e:
        log.warning("hairpin mode on %s: %s", veth, e)
    _ip("-n", ns, "link", "set", "lo", "up")
    _ip("-n", ns, "addr", "add", f"{ip}/{prefix}", "dev", "eth0")
    _ip("-n", ns, "link", "set", "eth0", "up")
    _ip("-n", ns, "route", "add", "default", "via", BRIDGE_IP)
    return ns, veth


def teardown_pod_network(netns: str | None, veth: str | None) -> None:
    """Delete the pod's veth and netns; missing ones are fine."""
    if veth and _ip("link", "show", veth, check=False).returncode == 0:
        _ip("link", "del", veth, check=False)
    if netns and netns_exists(netns):
        _ip("netns", "del", netns, check=False)


def list_agent_netns() -> list[str]:
    """All network namespaces named like the agent's."""
    try:
        return sorted(n for n in os.listdir(NETNS_DIR) if n.startswith(NETNS_PREFIX))
    except OSError:
        return []


def list_agent_veths() -> list[str]:
    """All host links named like the agent's veths."""
    try:
        return sorted(n for n in os.listdir("/sys/class/net") if n.startswith(VETH_PREFIX))
    except OSError:
        return []
