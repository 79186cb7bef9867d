"""deploy/networkpolicy/: the shipped per-user template cannot drift from the
spawner's builder, and the kubelab-system default-deny (applied to devcluster
by devcluster/hub.py like every manifest in deploy/) really blocks user pods."""
from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
import yaml

from devcluster.hub import MANIFESTS
from kubelab.core import manifests
from tests.devcluster.test_netpol import Net, http_get, pod_manifest
from tests.waiting import eventually

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
VALUES = yaml.safe_load((DEPLOY / "z2jh" / "values.yaml").read_text())
HUB_NS = "kubelab-system"


def test_user_namespace_template_is_the_builders_output():
    spawner = VALUES["hub"]["config"]["KubelabSpawner"]
    shipped = yaml.safe_load((DEPLOY / "networkpolicy" / "user-namespace.example.yaml").read_text())
    built = manifests.network_policy("kubelab-alice", "alice", spawner["hub_namespace"], spawner["hub_pod_labels"])
    assert shipped == built


def test_every_manifest_in_deploy_is_applied_by_devcluster():
    """What ships is what the end-to-end tests run on: devcluster applies all of
    deploy/ except the Helm values and the documented per-user example."""
    shipped = {str(p.relative_to(DEPLOY)) for p in DEPLOY.rglob("*.yaml")}
    not_applied = {"z2jh/values.yaml", "networkpolicy/user-namespace.example.yaml"}
    assert shipped - not_applied == set(MANIFESTS)
    assert MANIFESTS.index("namespace.yaml") < MANIFESTS.index("networkpolicy/kubelab-system.yaml")
    assert MANIFESTS.index("crds/kubelab.io.yaml") == 1  # CRDs before anything that might use them


@pytest.fixture
def probe_pods(hub, kubectl):
    """A web pod in kubelab-system, and a client plus a neighbour web pod in a
    scratch namespace; all removed afterwards."""
    suffix = uuid.uuid4().hex[:5]
    target, ns = f"deploy-np-{suffix}", f"deploy-np-{suffix}"
    kubectl("create", "namespace", ns)
    pods = [(HUB_NS, target, "deploy-np-target"), (ns, "client", "client"), (ns, "web", "web")]
    for pns, name, app in pods:
        eventually(lambda: kubectl("-n", pns, "apply", "-f", "-", input=pod_manifest(name, app), check=False)
                   .strip().endswith(("created", "unchanged", "configured")), 60, 1, what=f"pod {pns}/{name} created")
    net = Net(kubectl)
    for pns, name, _ in pods:
        eventually(lambda: net.ready_ip(pns, name), 120, 1, what=f"{pns}/{name} ready")
    yield net, (HUB_NS, target), ns
    kubectl("-n", HUB_NS, "delete", "pod", target, "--wait=false", check=False)
    kubectl("delete", "namespace", ns, "--wait=false", check=False)


def test_kubelab_system_refuses_connections_from_other_namespaces(kubectl, probe_pods):
    net, target, ns = probe_pods
    policy = kubectl.json("-n", HUB_NS, "get", "networkpolicy", "kubelab-default-deny-ingress")
    assert policy["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    target_ip, web_ip = net.ips[target], net.ips[(ns, "web")]
    # The client works: it reaches its neighbour...
    assert net.probe((ns, "client"), f"{web_ip}:8080") == "ok pod=web"
    # ... but not a pod in kubelab-system (dropped: the connection times out).
    out = net.probe((ns, "client"), f"{target_ip}:8080")
    assert out.startswith("fail ") and "timed out" in out, out
    # The node still reaches it (kubelet probes keep it Ready).
    assert http_get(f"http://{target_ip}:8080/") == f"pod={target[1]}"
    assert net.ready_ip(*target) == target_ip
    # The s3fs DaemonSet, which holds the platform keys, stays Ready under the policy.
    ds = kubectl.json("-n", HUB_NS, "get", "daemonset", "kubelab-s3fs")
    assert ds["status"]["numberReady"] == ds["status"]["desiredNumberScheduled"] >= 1
    assert json.dumps(policy["metadata"]["labels"]) == json.dumps({"app.kubernetes.io/part-of": "kubelab"})
