"""A small Kubernetes REST client for devcluster's own components.

The node agent, DNS server and volume provisioner speak to the apiserver with
it, each with its own identity (a kubeconfig with a bearer token). Objects are
plain dicts, as the apiserver sends them.
"""
from __future__ import annotations

import json
import urllib.parse
from pathlib import Path
import threading
from typing import Any, Callable, Iterator

import requests
import yaml


class ApiError(Exception):
    def __init__(self, status: int, body: Any):
        self.status = status
        self.body = body
        msg = body.get("message") if isinstance(body, dict) else str(body)
        super().__init__(f"{status}: {msg}")

    @property
    def reason(self) -> str:
        return self.body.get("reason", "") if isinstance(self.body, dict) else ""


class Client:
    """One identity talking to one apiserver."""

    def __init__(self, server: str, token: str, ca_file: str, timeout: float = 30.0):
        self.server = server.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"
        self.session.verify = ca_file
        # REQUESTS_CA_BUNDLE in the environment would override `verify` otherwise.
        self.session.trust_env = False
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=32)
        self.session.mount("https://", adapter)

    @classmethod
    def from_kubeconfig(cls, path: str | Path) -> "Client":
        cfg = yaml.safe_load(Path(path).read_text())
        ctx_name = cfg["current-context"]
        ctx = next(c["context"] for c in cfg["contexts"] if c["name"] == ctx_name)
        cluster = next(c["cluster"] for c in cfg["clusters"] if c["name"] == ctx["cluster"])
        user = next(u["user"] for u in cfg["users"] if u["name"] == ctx["user"])
        return cls(cluster["server"], user["token"], cluster["certificate-authority"])

    # -- paths -------------------------------------------------------------
    @staticmethod
    def path(api: str, resource: str, namespace: str | None = None, name: str | None = None,
             sub: str | None = None) -> str:
        """``path("v1", "pods", "ns", "p", "status")`` -> /api/v1/namespaces/ns/pods/p/status.

        ``api`` is ``v1`` for the core group, else ``group/version``.
        """
        base = "/api/v1" if api == "v1" else f"/apis/{api}"
        if namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{resource}"
        if name:
            base += f"/{name}"
        if sub:
            base += f"/{sub}"
        return base

    # -- verbs -------------------------------------------------------------
    def request(self, method: str, path: str, body: Any = None, params: dict | None = None,
                content_type: str = "application/json", timeout: float | None = None) -> Any:
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type} if body is not None else {}
        r = self.session.request(method, self.server + path, data=data, params=params,
                                 headers=headers, timeout=timeout or self.timeout)
        if r.status_code >= 400:
            try:
                err = r.json()
            except ValueError:
                err = r.text
            raise ApiError(r.status_code, err)
        if not r.content:
            return None
        return r.json()

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params or None)

    def list(self, path: str, **params: Any) -> dict:
        return self.request("GET", path, params=params or None)

    def create(self, path: str, body: dict) -> dict:
        return self.request("POST", path, body)

    def replace(self, path: str, body: dict) -> dict:
        return self.request("PUT", path, body)

    def patch(self, path: str, body: dict, kind: str = "merge") -> dict:
        ctype = {
            "merge": "application/merge-patch+json",
            "strategic": "application/strategic-merge-patch+json",
            "json": "application/json-patch+json",
        }[kind]
        return self.request("PATCH", path, body, content_type=ctype)

    def apply(self, path: str, body: dict, field_manager: str) -> dict:
        """Server-side apply ``body`` at ``path`` (the object's own path)."""
        return self.request("PATCH", path, body, content_type="application/apply-patch+yaml",
                            params={"fieldManager": field_manager, "force": "true"})

    def delete(self, path: str, body: dict | None = None, missing_ok: bool = True) -> Any:
        try:
            return self.request("DELETE", path, body)
        except ApiError as e:
            if e.status == 404 and missing_ok:
                return None
            raise

    def watch(self, path: str, resource_version: str | None = None, timeout_seconds: int = 300,
              **params: Any) -> Iterator[dict]:
        """Yield watch events ({"type", "object"}) until the server closes the stream."""
        q = dict(params, watch="true", timeoutSeconds=str(timeout_seconds), allowWatchBookmarks="true")
        if resource_version:
            q["resourceVersion"] = resource_version
        url = self.server + path + "?" + urllib.parse.urlencode(q)
        with self.session.get(url, stream=True, timeout=(10, timeout_seconds + 30)) as r:
            if r.status_code >= 400:
                raise ApiError(r.status_code, r.text)
            for line in r.iter_lines():
                if line:
                    yield json.loads(line)


MANAGED_BY = "devcluster.kubelab.io"


def cluster_role_for_user(name: str, user: str, rules: list[dict]) -> list[dict]:
    """A ClusterRole with ``rules`` and its binding to ``user`` (a devcluster component's identity)."""
    meta = {"name": name, "labels": {"app.kubernetes.io/managed-by": MANAGED_BY}}
    return [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": meta, "rules": rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": dict(meta),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
         "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]},
    ]


def list_watch(client: Client, path: str, stop: threading.Event,
               replace_all: Callable[[list[dict]], None], on_set: Callable[[dict], None],
               on_delete: Callable[[dict], None], name: str = "",
               on_error: Callable[[Exception], None] | None = None) -> None:
    """An informer: list ``path`` into ``replace_all``, then follow its watch with
    ``on_set`` (ADDED/MODIFIED) and ``on_delete``; re-list on 410 Gone or any failure
    (with backoff), until ``stop`` is set."""
    import logging

    log = logging.getLogger("devcluster.informer")
    name = name or path
    backoff = 1.0
    while not stop.is_set():
        try:
            lst = client.list(path)
            replace_all(lst.get("items") or [])
            rv = lst["metadata"]["resourceVersion"]
            log.info("%s: listed %d (rv %s)", name, len(lst.get("items") or []), rv)
            backoff = 1.0
            while not stop.is_set():
                gone = False
                for ev in client.watch(path, resource_version=rv, timeout_seconds=240):
                    typ, obj = ev.get("type"), ev.get("object") or {}
                    if typ == "ERROR":
                        gone = obj.get("code") == 410
                        log.info("%s: watch error %s", name, obj.get("message"))
                        break
                    rv = (obj.get("metadata") or {}).get("resourceVersion", rv)
                    if typ in ("ADDED", "MODIFIED"):
                        on_set(obj)
                    elif typ == "DELETED":
                        on_delete(obj)
                    if stop.is_set():
                        return
                if gone:
                    break  # resourceVersion too old: re-list
                # a normal watch timeout: resume from the last resourceVersion
        except Exception as e:  # network errors, apiserver restarts, 403 before RBAC lands
            if on_error:
                on_error(e)
            log.warning("%s: %s; re-listing in %.0fs", name, e, backoff)
            stop.wait(backoff)
            backoff = min(backoff * 2, 10.0)


def write_kubeconfig(path: Path, server: str, ca_file: Path, token: str, user: str) -> None:
    """Write a token kubeconfig for ``user``."""
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "devcluster", "cluster": {"server": server, "certificate-authority": str(ca_file)}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "devcluster", "context": {"cluster": "devcluster", "user": user}}],
        "current-context": "devcluster",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg))
    path.chmod(0o600)


__all__ = ["ApiError", "Client", "write_kubeconfig"]
