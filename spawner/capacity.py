"""Free capacity per resource group and a user's quota headroom, for the spawn form."""
from __future__ import annotations

from kubelab.core.resource_groups import ResourceGroup, parse_quantity
from kubelab.core.usage import pod_requests

from .k8s import Kube


def node_matches(node: dict, selector: dict[str, str]) -> bool:
    labels = node["metadata"].get("labels", {})
    return all(labels.get(k) == v for k, v in selector.items())


def free_on(nodes: list[dict], pods: list[dict], selector: dict[str, str], gpu_resource: str) -> dict:
    """Allocatable minus requested over the nodes matching ``selector`` (pure)."""
    names = {n["metadata"]["name"] for n in nodes if node_matches(n, selector)}
    alloc = {"cpu": 0.0, "memory": 0.0, "gpus": 0.0}
    for n in nodes:
        if n["metadata"]["name"] in names:
            a = n.get("status", {}).get("allocatable", {})
            alloc["cpu"] += parse_quantity(a.get("cpu", "0"))
            alloc["memory"] += parse_quantity(a.get("memory", "0"))
            alloc["gpus"] += parse_quantity(a.get(gpu_resource, "0"))
    used = {"cpu": 0.0, "memory": 0.0, "gpus": 0.0}
    for p in pods:
        if p["spec"].get("nodeName") in names and p.get("status", {}).get("phase") not in ("Succeeded", "Failed"):
            used["cpu"] += pod_requests(p, "cpu")
            used["memory"] += pod_requests(p, "memory")
            used["gpus"] += pod_requests(p, gpu_resource)
    return {"cpu": alloc["cpu"] - used["cpu"], "memory": alloc["memory"] - used["memory"],
            "gpus": int(alloc["gpus"] - used["gpus"]), "gpus_total": int(alloc["gpus"]), "nodes": len(names)}


async def free_by_group(kube: Kube, groups: list[ResourceGroup]) -> dict[str, dict]:
    nodes = await kube.list("v1", "Node")
    pods = await kube.list("v1", "Pod", fieldSelector="status.phase!=Succeeded,status.phase!=Failed")
    return {g.name: free_on(nodes, pods, g.node_selector, g.gpu_resource) for g in groups}


def headroom(quota: dict | None) -> dict[str, str]:
    """hard - used for each quota key (pure); empty when there is no quota yet."""
    if not quota:
        return {}
    hard = quota.get("status", {}).get("hard") or quota.get("spec", {}).get("hard", {})
    used = quota.get("status", {}).get("used", {})
    out = {}
    for k, v in hard.items():
        left = parse_quantity(v) - parse_quantity(used.get(k, "0"))
        out[k] = f"{left:g}" if not k.endswith("memory") and "storage" not in k else f"{left / 2**30:.1f}Gi"
    return out


async def quota_headroom(kube: Kube, namespace: str) -> dict[str, str]:
    return headroom(await kube.get("v1", "ResourceQuota", "kubelab-quota", namespace))
