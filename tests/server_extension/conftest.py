"""Fixtures for the server extension's end-to-end tests: real user servers
spawned by the hub on devcluster, driven through the proxy like a browser."""
from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import requests

from tests.hubclient import Hub

ALICE, BOB = "wl-alice", "wl-bob"


@dataclass
class UserServer:
    hub: Hub
    name: str

    @property
    def namespace(self) -> str:
        return f"kubelab-{self.name}"

    def api(self, method: str, path: str, **kw) -> requests.Response:
        """A request to the user's kubelab REST API through the proxy."""
        kw.setdefault("timeout", 60)
        return self.hub.s.request(method, f"{self.hub.url}/user/{self.name}/kubelab/api/{path.lstrip('/')}", **kw)

    def ok(self, method: str, path: str, status: int = 200, **kw):
        r = self.api(method, path, **kw)
        assert r.status_code == status, f"{method} {path}: {r.status_code} {r.text}"
        return r.json() if r.content and r.headers.get("Content-Type", "").startswith("application/json") else r

    def put_file(self, path: str, content: str | dict) -> None:
        """Save a file in the user's home with the Jupyter contents API (as JupyterLab does)."""
        if isinstance(content, dict):
            body = {"type": "notebook", "format": "json", "content": content}
        else:
            body = {"type": "file", "format": "text", "content": content}
        parent = path.rsplit("/", 1)[0] if "/" in path else ""
        if parent:
            self.hub.s.put(f"{self.hub.url}/user/{self.name}/api/contents/{parent}",
                           json={"type": "directory"}, timeout=60)
        r = self.hub.s.put(f"{self.hub.url}/user/{self.name}/api/contents/{path}", json=body, timeout=60)
        assert r.status_code in (200, 201), r.text

    def get_file(self, path: str) -> requests.Response:
        return self.hub.s.get(f"{self.hub.url}/user/{self.name}/api/contents/{path}", timeout=60)

    def execute(self, code: str, timeout: float = 180) -> str:
        return self.hub.execute(self.name, code, timeout)


def notebook(*cells: str, parameters: str | None = None) -> dict:
    """A small notebook; ``parameters`` is the papermill-tagged parameters cell."""
    def cell(src: str, tags=()):
        return {"cell_type": "code", "execution_count": None, "metadata": {"tags": list(tags)},
                "outputs": [], "source": src}
    cs = ([cell(parameters, ["parameters"])] if parameters is not None else []) + [cell(c) for c in cells]
    return {"cells": cs, "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                     "language": "python"}},
            "nbformat": 4, "nbformat_minor": 5}


@pytest.fixture(scope="session")
def users(hub: Hub) -> dict[str, UserServer]:
    """Two users with running servers: alice (in the GPU group) and bob."""
    hub.ensure_user(ALICE, ["gpu-users"])
    hub.ensure_user(BOB)
    for name in (ALICE, BOB):
        if not (hub.server(name) or {}).get("ready"):
            r = hub.start(name, {"resource_group": "cpu"})
            assert r.status_code in (201, 202, 400), r.text  # 400: already running
    for name in (ALICE, BOB):
        hub.wait_ready(name)
    return {"alice": UserServer(hub, ALICE), "bob": UserServer(hub, BOB)}


@pytest.fixture(scope="session")
def alice(users) -> UserServer:
    return users["alice"]


@pytest.fixture(scope="session")
def bob(users) -> UserServer:
    return users["bob"]


def dumps(doc) -> str:
    return json.dumps(doc, indent=1)
