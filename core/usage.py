"""Quota use and GPU holdings of one namespace, as users and admins see them (pure).

Used by the server extension's ``resources`` endpoint (the JupyterLab
Resources panel and the job form's group picker).
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

from .resource_groups import ResourceGroup, parse_quantity

ENDED = ("Succeeded", "Failed")


def quantity(value: Any) -> float | None:
    try:
        return parse_quantity(value)
    except (TypeError, ValueError):
        return None


def pod_requests(pod: Mapping[str, Any], resource: str) -> float:
    """What a pod's containers request of ``resource`` (a limit counts where no request is given)."""
    total = 0.0
    for c in pod.get("spec", {}).get("containers", []):
        res = c.get("resources") or {}
        value = (res.get("requests") or {}).get(resource) or (res.get("limits") or {}).get(resource)
        total += quantity(value) or 0.0
    return total


def active(pod: Mapping[str, Any]) -> bool:
    return pod.get("status", {}).get("phase") not in ENDED and not pod.get("metadata", {}).get("deletionTimestamp")


def quota_rows(quotas: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per resource over the namespace's ResourceQuotas (the tightest hard limit wins)."""
    rows: dict[str, dict[str, Any]] = {}
    for q in quotas:
        hard = q.get("status", {}).get("hard") or q.get("spec", {}).get("hard") or {}
        used = q.get("status", {}).get("used") or {}
        for res, h in hard.items():
            hv, uv = quantity(h), quantity(used.get(res, "0"))
            row = rows.get(res)
            if row is None or (hv is not None and (row["hard_value"] is None or hv < row["hard_value"])):
                rows[res] = {"resource": res, "used": str(used.get(res, "0")), "hard": str(h),
                             "used_value": uv, "hard_value": hv}
    return [rows[k] for k in sorted(rows)]


def gpu_resources(groups: Iterable[ResourceGroup]) -> list[str]:
    return sorted({g.gpu_resource for g in groups if g.has_gpus})


def usage(namespace: str, groups: Iterable[ResourceGroup], quotas: Iterable[Mapping[str, Any]],
          pods: Iterable[Mapping[str, Any]], free_gpus: Mapping[str, float] | None = None) -> dict[str, Any]:
    """Quota rows, GPUs held by running pods, and per group the GPU headroom left by the quota.

    ``free_gpus`` (group -> GPUs free on the group's nodes) comes from the hub's
    capacity API when it is reachable; a group without it shows ``None``.
    """
    groups = list(groups)
    rows = quota_rows(quotas)
    by_res = {r["resource"]: r for r in rows}
    live = [p for p in pods if active(p)]
    held = {res: sum(pod_requests(p, res) for p in live) for res in gpu_resources(groups)}
    out_groups = []
    for g in groups:
        headroom = None
        if g.has_gpus:
            row = by_res.get(f"requests.{g.gpu_resource}")
            if row and row["hard_value"] is not None:
                headroom = max(0.0, row["hard_value"] - (row["used_value"] or 0.0))
        out_groups.append({"name": g.name, "display_name": g.display_name or g.name,
                           "gpu_resource": g.gpu_resource if g.has_gpus else None, "max_gpus": g.max_gpus,
                           "gpu_quota_headroom": headroom,
                           "free_gpus": (free_gpus or {}).get(g.name) if g.has_gpus else None})
    return {"namespace": namespace, "quota": rows, "gpus_in_use": int(sum(held.values())),
            "gpus_by_resource": held, "groups": out_groups}
