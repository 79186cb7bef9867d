"""The user-pod side's one Kubernetes client layer.

A small synchronous client over ``requests`` that speaks to the apiserver
with the server pod's ServiceAccount (in-cluster), or with an explicit server
and token (tests, local development). It takes plain dicts built by
``kubelab.core`` and applies them with server-side apply. The service layer
is its only user; REST handlers run it in a thread.
"""
from __future__ import annotations

import json
import os
import time
from typing import Any, Iterator
from urllib.parse import quote

import requests

from kubelab.core import kinds

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
FIELD_MANAGER = "kubelab-user"


class KubeError(Exception):
    """An apiserver error, with its status code and its own one-line message."""

    def __init__(self, status: int, message: str, reason: str = ""):
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason


class KubeClient:
    def __init__(self, server: str, token: str | None = None, token_file: str | None = None,
                 ca: str | bool | None = None, namespace: str | None = None, timeout: float = 30.0):
        self.server = server.rstrip("/")
        self._token, self._token_file = token, token_file
        self._token_read = 0.0
        self.namespace = namespace
        self.timeout = timeout
        self.session = requests.Session()
        self.session.trust_env = False  # never route the apiserver through a proxy from the environment
        self.session.verify = ca if ca is not None else True

    @classmethod
    def in_cluster(cls, timeout: float = 30.0) -> "KubeClient":
        host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        if not host or not os.path.exists(f"{SA_DIR}/token"):
            raise KubeError(503, "no Kubernetes ServiceAccount in this server: it was not started by KubelabSpawner")
        ns = open(f"{SA_DIR}/namespace").read().strip() if os.path.exists(f"{SA_DIR}/namespace") else None
        host = f"[{host}]" if ":" in host else host
        return cls(f"https://{host}:{port}", token_file=f"{SA_DIR}/token", ca=f"{SA_DIR}/ca.crt",
                   namespace=ns, timeout=timeout)

    # -- transport --------------------------------------------------------------------------------
    def _auth(self) -> dict[str, str]:
        if self._token_file and time.monotonic() - self._token_read > 60:
            with open(self._token_file) as f:  # bound tokens rotate: re-read each minute
                self._token = f.read().strip()
            self._token_read = time.monotonic()
        return {"Authorization": f"Bearer {self._token}"} if self._token else {}

    def request(self, method: str, path: str, params: dict | list | None = None, body: Any = None,
                content_type: str = "application/json", stream: bool = False,
                timeout: float | None = None) -> requests.Response:
        headers = {**self._auth(), "Accept": "application/json"}
        data = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = json.dumps(body)
        try:
            r = self.session.request(method, self.server + path, params=params, data=data, headers=headers,
                                     stream=stream,
                                     timeout=(self.timeout, None) if stream else (timeout or self.timeout))
        except requests.RequestException as e:
            raise KubeError(503, f"the Kubernetes API is unreachable: {e.__class__.__name__}") from None
        if r.status_code >= 400:
            try:
                doc = r.json()
                msg, reason = doc.get("message") or r.reason, doc.get("reason", "")
            except ValueError:
                msg, reason = (r.text.strip() or r.reason)[:500], ""
            r.close()
            raise KubeError(r.status_code, msg, reason)
        return r

    # -- objects ----------------------------------------------------------------------------------
    def _ns(self, namespace: str | None) -> str | None:
        return namespace or self.namespace

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict | None:
        try:
            return self.request("GET", f"{kinds.collection_path(api_version, kind, self._ns(namespace))}/{quote(name, safe='')}").json()
        except KubeError as e:
            if e.status == 404:
                return None
            raise

    def list(self, api_version: str, kind: str, namespace: str | None = None, label_selector: str | None = None,
             field_selector: str | None = None, limit: int | None = None, cont: str | None = None) -> dict:
        """One page of a list (``items`` and ``metadata.continue``)."""
        params = {k: v for k, v in (("labelSelector", label_selector), ("fieldSelector", field_selector),
                                    ("limit", limit), ("continue", cont)) if v}
        return self.request("GET", kinds.collection_path(api_version, kind, self._ns(namespace)), params).json()

    def items(self, api_version: str, kind: str, namespace: str | None = None, **kw: Any) -> list[dict]:
        """Every item, page by page (500 per request)."""
        out: list[dict] = []
        cont = None
        while True:
            page = self.list(api_version, kind, namespace, limit=500, cont=cont, **kw)
            for item in page.get("items", []):  # list items come without their kind: restore it
                item.setdefault("apiVersion", api_version)
                item.setdefault("kind", kind)
                out.append(item)
            cont = page.get("metadata", {}).get("continue")
            if not cont:
                return out

    def create(self, obj: dict) -> dict:
        meta = obj["metadata"]
        path = kinds.collection_path(obj["apiVersion"], obj["kind"], meta.get("namespace") or self.namespace)
        return self.request("POST", path, {"fieldManager": FIELD_MANAGER}, obj).json()

    def apply(self, obj: dict) -> dict:
        """Create or update ``obj`` with server-side apply (kubelab owns the fields it sets)."""
        obj.setdefault("metadata", {}).setdefault("namespace", self.namespace)
        return self.request("PATCH", kinds.object_path(obj), {"fieldManager": FIELD_MANAGER, "force": "true"},
                            obj, "application/apply-patch+yaml").json()

    def patch(self, api_version: str, kind: str, name: str, patch: dict, namespace: str | None = None) -> dict:
        path = f"{kinds.collection_path(api_version, kind, self._ns(namespace))}/{quote(name, safe='')}"
        return self.request("PATCH", path, {"fieldManager": FIELD_MANAGER}, patch,
                            "application/merge-patch+json").json()

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None,
               propagation: str = "Background") -> bool:
        """Delete (dependents too, in the background); False if it did not exist."""
        path = f"{kinds.collection_path(api_version, kind, self._ns(namespace))}/{quote(name, safe='')}"
        try:
            self.request("DELETE", path, body={"propagationPolicy": propagation})
            return True
        except KubeError as e:
            if e.status == 404:
                return False
            raise

    def delete_collection(self, api_version: str, kind: str, label_selector: str, namespace: str | None = None,
                          propagation: str = "Background") -> None:
        self.request("DELETE", kinds.collection_path(api_version, kind, self._ns(namespace)),
                     {"labelSelector": label_selector}, {"propagationPolicy": propagation})

    # -- logs and discovery -----------------------------------------------------------------------
    def logs(self, pod: str, container: str | None = None, namespace: str | None = None, follow: bool = False,
             tail_lines: int | None = None, limit_bytes: int | None = None,
             timestamps: bool = False) -> Iterator[bytes]:
        params = {k: v for k, v in (("container", container), ("follow", "true" if follow else None),
                                    ("tailLines", tail_lines), ("limitBytes", limit_bytes),
                                    ("timestamps", "true" if timestamps else None)) if v is not None}
        r = self.request("GET", f"/api/v1/namespaces/{self._ns(namespace)}/pods/{quote(pod, safe='')}/log", params, stream=True)

        def chunks() -> Iterator[bytes]:
            try:
                yield from r.iter_content(chunk_size=None)
            finally:
                r.close()
        return chunks()

    def has_resource(self, group_version: str, plural: str) -> bool:
        """Is ``plural`` served under ``group_version`` (e.g. kubeflow.org/v1, pytorchjobs)?"""
        path = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
        try:
            doc = self.request("GET", path, timeout=5).json()
        except KubeError:
            return False
        return any(r.get("name") == plural for r in doc.get("resources", []))
