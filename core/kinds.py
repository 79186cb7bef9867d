"""REST paths of the Kubernetes kinds kubelab creates (pure)."""
from __future__ import annotations

# kind -> (plural, namespaced)
_KINDS: dict[str, tuple[str, bool]] = {
    "Namespace": ("namespaces", False),
    "Node": ("nodes", False),
    "Pod": ("pods", True),
    "Service": ("services", True),
    "ServiceAccount": ("serviceaccounts", True),
    "Secret": ("secrets", True),
    "ConfigMap": ("configmaps", True),
    "PersistentVolumeClaim": ("persistentvolumeclaims", True),
    "ResourceQuota": ("resourcequotas", True),
    "LimitRange": ("limitranges", True),
    "Event": ("events", True),
    "EndpointSlice": ("endpointslices", True),
    "Role": ("roles", True),
    "RoleBinding": ("rolebindings", True),
    "ClusterRole": ("clusterroles", False),
    "ClusterRoleBinding": ("clusterrolebindings", False),
    "NetworkPolicy": ("networkpolicies", True),
    "StorageClass": ("storageclasses", False),
    "Job": ("jobs", True),
    "CronJob": ("cronjobs", True),
    "Deployment": ("deployments", True),
    "DaemonSet": ("daemonsets", True),
    "ValidatingAdmissionPolicy": ("validatingadmissionpolicies", False),
    "ValidatingAdmissionPolicyBinding": ("validatingadmissionpolicybindings", False),
    "CustomResourceDefinition": ("customresourcedefinitions", False),
    "PyTorchJob": ("pytorchjobs", True),
    "Dataset": ("datasets", True),
    "Model": ("models", True),
    "ModelVersion": ("modelversions", True),
    "InferenceService": ("inferenceservices", True),
}


def collection_path(api_version: str, kind: str, namespace: str | None = None) -> str:
    """``collection_path("v1", "Pod", "ns")`` -> ``/api/v1/namespaces/ns/pods``."""
    try:
        plural, namespaced = _KINDS[kind]
    except KeyError:
        raise ValueError(f"kubelab does not know the kind {kind!r}") from None
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    if namespaced:
        if not namespace:
            raise ValueError(f"{kind} is namespaced: give a namespace")
        base += f"/namespaces/{namespace}"
    return f"{base}/{plural}"


def object_path(obj: dict) -> str:
    """The REST path of one object dict (apiVersion, kind, metadata.name/namespace)."""
    meta = obj["metadata"]
    return f"{collection_path(obj['apiVersion'], obj['kind'], meta.get('namespace'))}/{meta['name']}"
