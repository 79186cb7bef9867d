"""What the admin pages show, from cluster-wide lists (pure functions).

The service lists each kind once across all namespaces (namespaces, quotas,
pods, cronjobs, jobs, deployments, events) and these functions join them by
namespace, so the overview of 1,000 users costs a handful of requests.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable

from kubelab.core import labels as L
from kubelab.core import workloads as W
from kubelab.core.models import SERVICE_LABEL
from kubelab.core.names import safe_slug
from kubelab.core.resource_groups import ResourceGroup, parse_quantity
from kubelab.core.usage import pod_requests
from kubelab.spawner.capacity import free_on, node_matches

SERVER_COMPONENT = "singleuser-server"  # KubeSpawner's label component=singleuser-server
WORKLOAD_KINDS = ("schedule", "run", "job", "service")


def _ns(obj: dict) -> str:
    return obj["metadata"].get("namespace", "")


def _by_namespace(objs: Iterable[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = defaultdict(list)
    for o in objs:
        out[_ns(o)].append(o)
    return out


def _fmt(resource: str, value: float) -> str:
    if "memory" in resource or "storage" in resource:
        return f"{value / 2**30:.1f}Gi"
    return f"{value:g}"


def quota_view(quota: dict | None) -> dict[str, dict[str, Any]]:
    """``{resource: {used, hard, fraction}}`` from a ResourceQuota's status (spec until counted)."""
    if not quota:
        return {}
    hard = quota.get("status", {}).get("hard") or quota.get("spec", {}).get("hard", {})
    used = quota.get("status", {}).get("used", {}) or {}
    out = {}
    for k in sorted(hard):
        try:
            h, u = parse_quantity(hard[k]), parse_quantity(used.get(k, "0"))
        except ValueError:
            continue
        out[k] = {"used": _fmt(k, u), "hard": _fmt(k, h), "fraction": (u / h) if h else (1.0 if u else 0.0)}
    return out


def namespace_user(ns: dict) -> str:
    return ns["metadata"].get("labels", {}).get(L.USER, "")


def _server_state(user: dict) -> tuple[int, str]:
    servers = user.get("servers") or {}
    running = sum(1 for s in servers.values() if s.get("ready"))
    pending = any(s.get("pending") for s in servers.values())
    default = servers.get("")
    state = "running" if default and default.get("ready") else "pending" if pending else \
        ("running" if running else "stopped")
    return running, state


def _job_active(job: dict) -> bool:
    st = job.get("status", {})
    done = any(c.get("type") in ("Complete", "Failed", "SuccessCriteriaMet") and c.get("status") == "True"
               for c in st.get("conditions", []) or [])
    return not done and not job.get("spec", {}).get("suspend")


def user_rows(hub_users: list[dict], namespaces: list[dict], quotas: list[dict], cronjobs: list[dict],
              jobs: list[dict], deployments: list[dict]) -> list[dict]:
    """One row per hub user and per user namespace without a hub user (left behind)."""
    ns_by_slug = {namespace_user(n): n for n in namespaces if namespace_user(n)}
    quota_by_ns = {}
    for q in quotas:
        if q["metadata"]["name"] == "kubelab-quota" or _ns(q) not in quota_by_ns:
            quota_by_ns[_ns(q)] = q
    cj_by_ns, jobs_by_ns, dep_by_ns = _by_namespace(cronjobs), _by_namespace(jobs), _by_namespace(deployments)

    def row(name: str, user: dict | None, ns: dict | None) -> dict:
        nsname = ns["metadata"]["name"] if ns else None
        running, state = _server_state(user or {})
        ns_jobs = jobs_by_ns.get(nsname, []) if nsname else []
        return {
            "user": name, "hub_user": user is not None, "admin": bool((user or {}).get("admin")),
            "groups": sorted((user or {}).get("groups") or []),
            "namespace": nsname,
            "namespace_phase": (ns or {}).get("status", {}).get("phase") if ns else None,
            "server": state,
            "quota": quota_view(quota_by_ns.get(nsname)) if nsname else {},
            "counts": {"servers": running, "jobs": len(ns_jobs),
                       "jobs_running": sum(1 for j in ns_jobs if _job_active(j)),
                       "schedules": len(cj_by_ns.get(nsname, [])) if nsname else 0,
                       "services": len(dep_by_ns.get(nsname, [])) if nsname else 0},
        }

    rows, seen = [], set()
    for u in hub_users:
        slug = safe_slug(u["name"])
        seen.add(slug)
        rows.append(row(u["name"], u, ns_by_slug.get(slug)))
    for slug, ns in ns_by_slug.items():
        if slug not in seen:
            rows.append(row(slug, None, ns))
    rows.sort(key=lambda r: r["user"])
    return rows


# -- resource groups --------------------------------------------------------------------------------
def _pod_user(pod: dict, ns_users: dict[str, str]) -> str:
    labels = pod["metadata"].get("labels", {})
    return labels.get(L.USER) or labels.get("hub.jupyter.org/username") or ns_users.get(_ns(pod), "")


def _pod_kind(pod: dict) -> str:
    labels = pod["metadata"].get("labels", {})
    if labels.get("component") == SERVER_COMPONENT:
        return "server"
    comp = labels.get(L.COMPONENT, "")
    return {"schedule-run": "run", "training-job": "job", "inference-service": "service"}.get(comp, comp or "pod")


def _live(pod: dict) -> bool:
    return pod.get("status", {}).get("phase") not in ("Succeeded", "Failed")


def _pod_wants_group(pod: dict, group: ResourceGroup) -> bool:
    labels = pod["metadata"].get("labels", {})
    if labels.get(L.RESOURCE_GROUP):
        return labels[L.RESOURCE_GROUP] == group.name
    sel = pod.get("spec", {}).get("nodeSelector") or {}
    return bool(group.node_selector) and all(sel.get(k) == v for k, v in group.node_selector.items())


def group_view(group: ResourceGroup, nodes: list[dict], pods: list[dict], ns_users: dict[str, str]) -> dict:
    """Nodes, capacity, GPU holders and pending pods (with the reason) of one resource group."""
    mine = [n for n in nodes if node_matches(n, group.node_selector)]
    names = {n["metadata"]["name"] for n in mine}
    live = [p for p in pods if _live(p)]
    free = free_on(nodes, live, group.node_selector, group.gpu_resource)
    node_rows = []
    for n in mine:
        a = n.get("status", {}).get("allocatable", {})
        on = [p for p in live if p.get("spec", {}).get("nodeName") == n["metadata"]["name"]]
        ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                    for c in n.get("status", {}).get("conditions", []) or [])
        node_rows.append({
            "name": n["metadata"]["name"], "ready": ready,
            "cpu_allocatable": parse_quantity(a.get("cpu", "0")),
            "cpu_allocated": sum(pod_requests(p, "cpu") for p in on),
            "memory_allocatable": parse_quantity(a.get("memory", "0")),
            "memory_allocated": sum(pod_requests(p, "memory") for p in on),
            "gpus_allocatable": int(parse_quantity(a.get(group.gpu_resource, "0"))),
            "gpus_allocated": int(sum(pod_requests(p, group.gpu_resource) for p in on)),
            "pods": len(on)})
    holders = []
    for p in live:
        if p.get("spec", {}).get("nodeName") in names:
            gpus = int(pod_requests(p, group.gpu_resource))
            if gpus:
                holders.append({"user": _pod_user(p, ns_users), "namespace": _ns(p), "pod": p["metadata"]["name"],
                                "kind": _pod_kind(p), "node": p["spec"]["nodeName"], "gpus": gpus,
                                "since": p.get("status", {}).get("startTime")})
    pending = []
    for p in live:
        if p.get("status", {}).get("phase") == "Pending" and _pod_wants_group(p, group):
            reason = W.pending_reason([p])
            if not reason and p.get("spec", {}).get("nodeName"):
                continue  # bound and starting: not waiting on capacity
            pending.append({"user": _pod_user(p, ns_users), "namespace": _ns(p), "pod": p["metadata"]["name"],
                            "kind": _pod_kind(p), "gpus": int(pod_requests(p, group.gpu_resource)),
                            "reason": reason or "waiting for the scheduler",
                            "since": p["metadata"].get("creationTimestamp")})
    holders.sort(key=lambda h: (h["node"], h["user"], h["pod"]))
    pending.sort(key=lambda h: h["since"] or "")
    return {"name": group.name, "display_name": group.display_name or group.name, "gpu_type": group.gpu_type,
            "gpu_resource": group.gpu_resource, "requires_approval": group.requires_approval,
            "allowed_groups": list(group.allowed_groups), "nodes": node_rows,
            "gpus_allocatable": free["gpus_total"], "gpus_allocated": free["gpus_total"] - free["gpus"],
            "gpus_free": free["gpus"], "cpu_free": round(free["cpu"], 3), "memory_free": int(free["memory"]),
            "gpu_holders": holders, "pending": pending}


def capacity_summary(views: list[dict]) -> dict:
    """Aggregated numbers only (no user names): what any user may see."""
    keys = ("name", "gpus_allocatable", "gpus_allocated", "gpus_free", "cpu_free", "memory_free")
    return {"groups": [{k: v[k] for k in keys} for v in views]}


# -- workloads ---------------------------------------------------------------------------------------
def _owner(obj: dict, ns_users: dict[str, str]) -> str:
    return obj["metadata"].get("labels", {}).get(L.USER) or ns_users.get(_ns(obj), "")


def _job_view_status(job: dict, pods: list[dict]) -> dict:
    st = W.job_status(job, pods)
    ann = job["metadata"].get("annotations", {})
    if ann.get(W.CANCELLED_ANNOTATION) and st["status"] not in ("Succeeded", "Failed"):
        by = ann.get(W.CANCELLED_BY_ANNOTATION)
        st.update(status="Cancelled", reason="Cancelled", message=f"cancelled by {by}" if by else "cancelled")
    return st


def workload_rows(cronjobs: list[dict], jobs: list[dict], deployments: list[dict], pods: list[dict],
                  ns_users: dict[str, str]) -> list[dict]:
    pods_by_job: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for p in pods:
        jn = p["metadata"].get("labels", {}).get(W.JOB_NAME_LABEL)
        if jn:
            pods_by_job[(_ns(p), jn)].append(p)
    rows = []
    for cj in cronjobs:
        view = W.schedule_view(cj, n_next=1)
        rows.append({"kind": "schedule", "user": _owner(cj, ns_users), "namespace": _ns(cj), "name": view["name"],
                     "status": "Suspended" if view["suspend"] else "Active",
                     "resource_group": cj["metadata"].get("labels", {}).get(L.RESOURCE_GROUP),
                     "created": view["created"],
                     "detail": f"{view['schedule']} ({view['timezone']}); last run {view['last_schedule'] or 'never'}",
                     "stoppable": False})
    for j in jobs:
        labels = j["metadata"].get("labels", {})
        kind = "run" if labels.get(W.SCHEDULE_LABEL) else "job"
        st = _job_view_status(j, pods_by_job.get((_ns(j), j["metadata"]["name"]), []))
        detail = st.get("message") or (f"schedule {labels[W.SCHEDULE_LABEL]}" if kind == "run" else "")
        rows.append({"kind": kind, "user": _owner(j, ns_users), "namespace": _ns(j), "name": j["metadata"]["name"],
                     "status": st["status"], "resource_group": labels.get(L.RESOURCE_GROUP),
                     "created": j["metadata"].get("creationTimestamp"), "detail": detail or "",
                     "stoppable": st["status"] in ("Pending", "Running")})
    for d in deployments:
        spec, st = d.get("spec", {}), d.get("status", {})
        want, ready = spec.get("replicas", 1), st.get("readyReplicas", 0) or 0
        status = "Stopped" if want == 0 else "Ready" if ready >= want else "Progressing"
        rows.append({"kind": "service", "user": _owner(d, ns_users), "namespace": _ns(d),
                     "name": d["metadata"].get("labels", {}).get(SERVICE_LABEL) or d["metadata"]["name"],
                     "status": status, "resource_group": d["metadata"].get("labels", {}).get(L.RESOURCE_GROUP),
                     "created": d["metadata"].get("creationTimestamp"), "detail": f"{ready}/{want} replicas ready",
                     "stoppable": False})
    rows.sort(key=lambda r: r["created"] or "", reverse=True)
    return rows


def filter_workloads(rows: list[dict], user: str = "", kind: str = "", status: str = "") -> list[dict]:
    out = rows
    if user:
        out = [r for r in out if r["user"] == user or r["user"] == safe_slug(user)]
    if kind:
        out = [r for r in out if r["kind"] == kind]
    if status:
        out = [r for r in out if r["status"].lower() == status.lower()]
    return out


# -- events and approvals --------------------------------------------------------------------------------
def _event_time(e: dict) -> str:
    return (e.get("lastTimestamp") or e.get("eventTime") or e.get("firstTimestamp")
            or e["metadata"].get("creationTimestamp") or "")


def event_rows(events: list[dict], ns_users: dict[str, str], limit: int) -> list[dict]:
    rows = []
    for e in events:
        obj = e.get("involvedObject") or e.get("regarding") or {}
        rows.append({"time": _event_time(e), "namespace": _ns(e), "user": ns_users.get(_ns(e), ""),
                     "object": f"{obj.get('kind', '?')}/{obj.get('name', '?')}", "reason": e.get("reason", ""),
                     "message": (e.get("message") or e.get("note") or "").strip(), "count": e.get("count") or 1})
    rows.sort(key=lambda r: r["time"], reverse=True)
    return rows[:limit]


def approval_rows(configmaps: list[dict]) -> list[dict]:
    rows = []
    for cm in configmaps:
        d = cm.get("data") or {}
        rows.append({"user": d.get("user", ""), "group": d.get("group", ""), "status": d.get("status", "pending"),
                     "reason": d.get("reason", ""), "requested_at": d.get("requested_at") or
                     cm["metadata"].get("creationTimestamp"), "decided_at": d.get("decided_at", ""),
                     "decided_by": d.get("decided_by", "")})
    order = {"pending": 0, "denied": 1, "approved": 2}
    rows.sort(key=lambda r: (order.get(r["status"], 3), r["requested_at"] or "", r["user"]))
    return rows
