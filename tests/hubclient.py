"""Drive a real JupyterHub through its REST API, and run code inside a user's server."""
from __future__ import annotations

import asyncio
import concurrent.futures
import json
import time
import uuid

import requests

from tests.waiting import eventually


class SpawnFailed(Exception):
    """The hub gave up on a spawn (not retried by ``eventually``)."""


class Hub:
    def __init__(self, url: str, token: str):
        self.url = url.rstrip("/")
        self.s = requests.Session()
        self.s.trust_env = False
        self.s.headers["Authorization"] = f"token {token}"
        self.token = token

    def api(self, method: str, path: str, **kw) -> requests.Response:
        return self.s.request(method, f"{self.url}/hub/api{path}", timeout=60, **kw)

    def ensure_user(self, name: str, groups: list[str] = ()) -> dict:
        r = self.api("GET", f"/users/{name}")
        if r.status_code == 404:
            r = self.api("POST", f"/users/{name}")
            assert r.status_code == 201, r.text
        for g in groups:
            if self.api("GET", f"/groups/{g}").status_code == 404:
                self.api("POST", f"/groups/{g}")
            self.api("POST", f"/groups/{g}/users", json={"users": [name]}).raise_for_status()
        return self.api("GET", f"/users/{name}").json()

    def remove_from_group(self, name: str, group: str) -> None:
        self.api("DELETE", f"/groups/{group}/users", json={"users": [name]})

    def start(self, name: str, options: dict | None = None) -> requests.Response:
        """POST the spawn; returns the response (201/202 on success, 4xx with a message on refusal)."""
        return self.api("POST", f"/users/{name}/server", json=options or {})

    def server(self, name: str) -> dict | None:
        return self.api("GET", f"/users/{name}").json().get("servers", {}).get("")

    def wait_ready(self, name: str, timeout: float = 240) -> dict:
        def ready():
            srv = self.server(name)
            if srv is None or not (srv.get("ready") or srv.get("pending")):
                raise SpawnFailed(f"{name}'s server is gone (spawn failed)")
            return srv if srv.get("ready") else None
        return eventually(ready, timeout, 1, what=f"{name}'s server ready")

    def spawn(self, name: str, options: dict | None = None) -> dict:
        r = self.start(name, options)
        assert r.status_code in (201, 202), f"spawn of {name} refused: {r.status_code} {r.text}"
        return self.wait_ready(name)

    def stop(self, name: str) -> None:
        r = self.api("DELETE", f"/users/{name}/server")
        assert r.status_code in (202, 204, 400), r.text

        def stopped():
            srv = self.server(name)
            return srv is None or not (srv.get("ready") or srv.get("pending"))
        eventually(stopped, 120, 1, what=f"{name}'s server stopped")

    def delete_user(self, name: str) -> None:
        srv = self.server(name)
        if srv:
            self.stop(name)
        r = self.api("DELETE", f"/users/{name}")
        assert r.status_code in (204, 404), r.text

    def user_get(self, name: str, path: str) -> requests.Response:
        """GET through the proxy into the user's server."""
        return self.s.get(f"{self.url}/user/{name}/{path.lstrip('/')}", timeout=30)

    def execute(self, name: str, code: str, timeout: float = 120) -> str:
        """Run ``code`` in a fresh kernel of ``name``'s server; return its stdout (raises on error)."""
        r = self.s.post(f"{self.url}/user/{name}/api/kernels", json={"name": "python3"}, timeout=60)
        assert r.status_code == 201, r.text
        kid = r.json()["id"]
        try:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                return asyncio.run(self._run(name, kid, code, timeout))
            # a loop already runs in this thread (Playwright's sync API): use another thread
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                return pool.submit(asyncio.run, self._run(name, kid, code, timeout)).result()
        finally:
            self.s.delete(f"{self.url}/user/{name}/api/kernels/{kid}", timeout=30)

    async def _run(self, name: str, kid: str, code: str, timeout: float) -> str:
        from tornado.httpclient import HTTPRequest
        from tornado.websocket import websocket_connect

        ws_url = self.url.replace("http", "ws", 1) + f"/user/{name}/api/kernels/{kid}/channels"
        conn = await websocket_connect(HTTPRequest(ws_url, headers={"Authorization": f"token {self.token}"}))
        msg_id = uuid.uuid4().hex
        conn.write_message(json.dumps({
            "header": {"msg_id": msg_id, "username": "test", "session": uuid.uuid4().hex, "msg_type": "execute_request",
                       "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell",
            "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                        "allow_stdin": False, "stop_on_error": True}}))
        out, error, deadline = [], None, time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                raw = await asyncio.wait_for(conn.read_message(), deadline - time.monotonic())
                if raw is None:
                    break
                msg = json.loads(raw)
                if msg.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                t = msg["header"]["msg_type"]
                if t == "stream":
                    out.append(msg["content"]["text"])
                elif t == "error":
                    error = f"{msg['content']['ename']}: {msg['content']['evalue']}"
                elif t == "status" and msg["content"]["execution_state"] == "idle":
                    break
        finally:
            conn.close()
        if error:
            raise AssertionError(f"code failed in {name}'s server: {error}\noutput: {''.join(out)}")
        return "".join(out)
