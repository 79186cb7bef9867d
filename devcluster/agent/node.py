"""The Node object and its Lease: registration, heartbeats."""
from __future__ import annotations

import logging
import platform
import socket
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..kube import ApiError, Client
from ..paths import BRIDGE_IP
from .config import NodeConfig

log = logging.getLogger(__name__)

KUBELET_VERSION = "v1.36.3"
LEASE_NAMESPACE = "kube-node-lease"
LEASE_DURATION = 40
LEASE_RENEW = 10.0
STATUS_HEARTBEAT = 40.0

_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _micro_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def arch() -> str:
    machine = platform.machine()
    return _ARCH.get(machine, machine)


def node_labels(cfg: NodeConfig) -> dict[str, str]:
    return {
        **cfg.labels,
        "kubernetes.io/hostname": cfg.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": arch(),
    }


def _conditions(previous: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Ready=True and no pressure, keeping transition times of unchanged conditions."""
    now = _now()
    old = {c["type"]: c for c in previous or []}
    wanted = [
        ("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
        ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
        ("Ready", "True", "KubeletReady", "devcluster node agent is posting ready status"),
    ]
    out = []
    for type_, status, reason, message in wanted:
        prev = old.get(type_)
        transition = prev["lastTransitionTime"] if prev and prev.get("status") == status else now
        out.append({"type": type_, "status": status, "reason": reason, "message": message,
                    "lastHeartbeatTime": now, "lastTransitionTime": transition})
    return out


def node_status(cfg: NodeConfig, previous_conditions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The status the node reports (capacity = allocatable, addresses, endpoint, info)."""
    capacity = dict(cfg.capacity)
    return {
        "capacity": capacity,
        "allocatable": dict(capacity),
        "conditions": _conditions(previous_conditions),
        "addresses": [{"type": "InternalIP", "address": BRIDGE_IP}, {"type": "Hostname", "address": cfg.name}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": cfg.kubelet_port}},
        "nodeInfo": {
            "machineID": _read("/etc/machine-id") or uuid.uuid5(uuid.NAMESPACE_DNS, socket.gethostname()).hex,
            "systemUUID": str(uuid.uuid5(uuid.NAMESPACE_DNS, cfg.name)),
            "bootID": _read("/proc/sys/kernel/random/boot_id"),
            "kernelVersion": platform.release(),
            "osImage": _os_image(),
            "containerRuntimeVersion": "kubelab://0.1.0",
            "kubeletVersion": KUBELET_VERSION,
            "operatingSystem": "linux",
            "architecture": arch(),
        },
    }


def _os_image() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return "Linux"


def node_object(cfg: NodeConfig) -> dict[str, Any]:
    """The Node to create: labels, taints and the pod CIDR are only set at creation."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": cfg.name, "labels": node_labels(cfg),
                     "annotations": {"node.alpha.kubernetes.io/ttl": "0"}},
        "spec": {"podCIDR": cfg.pod_cidr, "podCIDRs": [cfg.pod_cidr], "taints": list(cfg.taints)},
        "status": node_status(cfg),
    }


class NodeRegistrar:
    """Registers one node and keeps it alive (Lease every 10 s, Ready heartbeat every 40 s)."""

    def __init__(self, client: Client, cfg: NodeConfig):
        self.client = client
        self.cfg = cfg
        self.node_uid: str | None = None
        self._lease: dict[str, Any] | None = None
        self._conditions: list[dict[str, Any]] | None = None

    def register(self) -> None:
        """Create the Node, or bring an existing one up to date (idempotent)."""
        path = self.client.path("v1", "nodes", name=self.cfg.name)
        try:
            node = self.client.create(self.client.path("v1", "nodes"), node_object(self.cfg))
            log.info("node %s: registered", self.cfg.name)
        except ApiError as e:
            if e.status != 409:
                raise
            node = self.client.patch(path, {"metadata": {"labels": node_labels(self.cfg)}})
            spec_cidr = (node.get("spec") or {}).get("podCIDR")
            if spec_cidr and spec_cidr != self.cfg.pod_cidr:
                log.warning("node %s: existing podCIDR %s differs from nodes.yaml (%s); using nodes.yaml",
                            self.cfg.name, spec_cidr, self.cfg.pod_cidr)
            log.info("node %s: already registered; updated", self.cfg.name)
        self.node_uid = node["metadata"]["uid"]
        self._conditions = (node.get("status") or {}).get("conditions")
        self.post_status()

    def post_status(self) -> None:
        status = node_status(self.cfg, self._conditions)
        node = self.client.patch(self.client.path("v1", "nodes", name=self.cfg.name, sub="status"),
                                 {"status": status}, kind="strategic")
        self._conditions = (node.get("status") or {}).get("conditions")

    def renew_lease(self) -> None:
        path = self.client.path("coordination.k8s.io/v1", "leases", LEASE_NAMESPACE, self.cfg.name)
        if self._lease is None:
            try:
                self._lease = self.client.get(path)
            except ApiError as e:
                if e.status != 404:
                    raise
                body = {
                    "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.cfg.name, "namespace": LEASE_NAMESPACE,
                                 "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": self.cfg.name,
                                                      "uid": self.node_uid}]},
                    "spec": {"holderIdentity": self.cfg.name, "leaseDurationSeconds": LEASE_DURATION,
                             "renewTime": _micro_now()},
                }
                self._lease = self.client.create(
                    self.client.path("coordination.k8s.io/v1", "leases", LEASE_NAMESPACE), body)
                return
        lease = dict(self._lease)
        lease["spec"] = dict(lease.get("spec") or {}, holderIdentity=self.cfg.name,
                             leaseDurationSeconds=LEASE_DURATION, renewTime=_micro_now())
        try:
            self._lease = self.client.replace(path, lease)
        except ApiError:
            self._lease = None  # conflict or gone: start over next time
            raise

    def run(self, stop: threading.Event) -> None:
        """Heartbeat until ``stop``; re-registers if the Node was deleted."""
        next_status = time.monotonic() + STATUS_HEARTBEAT
        while not stop.is_set():
            try:
                if self.node_uid is None:
                    self.register()
                self.renew_lease()
                if time.monotonic() >= next_status:
                    self.post_status()
                    next_status = time.monotonic() + STATUS_HEARTBEAT
            except ApiError as e:
                log.warning("node %s: heartbeat failed: %s", self.cfg.name, e)
                if e.status == 404:
                    self.node_uid = None
            except Exception as e:
                log.warning("node %s: heartbeat failed: %s", self.cfg.name, e)
            stop.wait(LEASE_RENEW)
