"""Fixtures for the admin service's end-to-end tests: the real hub on devcluster
running the kubelab-admin service, users ``adm-*`` with servers, and tokens."""
from __future__ import annotations

from dataclasses import dataclass

import pytest
import requests

from tests.hubclient import Hub
from tests.browser import login  # noqa: F401 - the hub login form, shared with the UI tests
from tests.waiting import eventually

__all__ = ["login", "Client", "new_token", "assert_error", "admin_service_up", "restart_hub"]

SERVICE = "/services/kubelab-admin"
ALICE, BOB, CAROL = "adm-alice", "adm-bob", "adm-carol"


def admin_service_up(hub: Hub) -> bool:
    """Does the proxy route to kubelab-admin (its own 401 JSON for an anonymous call)?"""
    try:
        r = requests.get(f"{hub.url}{SERVICE}/api/capacity", timeout=10, allow_redirects=False)
        return r.status_code == 401 and r.json().get("code") == 401
    except (requests.RequestException, ValueError):
        return False


def restart_hub(devcluster) -> None:
    from devcluster import hub as devhub

    devhub.down(devcluster)
    devhub.up(devcluster)


@pytest.fixture(scope="session")
def admin_hub(hub: Hub, devcluster) -> Hub:
    """The hub with the kubelab-admin service; restarted once if it runs an older config."""
    if not admin_service_up(hub):
        restart_hub(devcluster)
    eventually(lambda: admin_service_up(hub), 60, 1, what="kubelab-admin service answering")
    return hub


def new_token(hub: Hub, user: str, scopes: list[str] | None = None) -> str:
    body = {"note": "kubelab admin tests", "expires_in": 3600}
    if scopes is not None:
        body["scopes"] = scopes
    r = hub.api("POST", f"/users/{user}/tokens", json=body)
    assert r.status_code == 201, r.text
    return r.json()["token"]


@dataclass
class Client:
    """Requests to kubelab-admin with one JupyterHub API token."""

    hub: Hub
    token: str | None

    def __call__(self, method: str, path: str, **kw) -> requests.Response:
        headers = dict(kw.pop("headers", {}))
        if self.token:
            headers["Authorization"] = f"token {self.token}"
        kw.setdefault("timeout", 120)
        return requests.request(method, f"{self.hub.url}{SERVICE}/{path.lstrip('/')}", headers=headers,
                                allow_redirects=False, **kw)

    def ok(self, method: str, path: str, status: int = 200, **kw) -> dict:
        r = self(method, path, **kw)
        assert r.status_code == status, f"{method} {path}: {r.status_code} {r.text[:1000]}"
        return r.json()


def assert_error(r: requests.Response, status: int, *words: str) -> dict:
    """A clear 4xx: one-line JSON {code, message} naming what is wrong."""
    assert r.status_code == status, f"{r.status_code} {r.text[:500]}"
    body = r.json()
    assert body["code"] == status and isinstance(body["message"], str) and "\n" not in body["message"], body
    for w in words:
        assert w in body["message"], body
    assert "Traceback" not in r.text
    return body


@pytest.fixture(scope="session")
def admin(admin_hub: Hub) -> Client:
    return Client(admin_hub, new_token(admin_hub, "admin"))


@pytest.fixture(scope="session")
def adm_users(admin_hub: Hub):
    """adm-alice with 1 GPU (group gpu-a100) and adm-bob on CPU, servers running."""
    hub = admin_hub
    hub.ensure_user(ALICE, ["gpu-users"])
    hub.ensure_user(BOB)
    for name, options in ((ALICE, {"resource_group": "gpu-a100", "gpus": "1"}), (BOB, {"resource_group": "cpu"})):
        srv = hub.server(name) or {}
        if srv.get("ready") and (srv.get("user_options") or {}).get("resource_group") != options["resource_group"]:
            hub.stop(name)
        if not (hub.server(name) or {}).get("ready"):
            def started(name=name, options=options):
                r = hub.start(name, options)
                if r.status_code == 409 and "still being deleted" in r.text:
                    return None  # the previous session's namespace is going away: retry
                assert r.status_code in (201, 202, 400), r.text
                return True
            eventually(started, 180, 3, what=f"{name}'s server started")
    for name in (ALICE, BOB):
        hub.wait_ready(name)
    yield {"alice": ALICE, "bob": BOB}
    for name in (ALICE, BOB, CAROL):
        hub.delete_user(name)

