"""Render zero-to-jupyterhub values the way the chart's hub pod loads them.

The chart (4.4.0) writes the merged values (its defaults, then the user's files)
to a Secret mounted at /usr/local/etc/jupyterhub/secret/values.yaml, turns
``hub.extraEnv`` into the hub container's environment, and starts
``jupyterhub --config /usr/local/etc/jupyterhub/jupyterhub_config.py``.
:func:`render` does the same in a temporary directory with tests/deploy/z2jh/
(the chart's config file and z2jh module, see there) and JupyterHub's own
config-file loader, and returns the configured JupyterHub application.
"""
from __future__ import annotations

import copy
import shutil
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
VALUES = REPO / "deploy" / "z2jh" / "values.yaml"
CHART = {"Name": "jupyterhub", "Version": "4.4.0"}

# The chart's defaults (jupyterhub/values.yaml of chart 4.4.0) for the keys its
# jupyterhub_config.py reads and kubelab's values change or rely on.
CHART_DEFAULTS: dict[str, Any] = {
    "fullnameOverride": "",
    "hub": {"db": {"type": "sqlite-pvc"}, "config": {"JupyterHub": {"admin_access": True,
                                                                    "authenticator_class": "dummy"}},
            "extraConfig": {}, "extraEnv": {}, "services": {}, "loadRoles": {},
            "networkPolicy": {"enabled": True, "interNamespaceAccessLabels": "ignore"},
            "serviceAccount": {"create": True, "name": None}},
    "rbac": {"create": True},
    "singleuser": {
        "image": {"name": "quay.io/jupyterhub/k8s-singleuser-sample", "tag": "4.4.0"},
        "networkTools": {"image": {"name": "quay.io/jupyterhub/k8s-network-tools", "tag": "4.4.0"}},
        "cloudMetadata": {"blockWithIptables": True, "ip": "169.254.169.254"},
        "events": True, "extraLabels": {"hub.jupyter.org/network-access-hub": "true"},
        "allowPrivilegeEscalation": False, "uid": 1000, "fsGid": 100,
        "storage": {"type": "dynamic", "extraVolumes": [], "extraVolumeMounts": [], "capacity": "10Gi",
                    "homeMountPath": "/home/jovyan",
                    "dynamic": {"pvcNameTemplate": "claim-{username}{servername}",
                                "volumeNameTemplate": "volume-{username}{servername}"}},
        "startTimeout": 300, "memory": {"limit": None, "guarantee": "1G"},
        "cpu": {"limit": None, "guarantee": None}, "cmd": "jupyterhub-singleuser", "defaultUrl": None,
    },
    "scheduling": {"userScheduler": {"enabled": True}, "podPriority": {"enabled": False},
                   "userPlaceholder": {"enabled": True},
                   "userPods": {"tolerations": [
                       {"effect": "NoSchedule", "key": "hub.jupyter.org/dedicated", "operator": "Equal",
                        "value": "user"},
                       {"effect": "NoSchedule", "key": "hub.jupyter.org_dedicated", "operator": "Equal",
                        "value": "user"}],
                       "nodeAffinity": {"matchNodePurpose": "prefer"}}},
    "cull": {"enabled": True, "users": False, "adminUsers": True, "timeout": 3600, "every": 600},
}


def helm_merge(base: Any, override: Any) -> Any:
    """Helm's values merge: maps merge key by key, anything else replaces, null deletes."""
    if isinstance(base, dict) and isinstance(override, dict):
        out = copy.deepcopy(base)
        for k, v in override.items():
            if v is None:
                out.pop(k, None)
            else:
                out[k] = helm_merge(out.get(k), v)
        return out
    return copy.deepcopy(override)


def merged_values(*files: Path) -> dict[str, Any]:
    values = CHART_DEFAULTS
    for f in files:
        values = helm_merge(values, yaml.safe_load(Path(f).read_text()) or {})
    return {**values, "Chart": dict(CHART), "Release": {"Name": "kubelab", "Namespace": "kubelab-system"}}


def container_env(values: dict[str, Any], secrets: dict[str, dict[str, str]]) -> dict[str, str]:
    """``hub.extraEnv`` as the kubelet resolves it (secretKeyRef from ``secrets``)."""
    env = {}
    for name, spec in (values["hub"].get("extraEnv") or {}).items():
        if isinstance(spec, str):
            env[name] = spec
            continue
        ref = spec["valueFrom"]["secretKeyRef"]
        value = secrets.get(ref["name"], {}).get(ref["key"])
        if value is None:
            if ref.get("optional"):
                continue
            raise LookupError(f"CreateContainerConfigError: secret {ref['name']!r} has no key {ref['key']!r}")
        env[name] = value
    return env


def render(tmp: Path, secrets: dict[str, dict[str, str]], *files: Path, monkeypatch=None):
    """The JupyterHub app as the hub pod configures it; env is set with ``monkeypatch``."""
    from jupyterhub.app import JupyterHub

    files = files or (VALUES,)
    values = merged_values(*files)
    etc = tmp / "etc-jupyterhub"
    (etc / "secret").mkdir(parents=True, exist_ok=True)
    (etc / "secret" / "values.yaml").write_text(yaml.safe_dump(values))
    (etc / "secret" / "hub.config.JupyterHub.cookie_secret").write_text("00" * 32)
    (etc / "secret" / "hub.config.CryptKeeper.keys").write_text("11" * 32)
    for name in ("jupyterhub_config.py", "z2jh.py"):
        shutil.copy(HERE / "z2jh" / name, etc / name)
    env = {"Z2JH_ETC": str(etc), "POD_NAMESPACE": "kubelab-system", **container_env(values, secrets)}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    sys.modules.pop("z2jh", None)  # a fresh module (its values are cached per process)
    app = JupyterHub()
    app.load_config_file(str(etc / "jupyterhub_config.py"))
    return app, values
