"""Pure builders for the Kubernetes objects of a user's namespace.

Each returns a plain dict ready for server-side apply. The hub side (spawner)
applies them with the hub's ServiceAccount; nothing here talks to a cluster.
"""
from __future__ import annotations

from typing import Any, Iterable

from . import labels as L
from .resource_groups import ResourceGroup

USER_SERVICE_ACCOUNT = "kubelab-user"
USER_ROLE = "kubelab-user"


def _meta(name: str, namespace: str | None, username: str, component: str,
          extra_labels: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {**L.user_labels(username, component), **(extra_labels or {})}}
    if namespace:
        meta["namespace"] = namespace
    return meta


def namespace(name: str, username: str, extra_labels: dict[str, str] | None = None,
              annotations: dict[str, str] | None = None) -> dict[str, Any]:
    meta = _meta(name, None, username, "user-namespace", {L.USER_NAMESPACE: "true", **(extra_labels or {})})
    if annotations:
        meta["annotations"] = dict(annotations)
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}


def resource_quota(ns: str, username: str, hard: dict[str, str], groups: Iterable[ResourceGroup] = ()) -> dict[str, Any]:
    """The namespace's ResourceQuota.

    ``hard`` is the merged quota (cpu, memory, pods, counts, storage...). GPU
    limits per resource group are expressed on the extended resource, e.g.
    ``requests.nvidia.com/gpu``; keys in ``hard`` win over the groups' defaults.
    """
    spec_hard = {}
    for g in groups:
        if g.has_gpus:
            spec_hard.setdefault(f"requests.{g.gpu_resource}", str(g.max_gpus))
    spec_hard.update({k: str(v) for k, v in hard.items()})
    return {"apiVersion": "v1", "kind": "ResourceQuota",
            "metadata": _meta("kubelab-quota", ns, username, "quota"), "spec": {"hard": spec_hard}}


def limit_range(ns: str, username: str, default_limit: dict[str, str], default_request: dict[str, str],
                max_limit: dict[str, str] | None = None) -> dict[str, Any]:
    """Defaults so pods created without requests (init containers, jobs) are admitted under the quota."""
    item: dict[str, Any] = {"type": "Container", "default": dict(default_limit), "defaultRequest": dict(default_request)}
    if max_limit:
        item["max"] = dict(max_limit)
    return {"apiVersion": "v1", "kind": "LimitRange",
            "metadata": _meta("kubelab-limits", ns, username, "limits"), "spec": {"limits": [item]}}


def service_account(ns: str, username: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(USER_SERVICE_ACCOUNT, ns, username, "rbac")}


# What the user's ServiceAccount may do, in its own namespace only.
USER_RULES: list[dict[str, Any]] = [
    {"apiGroups": [""], "resources": ["pods", "pods/log", "services", "configmaps", "secrets",
                                      "persistentvolumeclaims", "events"],
     "verbs": ["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"]},
    {"apiGroups": [""], "resources": ["resourcequotas", "limitranges"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"],
     "verbs": ["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"]},
    {"apiGroups": ["apps"], "resources": ["deployments", "replicasets"],
     "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
    {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [L.GROUP], "resources": ["*"],
     "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
    # Distributed training where the cluster runs Kubeflow's training operator,
    # and reading Kueue queues where Kueue is installed (no effect otherwise).
    {"apiGroups": ["kubeflow.org"], "resources": ["pytorchjobs"],
     "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
    {"apiGroups": ["kueue.x-k8s.io"], "resources": ["localqueues"], "verbs": ["get", "list", "watch"]},
    # Model serving through KServe where it is installed.
    {"apiGroups": ["serving.kserve.io"], "resources": ["inferenceservices"],
     "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
]


def role(ns: str, username: str, extra_rules: Iterable[dict[str, Any]] = ()) -> dict[str, Any]:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": _meta(USER_ROLE, ns, username, "rbac"), "rules": USER_RULES + list(extra_rules)}


def role_binding(ns: str, username: str) -> dict[str, Any]:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": _meta(USER_ROLE, ns, username, "rbac"),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": USER_ROLE},
            "subjects": [{"kind": "ServiceAccount", "name": USER_SERVICE_ACCOUNT, "namespace": ns}]}


# Cloud instance-metadata endpoints (AWS/GCP/Azure IPv4, AWS IPv6): they hand out the
# node's own cloud credentials, which must never reach a user's pod.
METADATA_CIDRS = ("169.254.169.254/32", "fd00:ec2::254/128")


def network_policy(ns: str, username: str, hub_namespace: str,
                   hub_pod_labels: dict[str, str] | None = None,
                   egress_deny: tuple[str, ...] | list[str] = METADATA_CIDRS) -> dict[str, Any]:
    """Ingress only from inside the namespace and from the hub/proxy; nothing from other users.

    Egress is open (pods, DNS, S3, package mirrors) except to ``egress_deny``
    (the metadata endpoints by default); an empty ``egress_deny`` leaves egress
    unrestricted."""
    hub_peer: dict[str, Any] = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": hub_namespace}}}
    if hub_pod_labels:
        hub_peer["podSelector"] = {"matchLabels": dict(hub_pod_labels)}
    spec: dict[str, Any] = {"podSelector": {}, "policyTypes": ["Ingress"],
                            "ingress": [{"from": [{"podSelector": {}}, hub_peer]}]}
    if egress_deny:
        v4 = [c for c in egress_deny if ":" not in c]
        v6 = [c for c in egress_deny if ":" in c]
        spec["policyTypes"] = ["Ingress", "Egress"]
        spec["egress"] = [{"to": [
            {"namespaceSelector": {}},  # every pod in the cluster (DNS, services); ipBlock need not match pod IPs
            {"ipBlock": {"cidr": "0.0.0.0/0", **({"except": v4} if v4 else {})}},
            {"ipBlock": {"cidr": "::/0", **({"except": v6} if v6 else {})}},
        ]}]
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": _meta("kubelab-isolation", ns, username, "network"), "spec": spec}


def s3_credentials_secret(ns: str, username: str, creds: dict[str, str], endpoint: str, bucket: str) -> dict[str, Any]:
    """The user's short-lived, prefix-scoped S3 credentials (never the platform's keys).

    One key per variable, plus ``credentials``: the same keys as an AWS shared
    credentials file, which the server points ``AWS_SHARED_CREDENTIALS_FILE``
    at, so any boto3 client a user creates picks up the renewed keys."""
    ini = (f"[default]\naws_access_key_id = {creds['AccessKeyId']}\n"
           f"aws_secret_access_key = {creds['SecretAccessKey']}\naws_session_token = {creds['SessionToken']}\n")
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": _meta("kubelab-s3", ns, username, "s3-credentials"),
            "stringData": {"AWS_ACCESS_KEY_ID": creds["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": creds["SecretAccessKey"],
                           "AWS_SESSION_TOKEN": creds["SessionToken"], "AWS_ENDPOINT_URL": endpoint,
                           "KUBELAB_S3_BUCKET": bucket, "KUBELAB_S3_EXPIRATION": creds.get("Expiration", ""),
                           "credentials": ini}}
