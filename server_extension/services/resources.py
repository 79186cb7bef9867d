"""Quota use, GPUs held and free GPUs per resource group, for the Resources panel and the job form."""
from __future__ import annotations

import os
from typing import Any

import requests
from traitlets import Float, Instance, Unicode
from traitlets.config import LoggingConfigurable

from kubelab.core import usage

from .workspace import Workspace


class ResourceService(LoggingConfigurable):
    """What this user's namespace uses against its quota, and where GPUs are free."""

    workspace = Instance(Workspace)

    capacity_url = Unicode(
        "",
        config=True,
        help="""
        The hub admin service's capacity API (free GPUs per resource group, no user names).
        Empty: free GPUs are not shown. The server calls it with its own hub API token
        (``JUPYTERHUB_API_TOKEN``).

        Example::

            c.ResourceService.capacity_url = "http://proxy-public/services/kubelab-admin/api/capacity"
        """,
    )
    capacity_timeout = Float(
        3.0,
        config=True,
        help="""
        Seconds to wait for the capacity API before showing the page without free GPUs.

        Example::

            c.ResourceService.capacity_timeout = 5
        """,
    )

    def free_gpus(self) -> dict[str, float] | None:
        """GPUs free per group from the hub, or None when it is not configured or not answering."""
        if not self.capacity_url:
            return None
        token = os.environ.get("JUPYTERHUB_API_TOKEN", "")
        try:
            r = requests.get(self.capacity_url, headers={"Authorization": f"token {token}"},
                             timeout=self.capacity_timeout)
            r.raise_for_status()
            return {g["name"]: float(g["gpus_free"]) for g in r.json().get("groups", [])
                    if g.get("gpus_free") is not None}
        except (requests.RequestException, ValueError, KeyError, TypeError) as e:
            self.log.warning("kubelab: capacity API %s: %s", self.capacity_url, e)
            return None

    def usage(self) -> dict[str, Any]:
        ws = self.workspace
        quotas = ws.call(ws.kube.items, "v1", "ResourceQuota", what="resource quotas")
        pods = ws.call(ws.kube.items, "v1", "Pod", what="pods")
        return usage.usage(ws.namespace, ws.settings.resource_groups, quotas, pods, self.free_gpus())
