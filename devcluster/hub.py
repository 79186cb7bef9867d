"""JupyterHub with KubelabSpawner on devcluster: deploy/ applied, hub and proxy started.

``python -m devcluster hub-up`` (part of `make demo`); the hub runs as daemon
``hub`` with the ServiceAccount token of ``kubelab-system/hub``, so it is held
to deploy/'s ClusterRole exactly as on a real cluster.
"""
from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from pathlib import Path

import requests
import yaml

from . import procs, s3
from .kube import ApiError, Client, write_kubeconfig
from .paths import REPO, State

CHP_VERSION = "5.3.0"
HUB_URL = "http://127.0.0.1:8000"
HUB_NAMESPACE = "kubelab-system"
DEPLOY = REPO / "deploy"
# What devcluster applies from deploy/, in order (server-side apply).
MANIFESTS = ["namespace.yaml", "crds/kubelab.io.yaml", "rbac/hub-clusterrole.yaml",
             "rbac/shared-datasets.yaml", "admission/user-pod-policy.yaml", "s3fs/daemonset.yaml",
             "networkpolicy/kubelab-system.yaml"]


class HubError(RuntimeError):
    pass


def chp_bin() -> Path:
    """configurable-http-proxy from the npm registry, cached outside the work tree."""
    cache = Path(os.environ.get("KUBELAB_CACHE", Path.home() / ".cache" / "kubelab")) / "chp" / CHP_VERSION
    binary = cache / "node_modules" / ".bin" / "configurable-http-proxy"
    if not binary.exists():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--prefix", str(cache),
                        f"configurable-http-proxy@{CHP_VERSION}"], check=True, capture_output=True)
    return binary


def _secret(path: Path) -> str:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip()


def test_token(state: State) -> str:
    """The API token of the hub service ``kubelab-tests`` (admin:users, admin:servers...)."""
    return _secret(state.root / "hub" / "test_token")


def load_docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def apply_deploy(admin: Client, state: State) -> None:
    """Apply deploy/ with devcluster's values (S3 endpoint and platform keys for s3fs)."""
    from .cluster import apply_object

    for rel in MANIFESTS:
        for obj in load_docs(DEPLOY / rel):
            if obj["kind"] == "ConfigMap" and obj["metadata"]["name"] == "kubelab-s3fs":
                obj["data"]["S3_URL"] = s3.POD_ENDPOINT
                obj["data"]["S3_BUCKET"] = s3.bucket_name(state)
            apply_object(admin, obj, "devcluster")
    b = s3.broker(state)
    apply_object(admin, {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "kubelab-s3-platform", "namespace": HUB_NAMESPACE},
        "stringData": {"AWS_ACCESS_KEY_ID": b.access_key_id, "AWS_SECRET_ACCESS_KEY": b.secret_access_key}},
        "devcluster")
    apply_object(admin, {"apiVersion": "v1", "kind": "ServiceAccount",
                         "metadata": {"name": "hub", "namespace": HUB_NAMESPACE}}, "devcluster")


def hub_kubeconfig(admin: Client, state: State) -> Path:
    """A kubeconfig with a token of ServiceAccount kubelab-system/hub (TokenRequest, 1 day)."""
    tr = admin.create(Client.path("v1", "serviceaccounts", HUB_NAMESPACE, "hub", "token"),
                      {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                       "spec": {"expirationSeconds": 86400}})
    path = state.component_kubeconfig("hub")
    write_kubeconfig(path, "https://127.0.0.1:6443", state.pki / "ca.crt", tr["status"]["token"],
                     "system:serviceaccount:kubelab-system:hub")
    return path


def wait_s3fs(admin: Client, timeout: float = 180) -> None:
    """Wait until the s3fs DaemonSet's current generation is rolled out and Ready on every node."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            ds = admin.get(Client.path("apps/v1", "daemonsets", HUB_NAMESPACE, "kubelab-s3fs"))
            st = ds.get("status", {})
            want = st.get("desiredNumberScheduled")
            if (want and st.get("observedGeneration") == ds["metadata"]["generation"]
                    and st.get("updatedNumberScheduled") == want and st.get("numberReady") == want):
                return
        except ApiError:
            pass
        time.sleep(1)
    raise HubError("the s3fs DaemonSet did not become ready; see `kubectl -n kubelab-system describe ds kubelab-s3fs`")


def up(state: State, spawner: str = "kubelab", config: dict | None = None) -> str:
    """Apply deploy/, start the hub (idempotent); return the hub URL.

    ``spawner="kubespawner"`` runs stock KubeSpawner (user namespaces on) instead,
    for side-by-side benchmarks. ``config`` is traitlets config merged last
    (``{"KubelabSpawner": {...}}``), for tests of settings devcluster does not use.
    """
    import sys

    admin = Client.from_kubeconfig(state.kubeconfig)
    apply_deploy(admin, state)
    wait_s3fs(admin)
    kubeconfig = hub_kubeconfig(admin, state)
    (state.root / "hub").mkdir(parents=True, exist_ok=True)
    b = s3.broker(state)
    env = {
        "KUBECONFIG": str(kubeconfig),
        "KUBELAB_DEVCLUSTER_DIR": str(state.root),
        "KUBELAB_PROXY_TOKEN": _secret(state.root / "hub" / "proxy_token"),
        "KUBELAB_TEST_TOKEN": test_token(state),
        "AWS_ENDPOINT_URL": s3.ENDPOINT,
        "KUBELAB_S3_POD_ENDPOINT": s3.POD_ENDPOINT,
        "KUBELAB_S3_BUCKET": b.bucket,
        "KUBELAB_S3_BROKER_ACCESS_KEY_ID": b.access_key_id,
        "KUBELAB_S3_BROKER_SECRET_ACCESS_KEY": b.secret_access_key,
        "POD_NAMESPACE": HUB_NAMESPACE,
        "KUBELAB_HUB_SPAWNER": spawner,
        "KUBELAB_HUB_EXTRA_CONFIG": json.dumps(config or {}),
        "PATH": f"{chp_bin().parent}:{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
        "PYTHONUNBUFFERED": "1",
    }
    if not procs.running_pid(state, "hub"):
        procs.kill_in_dir(state.root / "hub")  # a proxy or service left by a hub that was killed
    procs.start(state, "hub", [sys.executable, "-m", "jupyterhub", "-f", str(Path(__file__).parent / "jupyterhub_config.py")],
                env=env, cwd=state.root / "hub")
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{HUB_URL}/hub/api/", timeout=3).status_code == 200:
                return HUB_URL
        except requests.RequestException:
            pass
        if not procs.running_pid(state, "hub"):
            break
        time.sleep(0.5)
    raise HubError(f"JupyterHub did not come up; its log ends:\n{procs.tail(state, 'hub')}")


def down(state: State) -> None:
    """Stop the hub, then its proxy and managed services (they run in the hub's directory)."""
    procs.stop(state, "hub")
    procs.kill_in_dir(state.root / "hub")
    (state.root / "hub" / "proxy.pid").unlink(missing_ok=True)


__all__ = ["up", "down", "test_token", "HUB_URL"]
