"""The admin service's audit log: one JSON object per line, appended and fsynced.

Admin actions, approval decisions and external triggers are recorded here.
The file lives in the hub's state directory (on zero-to-jupyterhub the hub's
PVC, ``/srv/jupyterhub``), so the log survives hub restarts.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import threading
from pathlib import Path
from typing import Any

_TAIL_BLOCK = 64 * 1024


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class AuditLog:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path).resolve()
        self._lock = threading.Lock()

    def record(self, actor: str, action: str, target: str, result: str = "ok", **details: Any) -> dict:
        """Append one entry (durable when this returns)."""
        entry = {"time": now_iso(), "actor": actor, "action": action, "target": target, "result": result}
        if details:
            entry["details"] = details
        line = json.dumps(entry, sort_keys=True, separators=(",", ":"), default=str) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line.encode("utf-8"))
                os.fsync(fd)
            finally:
                os.close(fd)
        return entry

    def tail(self, limit: int = 200, action: str | None = None) -> list[dict]:
        """The newest ``limit`` entries (newest first), optionally of one action."""
        if not self.path.exists():
            return []
        out: list[dict] = []
        with open(self.path, "rb") as f:
            f.seek(0, os.SEEK_END)
            pos, rest = f.tell(), b""
            while pos > 0 and len(out) < limit:
                step = min(_TAIL_BLOCK, pos)
                pos -= step
                f.seek(pos)
                chunk = f.read(step) + rest
                lines = chunk.split(b"\n")
                rest = lines.pop(0) if pos > 0 else b""
                for raw in reversed(lines):
                    if len(out) >= limit:
                        break
                    entry = _parse(raw)
                    if entry is not None and (action is None or entry.get("action") == action):
                        out.append(entry)
        return out


def _parse(raw: bytes) -> dict | None:
    raw = raw.strip()
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None  # a line cut short by a crash mid-write is skipped
    return value if isinstance(value, dict) else None
