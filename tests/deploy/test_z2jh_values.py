"""deploy/z2jh/values.yaml, rendered as the zero-to-jupyterhub hub loads it.

The chart itself is not reachable here (no registry serves it), so
tests/deploy/z2jh_render.py does what its hub pod does: merged values, the
chart's jupyterhub_config.py (then hub.config, then hub.extraConfig by key)
through JupyterHub's own config loader. These tests then check what a
platform engineer gets: KubelabSpawner with the resource groups, quota, S3
broker, images and services the values promise.
"""
from __future__ import annotations

import asyncio
import json
import sys
import types
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import yaml
from tornado import web

from kubelab.core import resource_groups as rg

from .z2jh_render import REPO, VALUES, render

SECRETS = {"kubelab-s3-broker": {
    "sts-endpoint": "https://sts.example.org", "s3-endpoint": "https://s3.example.org", "bucket": "kubelab-prod",
    "access-key-id": "BROKERKEY", "secret-access-key": "brokersecret"}}
VERSION = "0.1.0"

# What the shipped values promise: these groups, in this order, with these rules.
EXPECTED_GROUPS = [
    rg.ResourceGroup(
        name="cpu", display_name="CPU", description="General-purpose CPU server",
        node_selector={"kubelab.io/resource-group": "cpu"},
        sizes=(rg.Size("small", "1", "4Gi", "Small (1 CPU, 4 GiB)"), rg.Size("medium", "4", "16Gi", "Medium (4 CPU, 16 GiB)")),
        idle_timeout=8 * 3600),
    rg.ResourceGroup(
        name="gpu-a100", display_name="NVIDIA A100", description="A100 GPUs for training (group ml-team)",
        node_selector={"kubelab.io/resource-group": "gpu-a100"},
        tolerations=({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},),
        gpu_resource="nvidia.com/gpu", gpu_type="NVIDIA-A100-SXM4-40GB", max_gpus=4, allowed_groups=("ml-team",),
        sizes=(rg.Size("standard", "8", "64Gi", "8 CPU, 64 GiB"),), idle_timeout=1800),
    rg.ResourceGroup(
        name="gpu-a100-approval", display_name="NVIDIA A100 (on approval)",
        description="One A100 for anyone, after an administrator approves",
        node_selector={"kubelab.io/resource-group": "gpu-a100"},
        tolerations=({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},),
        max_gpus=1, requires_approval=True, sizes=(rg.Size("standard", "4", "32Gi", "4 CPU, 32 GiB"),),
        idle_timeout=1800),
]

KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: unused, cluster: {server: "https://127.0.0.1:9"}}]
users: [{name: unused, user: {token: unused}}]
contexts: [{name: unused, context: {cluster: unused, user: unused}}]
current-context: unused
"""


@pytest.fixture
def hub(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))  # the chart's config prepends its directory
    app, values = render(tmp_path, SECRETS, monkeypatch=monkeypatch)
    return types.SimpleNamespace(app=app, config=app.config, values=values)


@pytest.fixture
def spawner_for(hub, tmp_path, monkeypatch):
    """A KubelabSpawner built from the rendered config (no cluster is contacted)."""
    from kubelab.spawner import KubelabSpawner

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    import kubernetes_asyncio.config.kube_config as kc  # read KUBECONFIG when it was imported

    monkeypatch.setattr(kc, "KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig))

    def make(name: str, groups: tuple[str, ...] = ()):
        user = types.SimpleNamespace(name=name, id=1, url=f"/user/{name}/", escaped_name=name, server=None,
                                     groups=[types.SimpleNamespace(name=g) for g in groups])
        return KubelabSpawner(_mock=True, config=hub.config, user=user)
    return make


def test_the_hub_loads_kubelab_spawner_through_its_entry_point(hub):
    (ep,) = [e for e in entry_points(group="jupyterhub.spawners") if e.name == "kubelab"]
    assert hub.config.JupyterHub.spawner_class == "kubelab"
    assert hub.app.spawner_class is ep.load()
    assert hub.app.spawner_class.__name__ == "KubelabSpawner"


def test_resource_groups_parse_and_are_the_documented_ones(hub):
    groups = rg.parse(hub.config.KubelabSpawner.resource_groups)
    assert groups == EXPECTED_GROUPS
    ml = [g.name for g in groups if g.allows(["ml-team"])]
    others = [g.name for g in groups if g.allows(["students"])]
    assert ml == ["cpu", "gpu-a100", "gpu-a100-approval"] and others == ["cpu", "gpu-a100-approval"]


def test_spawner_from_the_values_builds_a_gpu_pod_for_an_ml_team_member(spawner_for):
    async def build():
        sp = spawner_for("alice", ("ml-team",))
        sp.user_options = {"resource_group": "gpu-a100", "gpus": "2"}
        await sp.load_user_options()
        return sp, await sp.get_pod_manifest()
    sp, p = asyncio.run(build())
    assert [g.name for g in sp.groups] == [g.name for g in EXPECTED_GROUPS]
    assert sp.namespace == "kubelab-alice" and sp.hub_namespace == "kubelab-system"
    assert sp.image == f"kubelab/singleuser:{VERSION}" and sp.cmd == ["jupyterhub-singleuser"]
    assert sp.default_url == "/lab" and sp.uid == 1000 and sp.gid == 100
    # The S3 broker settings came from the Secret through hub.extraEnv.
    assert (sp.s3_sts_endpoint_url, sp.s3_endpoint_url, sp.s3_bucket) == (
        "https://sts.example.org", "https://s3.example.org", "kubelab-prod")
    assert (sp.s3_broker_access_key_id, sp.s3_broker_secret_access_key) == ("BROKERKEY", "brokersecret")
    assert sp.merged_quota()["requests.nvidia.com/gpu"] == "4"
    main = p.spec.containers[0]
    assert p.spec.node_selector == {"kubelab.io/resource-group": "gpu-a100"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in p.spec.tolerations
    assert main.resources["limits"]["nvidia.com/gpu"] == "2" and main.resources["requests"]["memory"] == "64Gi"
    assert main.image == f"kubelab/singleuser:{VERSION}"
    assert {"name": "kubelab-s3", "hostPath": {"path": "/var/lib/kubelab/s3", "type": "Directory"}} in p.spec.volumes
    # No PVC (the home is on S3) and no privileged init container, which the
    # admission policy would refuse in user namespaces.
    assert not any("persistentVolumeClaim" in (v if isinstance(v, dict) else v.to_dict()) for v in p.spec.volumes)
    for c in p.spec.init_containers or []:
        sc = c.get("securityContext") if isinstance(c, dict) else (c.security_context and c.security_context.to_dict())
        assert not (sc or {}).get("privileged"), c
    assert p.metadata.labels["hub.jupyter.org/network-access-hub"] == "true"


def test_spawner_from_the_values_refuses_a_gpu_group_outside_ml_team(spawner_for):
    async def load():
        sp = spawner_for("bob", ("students",))
        assert sp.merged_quota()["requests.nvidia.com/gpu"] == "1"
        sp.user_options = {"resource_group": "gpu-a100", "gpus": "1"}
        with pytest.raises(web.HTTPError) as e:
            await sp.load_user_options()
        return e.value
    err = asyncio.run(load())
    assert err.status_code == 403 and "gpu-a100" in err.log_message


def test_culler_and_admin_services_are_registered(hub):
    import kubelab.hub.config as hubconfig

    services = {s["name"]: s for s in hub.config.JupyterHub.services}
    roles = {r["name"]: r for r in hub.config.JupyterHub.load_roles}
    # The chart's culler is off; kubelab's culls per resource group.
    assert "jupyterhub-idle-culler" not in services
    cmd = services["kubelab-culler"]["command"]
    assert cmd[1:3] == ["-m", "kubelab.hub.culler"]
    assert json.loads(cmd[cmd.index("--timeouts") + 1]) == {"cpu": 28800, "gpu-a100": 1800, "gpu-a100-approval": 1800}
    assert "delete:servers" in roles["kubelab-culler"]["scopes"]
    if hasattr(hubconfig, "admin_service"):
        admin = services[hubconfig.ADMIN_SERVICE]
        assert admin["command"][1:] == ["-m", "kubelab.hub.admin"]
        # It was handed the spawner's final settings (the groups above).
        handed = json.loads(admin["environment"]["KUBELAB_ADMIN_CONFIG"])
        assert rg.parse(handed["KubelabSpawner"]["resource_groups"]) == EXPECTED_GROUPS
        assert hubconfig.ADMIN_SERVICE in roles and "server" in roles
        # The proxy pod reaches it through the hub's Service, on a port the
        # Service exposes and the hub's NetworkPolicy admits from the proxy.
        assert admin["url"] == "http://hub:10101"
        assert {"name": "kubelab-admin", "port": 10101, "targetPort": 10101, "protocol": "TCP"} in \
            hub.values["hub"]["service"]["extraPorts"]
        assert {"from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/component": "proxy"}}}],
                "ports": [{"port": 10101, "protocol": "TCP"}]} in hub.values["hub"]["networkPolicy"]["ingress"]
    else:  # kubelab before the admin service: the snippet adds nothing
        assert set(services) == {"kubelab-culler"}

def test_values_wire_the_hub_image_rbac_and_network_access():
    values = yaml.safe_load(VALUES.read_text())
    assert values["hub"]["image"] == {"name": "kubelab/hub", "tag": VERSION}
    # The ServiceAccount deploy/rbac/hub-clusterrole.yaml binds.
    binding = [d for d in yaml.safe_load_all((REPO / "deploy/rbac/hub-clusterrole.yaml").read_text())
               if d and d["kind"] == "ClusterRoleBinding"][0]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": values["hub"]["serviceAccount"]["name"],
                                    "namespace": values["hub"]["config"]["KubelabSpawner"]["hub_namespace"]}]
    assert values["rbac"]["create"] is True and values["fullnameOverride"] == ""
    assert values["hub"]["networkPolicy"]["interNamespaceAccessLabels"] == "accept"
    # Broker credentials only by reference to a Secret, never inline.
    for name, spec in values["hub"]["extraEnv"].items():
        assert spec["valueFrom"]["secretKeyRef"]["name"] == "kubelab-s3-broker", name
    s3fs = yaml.safe_load_all((REPO / "deploy/s3fs/daemonset.yaml").read_text())
    cm = [d for d in s3fs if d and d["kind"] == "ConfigMap"][0]
    assert cm["data"]["MOUNT_PATH"] == values["hub"]["config"]["KubelabSpawner"]["s3_mount_host_path"]


def test_a_missing_broker_secret_key_stops_the_hub_like_kubernetes_does(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    broken = {"kubelab-s3-broker": {k: v for k, v in SECRETS["kubelab-s3-broker"].items() if k != "bucket"}}
    with pytest.raises(LookupError, match="CreateContainerConfigError.*'bucket'"):
        render(tmp_path, broken, monkeypatch=monkeypatch)


def test_a_site_values_file_overrides_groups_and_images(tmp_path, monkeypatch):
    """What README tells platform engineers to do: a second -f file, merged like Helm does."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    site = tmp_path / "my-values.yaml"
    site.write_text(yaml.safe_dump({
        "singleuser": {"image": {"name": "registry.example.org/kubelab/singleuser", "tag": "0.1.0-torch"}},
        "hub": {"config": {"KubelabSpawner": {"resource_groups": [
            {"name": "t4", "node_selector": {"kubelab.io/resource-group": "t4"}, "max_gpus": 1,
             "sizes": [{"name": "std", "cpu": "4", "memory": "16Gi"}]}]}}}}))
    app, _ = render(tmp_path, SECRETS, VALUES, site, monkeypatch=monkeypatch)
    assert [g.name for g in rg.parse(app.config.KubelabSpawner.resource_groups)] == ["t4"]
    assert app.config.KubeSpawner.image == "registry.example.org/kubelab/singleuser:0.1.0-torch"
    services = {s["name"]: s for s in app.config.JupyterHub.services}
    cmd = services["kubelab-culler"]["command"]
    assert json.loads(cmd[cmd.index("--timeouts") + 1]) == {}
    assert app.config.KubelabSpawner.quota["requests.cpu"] == "8"  # kept from the shipped values


def test_pyproject_version_is_the_images_tag():
    import tomllib

    assert tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"] == VERSION
    assert Path(REPO / "deploy/s3fs/daemonset.yaml").read_text().count(f"kubelab/s3fs:{VERSION}") == 1
