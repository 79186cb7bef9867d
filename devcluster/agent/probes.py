"""Container probes (liveness, readiness, startup) and lifecycle hook handlers."""
from __future__ import annotations

import http.client
import logging
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

log = logging.getLogger(__name__)

MAX_OUTPUT = 10 * 1024


@dataclass(frozen=True)
class ProbeTarget:
    """Where a container's probes and hooks reach it."""

    pod_ip: str
    ports: dict[str, int]
    shim_pid: int
    env: dict[str, str]
    cwd: str | None


def _port(value: Any, target: ProbeTarget) -> int:
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
        return int(value)
    if value in target.ports:
        return target.ports[value]
    raise ValueError(f"named port {value!r} not found in the container's ports")


def http_get(action: dict[str, Any], target: ProbeTarget, timeout: float) -> tuple[bool, str]:
    """An httpGet probe: success for status 200-399."""
    host = action.get("host") or target.pod_ip
    port = _port(action.get("port"), target)
    path = action.get("path") or "/"
    if not path.startswith("/"):
        path = "/" + path
    scheme = (action.get("scheme") or "HTTP").upper()
    url = f"{scheme.lower()}://{host}:{port}{path}"
    headers = {"User-Agent": "kube-probe/1.36", "Accept": "*/*"}
    for h in action.get("httpHeaders") or []:
        headers[h["name"]] = h["value"]
    if scheme == "HTTPS":
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            host, port, timeout=timeout, context=ssl._create_unverified_context())
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        body = resp.read(MAX_OUTPUT)
    except (OSError, http.client.HTTPException) as e:
        return False, f'Get "{url}": {e}'
    finally:
        conn.close()
    if 200 <= resp.status < 400:
        return True, ""
    return False, f"HTTP probe failed with statuscode: {resp.status}" + (
        f" body: {body[:200].decode(errors='replace')}" if body else "")


def tcp_socket(action: dict[str, Any], target: ProbeTarget, timeout: float) -> tuple[bool, str]:
    host = action.get("host") or target.pod_ip
    port = _port(action.get("port"), target)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True, ""
    except OSError as e:
        return False, f"dial tcp {host}:{port}: {e}"


def exec_in_container(command: list[str], target: ProbeTarget, timeout: float) -> tuple[bool, str]:
    """Run ``command`` in the container's namespaces (via nsenter on its shim)."""
    argv = ["nsenter", "-t", str(target.shim_pid), "-m", "-n", "-u"]
    if target.cwd:
        argv.append(f"--wd={target.cwd}")
    argv += ["--", *command]
    try:
        proc = subprocess.run(argv, env=target.env, stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, f"command timed out after {timeout:g}s"
    except OSError as e:
        return False, str(e)
    output = (proc.stdout + proc.stderr)[-MAX_OUTPUT:].decode(errors="replace").strip()
    if proc.returncode == 0:
        return True, output
    return False, output or f"command {command!r} exited with {proc.returncode}"


def run_action(action: dict[str, Any], target: ProbeTarget, timeout: float) -> tuple[bool, str]:
    """Run a probe or lifecycle handler (exec, httpGet, tcpSocket, sleep)."""
    try:
        if "exec" in action:
            return exec_in_container(list(action["exec"].get("command") or []), target, timeout)
        if "httpGet" in action:
            return http_get(action["httpGet"], target, timeout)
        if "tcpSocket" in action:
            return tcp_socket(action["tcpSocket"], target, timeout)
        if "sleep" in action:
            time.sleep(min(float(action["sleep"].get("seconds", 0)), timeout))
            return True, ""
        if "grpc" in action:
            return True, "grpc probes are not supported by devcluster; treated as success"
    except ValueError as e:
        return False, str(e)
    return False, f"unsupported handler {sorted(action)}"


class ProbeWorker(threading.Thread):
    """Probes one container run periodically, like the kubelet's probe worker.

    ``result`` flips to success after ``successThreshold`` consecutive successes
    and to failure after ``failureThreshold`` consecutive failures. ``gate``
    holds liveness and readiness back until the startup probe succeeded.
    ``on_result(kind, success, message, changed)`` is called after every probe.
    """

    def __init__(self, kind: str, probe: dict[str, Any], target: Callable[[], ProbeTarget | None],
                 started_at: float, on_result: Callable[[str, bool, str, bool], None],
                 gate: Callable[[], bool], initial: bool):
        super().__init__(daemon=True, name=f"probe-{kind}")
        self.kind = kind
        self.probe = probe
        self.target = target
        self.started_at = started_at
        self.on_result = on_result
        self.gate = gate
        self.result = initial
        self.failure_threshold = max(1, int(probe.get("failureThreshold") or 3))
        self.success_threshold = max(1, int(probe.get("successThreshold") or 1))
        self._run_length = 0
        self._last: bool | None = None
        self._stop_event = threading.Event()

    @property
    def failed(self) -> bool:
        """``failureThreshold`` consecutive failures happened (liveness/startup: restart)."""
        return self._last is False and self._run_length >= self.failure_threshold

    def stop(self) -> None:
        self._stop_event.set()

    def run(self) -> None:
        p = self.probe
        period = max(1, int(p.get("periodSeconds") or 10))
        timeout = max(1, int(p.get("timeoutSeconds") or 1))
        delay = int(p.get("initialDelaySeconds") or 0)
        wait = max(0.0, self.started_at + delay - time.time())
        if self._stop_event.wait(min(wait, 3600)):
            return
        while not self._stop_event.is_set():
            target = self.target()
            if target is not None and self.gate():
                ok, message = run_action(p, target, timeout)
                if self._stop_event.is_set():
                    return
                self._run_length = self._run_length + 1 if ok == self._last else 1
                self._last = ok
                threshold = self.success_threshold if ok else self.failure_threshold
                changed = False
                if ok != self.result and self._run_length >= threshold:
                    self.result = ok
                    changed = True
                self.on_result(self.kind, ok, message, changed)
                if self.kind == "startup" and self.result:
                    return  # a startup probe stops once it succeeded
            if self._stop_event.wait(period):
                return
