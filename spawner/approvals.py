"""Spawn approvals for resource groups that require one.

A request is a ConfigMap in the hub's namespace (the hub admin pages decide
it); users cannot touch it, since user ServiceAccounts have no rights there.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from kubelab.core import labels as L
from kubelab.core import names

from .k8s import Kube

COMPONENT = "spawn-approval"


def request_name(username: str, group: str) -> str:
    return names.render("approval-{user}-{group}", user=username, group=group)


@dataclass(frozen=True)
class Decision:
    user: str
    group: str
    status: str  # pending | approved | denied
    reason: str = ""

    def message(self) -> str:
        if self.status == "denied":
            why = f": {self.reason}" if self.reason else ""
            return f"your request to use resource group {self.group!r} was denied{why}"
        return (f"resource group {self.group!r} needs an administrator's approval; "
                "your request is recorded and pending")


def manifest(namespace: str, username: str, group: str, status: str = "pending", reason: str = "",
             decided_by: str = "") -> dict:
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    data = {"user": username, "group": group, "status": status, "reason": reason, "decided_by": decided_by}
    data["requested_at" if status == "pending" else "decided_at"] = now
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": request_name(username, group), "namespace": namespace,
                         "labels": {**L.user_labels(username, COMPONENT), L.RESOURCE_GROUP: group}},
            "data": data}


async def ensure_request(kube: Kube, namespace: str, username: str, group: str) -> Decision:
    """The decision on (user, group); records a pending request if there is none."""
    cm = await kube.get("v1", "ConfigMap", request_name(username, group), namespace)
    if cm is None:
        await kube.apply(manifest(namespace, username, group))
        return Decision(username, group, "pending")
    data = cm.get("data") or {}
    return Decision(username, group, data.get("status", "pending"), data.get("reason", ""))


async def decide(kube: Kube, namespace: str, username: str, group: str, approve: bool, reason: str,
                 admin: str) -> Decision:
    """Approve or deny (used by the hub admin service and tests)."""
    status = "approved" if approve else "denied"
    await kube.apply(manifest(namespace, username, group, status, reason, admin))
    return Decision(username, group, status, reason)


async def forget(kube: Kube, namespace: str, username: str) -> int:
    """Delete the user's requests and decisions (the user was deleted), so a
    new user of the same name starts with none; returns how many were removed."""
    selector = f"{L.USER}={names.safe_slug(username)},{L.COMPONENT}={COMPONENT}"
    removed = 0
    for cm in await kube.list("v1", "ConfigMap", namespace, labelSelector=selector):
        if (cm.get("data") or {}).get("user") == username:  # slugs of two names can meet
            await kube.delete("v1", "ConfigMap", cm["metadata"]["name"], namespace)
            removed += 1
    return removed
