"""Label keys kubelab puts on Kubernetes objects (a contract: see README)."""
from __future__ import annotations

from .names import safe_slug

GROUP = "kubelab.io"
USER = f"{GROUP}/user"
COMPONENT = f"{GROUP}/component"
RESOURCE_GROUP = f"{GROUP}/resource-group"
USER_NAMESPACE = f"{GROUP}/user-namespace"
MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "kubelab"


def user_labels(username: str, component: str | None = None) -> dict[str, str]:
    """Labels naming the user (slugged: label values are DNS-label-like)."""
    labels = {USER: safe_slug(username), MANAGED_BY: MANAGER}
    if component:
        labels[COMPONENT] = component
    return labels
