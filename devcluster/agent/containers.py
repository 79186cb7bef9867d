"""Container runs: start one under a shim, observe it from its files, stop it.

Each run ("attempt", the container's restartCount when it started) has a
directory; everything about it can be recovered from that directory, which is
how a restarted agent adopts running containers.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .cgroups import Cgroups, kill_pids, tree_pids
from .logs import format_rfc3339nano
from .store import NodeStore, read_json, write_json

log = logging.getLogger(__name__)

SHIM = Path(__file__).resolve().with_name("shim.py")
KILL_WAIT = 6.0


def container_id(uid: str, name: str, attempt: int) -> str:
    """A stable 64-hex id for one run."""
    return hashlib.sha256(f"{uid}/{name}/{attempt}".encode()).hexdigest()


def proc_start_ticks(pid: int) -> int | None:
    """Start time of ``pid`` (clock ticks since boot), None if it is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


@dataclass(frozen=True)
class ExitInfo:
    exit_code: int
    reason: str
    message: str
    started_at: str | None
    finished_at: str


@dataclass(frozen=True)
class RunState:
    """A snapshot of one run, read from its directory."""

    name: str
    attempt: int
    dir: Path
    container_id: str
    started_at: str | None
    exit: ExitInfo | None
    shim_pid: int | None
    shim_alive: bool

    @property
    def running(self) -> bool:
        return self.exit is None and self.shim_alive

    @property
    def lost(self) -> bool:
        """The shim is gone without leaving an exit record."""
        return self.exit is None and not self.shim_alive

    @property
    def log_path(self) -> Path:
        return self.dir / "container.log"


class ContainerRuntime:
    """Runs of the containers of one node's pods."""

    def __init__(self, store: NodeStore, cgroups: Cgroups):
        self.store = store
        self.cgroups = cgroups
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()

    def _container_dir(self, uid: str, name: str) -> Path:
        return self.store.pod_dir(uid) / "containers" / name

    def run_dir(self, uid: str, name: str, attempt: int) -> Path:
        return self._container_dir(uid, name) / str(attempt)

    def attempts(self, uid: str, name: str) -> list[int]:
        try:
            return sorted(int(d) for d in os.listdir(self._container_dir(uid, name)) if d.isdigit())
        except OSError:
            return []

    def latest(self, uid: str, name: str) -> RunState | None:
        attempts = self.attempts(uid, name)
        return self.state(uid, name, attempts[-1]) if attempts else None

    def previous(self, uid: str, name: str) -> RunState | None:
        attempts = self.attempts(uid, name)
        return self.state(uid, name, attempts[-2]) if len(attempts) > 1 else None

    def _reap(self) -> None:
        """Collect the exit status of shims this process started (no zombies)."""
        with self._lock:
            for pid in [pid for pid, child in self._children.items() if child.poll() is not None]:
                del self._children[pid]

    def state(self, uid: str, name: str, attempt: int) -> RunState:
        self._reap()
        d = self.run_dir(uid, name, attempt)
        shim = read_json(d / "shim.json") or {}
        run = read_json(d / "run.json") or {}
        ex = read_json(d / "exit.json")
        exit_info = None
        if isinstance(ex, dict):
            exit_info = ExitInfo(int(ex.get("exitCode", 128)), str(ex.get("reason") or "Error"),
                                 str(ex.get("message") or ""), ex.get("startedAt"), str(ex["finishedAt"]))
        pid = int(shim["pid"]) if shim.get("pid") else None
        return RunState(
            name=name, attempt=attempt, dir=d, container_id=container_id(uid, name, attempt),
            started_at=run.get("startedAt"), exit=exit_info, shim_pid=pid,
            shim_alive=(pid is not None and exit_info is None and shim.get("ticks") is not None
                        and proc_start_ticks(pid) == shim["ticks"]),
        )

    def start(self, uid: str, name: str, attempt: int, spec: dict[str, Any]) -> RunState:
        """Start a run under a new shim; ``spec`` is the shim's spec minus the file paths."""
        d = self.run_dir(uid, name, attempt)
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
        for old in self.attempts(uid, name):
            if old < attempt - 1:
                shutil.rmtree(self.run_dir(uid, name, old), ignore_errors=True)
        (d / "termination-log").touch()
        full = dict(spec, log=str(d / "container.log"), run_file=str(d / "run.json"),
                    exit_file=str(d / "exit.json"), termination_log=str(d / "termination-log"))
        write_json(d / "spec.json", full)
        with open(d / "shim.log", "ab") as shim_log:
            child = subprocess.Popen([sys.executable, "-I", "-S", str(SHIM), str(d / "spec.json")],
                                     stdin=subprocess.DEVNULL, stdout=shim_log, stderr=shim_log,
                                     start_new_session=True, cwd="/")
        with self._lock:
            self._children[child.pid] = child
        write_json(d / "shim.json", {"pid": child.pid, "ticks": proc_start_ticks(child.pid)})
        return self.state(uid, name, attempt)

    def wait_exit(self, uid: str, run: RunState, timeout: float) -> RunState:
        """Wait up to ``timeout`` s for the run to end; returns the newest snapshot."""
        deadline = time.monotonic() + timeout
        state = self.state(uid, run.name, run.attempt)
        while state.running and time.monotonic() < deadline:
            time.sleep(0.1)
            state = self.state(uid, run.name, run.attempt)
        return state

    def terminate(self, run: RunState) -> None:
        """Ask the run to stop: SIGTERM to the shim, which forwards it to the process group."""
        if run.shim_pid and run.shim_alive:
            try:
                os.kill(run.shim_pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def kill(self, uid: str, run: RunState) -> RunState:
        """SIGKILL every process of the run and make sure it has an exit record."""
        pids = set()
        for d in self.cgroups.container_dirs(uid, run.name).values():
            pids |= tree_pids(d)
        run_info = read_json(run.dir / "run.json") or {}
        if run.shim_alive and run_info.get("pid"):
            try:
                os.killpg(int(run_info["pid"]), signal.SIGKILL)
            except ProcessLookupError:
                pass
        kill_pids(pids)
        state = self.wait_exit(uid, run, KILL_WAIT) if run.shim_alive else self.state(uid, run.name, run.attempt)
        if state.exit is None:
            if state.shim_pid and state.shim_alive:
                try:
                    os.kill(state.shim_pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            write_json(state.dir / "exit.json", {
                "exitCode": 137, "reason": "Error",
                "message": "the container's shim ended without recording an exit status",
                "startedAt": state.started_at, "finishedAt": format_rfc3339nano(time.time())})
            state = self.state(uid, run.name, run.attempt)
        return state

    def stop(self, uid: str, run: RunState, grace: float) -> RunState:
        """SIGTERM, up to ``grace`` seconds, then SIGKILL."""
        if run.running:
            self.terminate(run)
            run = self.wait_exit(uid, run, max(grace, 0.0))
        if run.exit is None:
            run = self.kill(uid, run)
        return run
