"""Hub-side configuration helpers for jupyterhub_config.py (or z2jh ``hub.extraConfig``).

    from kubelab.hub.config import culler_service
    service, role = culler_service(c.KubelabSpawner.resource_groups)
    c.JupyterHub.services.append(service)
    c.JupyterHub.load_roles.append(role)

    # at the end of the config: the admin pages and trigger API
    from kubelab.hub.config import admin_service
    service, roles = admin_service(c)
    c.JupyterHub.services.append(service)
    c.JupyterHub.load_roles.extend(roles)
"""
from __future__ import annotations

import json
import os
import sys
from typing import Any, Iterable

from kubelab.core import resource_groups as rg

ADMIN_SERVICE = "kubelab-admin"
TRIGGER_SCOPE = "custom:kubelab-schedules:run"  # same name as kubelab.hub.admin.TRIGGER_SCOPE
CUSTOM_SCOPES = {TRIGGER_SCOPE: {
    "description": "Start runs of scheduled notebooks through kubelab-admin's trigger API "
                   "(filter with !user=<name> for one user's schedules)"}}
# The admin service reads the spawner's own settings (resource groups, quota,
# namespaces) from these config sections, and its own from KubelabAdmin.
CONFIG_SECTIONS = ("Spawner", "KubeSpawner", "KubelabSpawner", "KubelabAdmin")
# What it needs of the hub's environment (a managed service gets a clean one):
# the Kubernetes credentials and the S3 settings (storage use, reconcile).
PASS_ENV = ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT", "POD_NAMESPACE", "AWS_",
            "KUBELAB_S3_", "PYTHONUNBUFFERED")


def idle_timeouts(groups: Iterable[dict[str, Any]]) -> dict[str, int]:
    return {g.name: g.idle_timeout for g in rg.parse(groups) if g.idle_timeout}


def culler_service(groups: Iterable[dict[str, Any]], default_timeout: int = 3600,
                   interval: int = 60) -> tuple[dict, dict]:
    """A hub-managed idle-culler service with per-resource-group timeouts, and its role."""
    service = {
        "name": "kubelab-culler",
        "command": [sys.executable, "-m", "kubelab.hub.culler", "--timeouts", json.dumps(idle_timeouts(groups)),
                    "--default-timeout", str(default_timeout), "--interval", str(interval)],
    }
    role = {"name": "kubelab-culler", "services": ["kubelab-culler"],
            "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers", "admin:servers"]}
    return service, role


def _jsonable(section: Any) -> dict:
    """The JSON-serialisable options of a config section (callables are left out)."""
    out = {}
    for k, v in dict(section).items():
        try:
            json.dumps(v)
        except (TypeError, ValueError):
            continue
        out[k] = v
    return out


def admin_service(c: Any, url: str = "http://127.0.0.1:10101", name: str = ADMIN_SERVICE) -> tuple[dict, list[dict]]:
    """The hub-managed admin pages + trigger API service, and its roles.

    Call it at the end of the hub's config: it hands the service the spawner's
    settings (``c.KubelabSpawner``...) and ``c.KubelabAdmin``, defines the custom
    scope ``custom:kubelab-schedules:run`` (``c.JupyterHub.custom_scopes``) and
    gives every user (``c.JupyterHub.extra_user_scopes``) access to the service
    and that scope for their own schedules. The roles returned are the
    service's own (reading hub users) and the ``server`` role extended so a
    user's server token may call the capacity API.
    """
    config = {s: _jsonable(c[s]) for s in CONFIG_SECTIONS if s in c}
    env = {k: v for k, v in os.environ.items() if k.startswith(PASS_ENV)}
    env["KUBELAB_ADMIN_CONFIG"] = json.dumps(config)
    admin_scopes = list((config.get("KubelabAdmin") or {}).get("admin_scopes") or ["admin-ui"])
    service = {
        "name": name, "url": url, "display": True, "oauth_no_confirm": True,
        "command": [sys.executable, "-m", "kubelab.hub.admin"], "environment": env,
        # what the pages' login cookie may carry: the admin scope, for those who hold it
        "oauth_client_allowed_scopes": admin_scopes,
        "info": {"description": "kubelab admin pages and schedule trigger API"},
    }
    c.JupyterHub.custom_scopes = {**dict(c.JupyterHub.get("custom_scopes", {})), **CUSTOM_SCOPES}
    access = f"access:services!service={name}"
    extra = list(c.JupyterHub.get("extra_user_scopes", []))
    c.JupyterHub.extra_user_scopes = extra + [s for s in (access, f"{TRIGGER_SCOPE}!user") if s not in extra]
    roles = [
        {"name": name, "services": [name], "description": "kubelab-admin reads hub users and their servers",
         "scopes": ["list:users", "read:users", "read:servers"]},
        # KubelabSpawner's default server token: JupyterHub's `server` role plus the capacity API.
        {"name": "server", "scopes": ["users:activity!user", "access:servers!server", access]},
    ]
    return service, roles
