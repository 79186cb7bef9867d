"""Start, find and stop devcluster daemons.

Each daemon runs in its own session (it outlives the command that started it),
logs to ``<state>/logs/<name>.log`` and records its pid in
``<state>/run/<name>.pid``.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Mapping, Sequence

from .paths import State


def pid_file(state: State, name: str) -> Path:
    return state.run / f"{name}.pid"


def log_file(state: State, name: str) -> Path:
    return state.logs / f"{name}.log"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def running_pid(state: State, name: str) -> int | None:
    """The pid of daemon ``name`` if it is running, else None."""
    try:
        pid = int(pid_file(state, name).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def start(
    state: State,
    name: str,
    argv: Sequence[str],
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> int:
    """Start ``argv`` as daemon ``name`` unless it already runs; return its pid."""
    pid = running_pid(state, name)
    if pid:
        return pid
    state.run.mkdir(parents=True, exist_ok=True)
    state.logs.mkdir(parents=True, exist_ok=True)
    full_env = dict(os.environ)
    full_env.update(env or {})
    with open(log_file(state, name), "ab") as log:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=str(cwd) if cwd else None,
            start_new_session=True,
        )
    pid_file(state, name).write_text(f"{proc.pid}\n")
    return proc.pid


def stop(state: State, name: str, grace: float = 10.0) -> bool:
    """SIGTERM daemon ``name`` (its whole process group), SIGKILL after ``grace``.

    Returns True if something was running.
    """
    pid = running_pid(state, name)
    pid_file(state, name).unlink(missing_ok=True)
    if not pid:
        return False
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return True
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _alive(pid):
                return True
            time.sleep(0.1)
    return True


def kill_in_dir(directory: Path, grace: float = 5.0) -> list[int]:
    """SIGTERM (then SIGKILL) every process whose working directory is in ``directory``.

    For what a daemon started in its own sessions (JupyterHub's proxy and
    managed services run in the hub's directory).
    """
    root = str(Path(directory).resolve())
    pids = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit() or int(p.name) == os.getpid():
            continue
        try:
            cwd = os.readlink(p / "cwd")
        except OSError:
            continue
        if (cwd == root or cwd.startswith(root + "/")) and _alive(int(p.name)):
            pids.append(int(p.name))
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
            time.sleep(0.1)
    return pids


def tail(state: State, name: str, lines: int = 30) -> str:
    """The last lines of a daemon's log, for error messages."""
    try:
        data = log_file(state, name).read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(data[-lines:])
