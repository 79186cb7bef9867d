"""The hub side's one Kubernetes client layer: server-side apply, get, delete.

Built on kubernetes_asyncio's ApiClient (the one KubeSpawner configures), so
the spawner uses the same credentials and connection pool as KubeSpawner.
"""
from __future__ import annotations

from typing import Any

from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.rest import ApiException

from kubelab.core import kinds

FIELD_MANAGER = "kubelab"
_OBJ = {200: "object", 201: "object", 202: "object"}


class Kube:
    def __init__(self, api_client: ApiClient, timeout: float = 30.0):
        self.api_client = api_client
        self.timeout = timeout

    async def _call(self, path: str, method: str, body: Any = None, query: list | None = None,
                    content_type: str = "application/json") -> Any:
        return await self.api_client.call_api(
            path, method, query_params=query or [], body=body,
            header_params={"Content-Type": content_type, "Accept": "application/json"},
            response_types_map=_OBJ, auth_settings=["BearerToken"], _return_http_data_only=True,
            _preload_content=True, _request_timeout=self.timeout)

    async def apply(self, obj: dict) -> dict:
        """Create or reconcile ``obj`` (server-side apply, kubelab owns its fields)."""
        return await self._call(kinds.object_path(obj), "PATCH", obj,
                                [("fieldManager", FIELD_MANAGER), ("force", "true")],
                                "application/apply-patch+yaml")

    async def create(self, obj: dict) -> dict:
        """Create ``obj``; an existing one is an ApiException 409 (nothing is overwritten)."""
        return await self._call(kinds.collection_path(obj["apiVersion"], obj["kind"], obj["metadata"].get("namespace")),
                                "POST", obj, [("fieldManager", FIELD_MANAGER)])

    async def patch(self, api_version: str, kind: str, name: str, patch: dict, namespace: str | None = None) -> dict:
        """JSON merge patch of the fields in ``patch`` only."""
        return await self._call(f"{kinds.collection_path(api_version, kind, namespace)}/{name}", "PATCH", patch,
                                [("fieldManager", FIELD_MANAGER)], "application/merge-patch+json")

    async def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict | None:
        try:
            return await self._call(f"{kinds.collection_path(api_version, kind, namespace)}/{name}", "GET")
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    async def list(self, api_version: str, kind: str, namespace: str | None = None, **params: str) -> list[dict]:
        path = kinds.collection_path(api_version, kind, namespace) if namespace or kind in ("Namespace", "Node") \
            else _all_namespaces(api_version, kind)
        res = await self._call(path, "GET", query=list(params.items()))
        return res.get("items", [])

    async def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None,
                     propagation: str = "Background") -> bool:
        """Delete; True if it existed."""
        try:
            await self._call(f"{kinds.collection_path(api_version, kind, namespace)}/{name}", "DELETE",
                             {"propagationPolicy": propagation})
            return True
        except ApiException as e:
            if e.status == 404:
                return False
            raise


def _all_namespaces(api_version: str, kind: str) -> str:
    path = kinds.collection_path(api_version, kind, "x")
    return path.replace("/namespaces/x", "")


def api_message(e: ApiException) -> str:
    """The apiserver's own one-line message from an ApiException."""
    import json

    try:
        return json.loads(e.body).get("message") or str(e.reason)
    except (TypeError, ValueError):
        return str(e.reason)
