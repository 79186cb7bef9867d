"""cgroup v1 hierarchies for containers: /sys/fs/cgroup/<controller>/kubelab/<pod uid>/<container>.

The memory controller enforces ``limits.memory`` (OOM kills show as
OOMKilled); cpu enforces ``limits.cpu`` as a CFS quota; pids is used to find
every process of a container, so none escapes a kill.
"""
from __future__ import annotations

import logging
import math
import os
import signal
from pathlib import Path
from typing import Any

from .quantity import container_resource

log = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
HIERARCHY = "kubelab"
CONTROLLERS = ("memory", "pids", "cpu")
CFS_PERIOD_US = 100_000


def _writable_root(controller: str) -> Path | None:
    base = CGROUP_ROOT / controller
    if not (base / "cgroup.procs").exists():
        return None
    root = base / HIERARCHY
    try:
        root.mkdir(exist_ok=True)
    except OSError as e:
        log.warning("cgroup controller %s unusable (%s); skipping it", controller, e)
        return None
    return root


class Cgroups:
    """The agent's cgroup hierarchies (the controllers that are writable)."""

    def __init__(self) -> None:
        self.roots: dict[str, Path] = {}
        for c in CONTROLLERS:
            root = _writable_root(c)
            if root is not None:
                self.roots[c] = root
        if "memory" not in self.roots:
            log.warning("no writable memory cgroup: memory limits are not enforced")

    def container_dirs(self, uid: str, name: str) -> dict[str, Path]:
        return {c: root / uid / name for c, root in self.roots.items()}

    def create(self, uid: str, name: str, container: dict[str, Any]) -> dict[str, Path]:
        """Fresh cgroups for one run of a container, with its limits applied."""
        dirs = self.container_dirs(uid, name)
        for controller, d in dirs.items():
            if d.exists():
                remove_tree(d)
            d.mkdir(parents=True, exist_ok=True)
        mem = container_resource(container, "limits", "memory")
        if mem is not None and "memory" in dirs:
            limit = str(int(mem))
            (dirs["memory"] / "memory.limit_in_bytes").write_text(limit)
            memsw = dirs["memory"] / "memory.memsw.limit_in_bytes"
            if memsw.exists():
                try:
                    memsw.write_text(limit)
                except OSError:
                    pass  # swap accounting off: the plain limit is enough
        cpu = container_resource(container, "limits", "cpu")
        if cpu is not None and cpu > 0 and "cpu" in dirs:
            (dirs["cpu"] / "cpu.cfs_period_us").write_text(str(CFS_PERIOD_US))
            (dirs["cpu"] / "cpu.cfs_quota_us").write_text(str(max(1000, math.ceil(cpu * CFS_PERIOD_US))))
        return dirs

    def pod_pids(self, uid: str) -> set[int]:
        """Every process in any cgroup of the pod."""
        pids: set[int] = set()
        for root in self.roots.values():
            pids |= tree_pids(root / uid)
        return pids

    def remove_pod(self, uid: str) -> None:
        for root in self.roots.values():
            remove_tree(root / uid)


def tree_pids(path: Path) -> set[int]:
    """The processes in cgroup ``path`` and its descendants."""
    pids: set[int] = set()
    if not path.is_dir():
        return pids
    for dirpath, _dirs, files in os.walk(path):
        if "cgroup.procs" in files:
            try:
                text = Path(dirpath, "cgroup.procs").read_text()
            except OSError:
                continue
            pids |= {int(p) for p in text.split()}
    return pids


def kill_pids(pids: set[int], sig: int = signal.SIGKILL) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def remove_tree(path: Path) -> None:
    """rmdir a cgroup and its children, deepest first; busy ones are logged and kept."""
    if not path.is_dir():
        return
    for dirpath, _dirs, _files in sorted(os.walk(path), key=lambda t: t[0].count("/"), reverse=True):
        try:
            os.rmdir(dirpath)
        except OSError as e:
            log.warning("cannot remove cgroup %s: %s", dirpath, e)

