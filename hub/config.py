"""Hub-side configuration helpers for jupyterhub_config.py (or z2jh ``hub.extraConfig``).

    from kubelab.hub.config import culler_service
    service, role = culler_service(c.KubelabSpawner.resource_groups)
    c.JupyterHub.services.append(service)
    c.JupyterHub.load_roles.append(role)
"""
from __future__ import annotations

import json
import sys
from typing import Any, Iterable

from kubelab.core import resource_groups as rg


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
