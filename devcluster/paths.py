"""Where devcluster keeps its state, and the fixed network plan."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# Network plan. The bridge address is the host side of the pod network; the
# apiserver advertises it and every node reports it as its InternalIP.
BRIDGE = "kubelab0"
BRIDGE_IP = "10.244.0.1"
POD_CIDR = "10.244.0.0/16"
SERVICE_CIDR = "10.96.0.0/16"
KUBERNETES_SERVICE_IP = "10.96.0.1"
DNS_SERVICE_IP = "10.96.0.10"
CLUSTER_DOMAIN = "cluster.local"
APISERVER_PORT = 6443
ETCD_CLIENT_PORT = 23790
ETCD_PEER_PORT = 23800
KUBELET_BASE_PORT = 10250


@dataclass(frozen=True)
class State:
    """The devcluster state directory (.devcluster/ in the repo root)."""

    root: Path

    @classmethod
    def default(cls) -> "State":
        return cls(Path(os.environ.get("KUBELAB_DEVCLUSTER_DIR", REPO / ".devcluster")).resolve())

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    @property
    def kubeconfig(self) -> Path:
        """Admin kubeconfig (system:masters)."""
        return self.root / "kubeconfig"

    def component_kubeconfig(self, name: str) -> Path:
        """Kubeconfig of one component, e.g. ``node-kubelab-cpu-0``, ``kube-proxy``."""
        return self.root / "kubeconfigs" / f"{name}.kubeconfig"

    @property
    def s3_env(self) -> Path:
        return self.root / "s3.env"

    @property
    def agent(self) -> Path:
        return self.root / "agent"
