"""Reading the objects a pod refers to, with the node's own identity."""
from __future__ import annotations

from typing import Any

from ..kube import ApiError, Client


class ApiObjects:
    """ConfigMaps, secrets, claims and volumes as the node may see them (None when absent).

    The Node authorizer lets a node read only what its pods reference.
    """

    def __init__(self, client: Client):
        self.client = client

    def _get(self, resource: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        try:
            return self.client.get(self.client.path("v1", resource, namespace, name))
        except ApiError as e:
            if e.status == 404:
                return None
            raise

    def configmap(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get("configmaps", namespace, name)

    def secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get("secrets", namespace, name)

    def claim(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get("persistentvolumeclaims", namespace, name)

    def volume(self, name: str) -> dict[str, Any] | None:
        return self._get("persistentvolumes", None, name)
