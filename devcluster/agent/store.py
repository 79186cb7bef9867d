"""What the agent persists, so that a restarted agent adopts its pods.

Layout under ``<state>/agent``::

    host-paths.json                      mount targets the agent created on the host
    nodes/<node>/pods/<uid>/pod.json     the pod's record (sandbox, allocations, progress)
    nodes/<node>/pods/<uid>/etc/         hosts, resolv.conf, hostname
    nodes/<node>/pods/<uid>/volumes/     emptyDir, configMap, secret, projected ... contents
    nodes/<node>/pods/<uid>/containers/<name>/<attempt>/
        spec.json  shim.json  run.json  exit.json  container.log  termination-log
"""
from __future__ import annotations

import json
import os
import shutil
import threading
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..paths import State


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` to ``path`` atomically (readers see old or new, never half)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    """The JSON in ``path`` or None when it is missing or unreadable."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


@dataclass
class PodRecord:
    """The agent's persistent knowledge of one pod."""

    uid: str
    namespace: str
    name: str
    start_time: str
    host_network: bool = False
    netns: str | None = None
    veth: str | None = None
    ip: str | None = None
    gpus: list[int] = field(default_factory=list)
    sandbox_ready: bool = False
    sandbox_at: float = 0.0
    initialized: bool = False
    terminal_phase: str | None = None
    terminal_reason: str | None = None
    terminal_message: str | None = None
    torn_down: bool = False

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PodRecord":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


class NodeStore:
    """The persistent directory of one node."""

    def __init__(self, state: State, node: str):
        self.root = state.agent / "nodes" / node
        self.pods_dir = self.root / "pods"
        self.pods_dir.mkdir(parents=True, exist_ok=True)

    def pod_dir(self, uid: str) -> Path:
        return self.pods_dir / uid

    def save(self, record: PodRecord) -> None:
        write_json(self.pod_dir(record.uid) / "pod.json", asdict(record))

    def load(self, uid: str) -> PodRecord | None:
        data = read_json(self.pod_dir(uid) / "pod.json")
        return PodRecord.from_dict(data) if isinstance(data, dict) else None

    def records(self) -> list[PodRecord]:
        """Every persisted pod record of this node."""
        out = []
        for d in sorted(self.pods_dir.iterdir()):
            rec = self.load(d.name)
            if rec is not None:
                out.append(rec)
        return out

    def remove(self, uid: str) -> None:
        """Forget a pod entirely (its logs included)."""
        shutil.rmtree(self.pod_dir(uid), ignore_errors=True)


class HostPathRegistry:
    """Paths the agent created on the host as mount targets, with their users.

    A path is removed (only if still empty) when the last pod using it is gone.
    Shared by all nodes of the agent process.
    """

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()

    def _load(self) -> dict[str, dict[str, Any]]:
        data = read_json(self.path)
        return data if isinstance(data, dict) else {}

    def ensure(self, owner: str, target: str, is_file: bool) -> None:
        """Make ``target`` exist (a directory, or an empty file), recording what was created;
        ``owner`` becomes a user of every recorded path on the way, created now or before."""
        with self._lock:
            entries = self._load()
            parts = Path(target).parts
            for i in range(2, len(parts) + 1):
                p = str(Path(*parts[:i]))
                last = i == len(parts)
                if not os.path.lexists(p):
                    if last and is_file:
                        Path(p).touch(mode=0o644)
                    else:
                        os.mkdir(p, 0o755)
                    entries[p] = {"file": last and is_file, "owners": []}
                if p in entries and owner not in entries[p]["owners"]:
                    entries[p]["owners"].append(owner)
            write_json(self.path, entries)

    def release(self, owner: str) -> None:
        """Drop ``owner``; remove the paths nobody uses any more (deepest first, if empty)."""
        with self._lock:
            entries = self._load()
            for p, entry in entries.items():
                if owner in entry["owners"]:
                    entry["owners"].remove(owner)
            for p in sorted(entries, key=lambda s: s.count("/"), reverse=True):
                if not entries[p]["owners"]:
                    _remove_if_empty(p, entries[p]["file"])
                    del entries[p]
            write_json(self.path, entries)

    def release_all(self) -> None:
        """Remove every recorded path that is empty (used by cleanup)."""
        with self._lock:
            entries = self._load()
            for p in sorted(entries, key=lambda s: s.count("/"), reverse=True):
                _remove_if_empty(p, entries[p]["file"])
            write_json(self.path, {})


def _remove_if_empty(path: str, is_file: bool) -> None:
    try:
        if is_file:
            if os.path.isfile(path) and os.path.getsize(path) == 0:
                os.unlink(path)
        elif os.path.isdir(path) and not os.path.ismount(path):
            os.rmdir(path)
    except OSError:
        pass  # not empty, or in use: leave it
