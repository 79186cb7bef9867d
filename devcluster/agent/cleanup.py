"""Remove everything the node agent left on the machine (for ``make cluster-down``)."""
from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from .. import procs
from ..paths import State
from .cgroups import CGROUP_ROOT, CONTROLLERS, HIERARCHY, kill_pids, remove_tree, tree_pids
from .containers import SHIM, proc_start_ticks
from .mounts import SharedMounts
from .network import NETNS_DIR, list_agent_netns, list_agent_veths, teardown_pod_network
from .store import HostPathRegistry, read_json

log = logging.getLogger(__name__)

AGENT_DAEMON = "node-agent"


def _shim_pids(agent_dir: Path) -> set[int]:
    """Shim processes whose spec lies under ``agent_dir``."""
    pids = set()
    prefix = str(agent_dir) + "/"
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        args = [a.decode(errors="replace") for a in argv if a]
        if len(args) >= 3 and args[-2] == str(SHIM) and args[-1].startswith(prefix):
            pids.add(int(entry))
    return pids


def _container_groups(agent_dir: Path) -> set[int]:
    """Process groups of containers whose shim still runs (for hosts without a pids cgroup)."""
    groups = set()
    for run_file in agent_dir.glob("nodes/*/pods/*/containers/*/*/run.json"):
        shim = read_json(run_file.with_name("shim.json")) or {}
        run = read_json(run_file) or {}
        if shim.get("pid") and run.get("pid") and proc_start_ticks(shim["pid"]) == shim.get("ticks"):
            groups.add(int(run["pid"]))
    return groups


def _kill_cgroups() -> None:
    for _ in range(5):
        pids: set[int] = set()
        for c in CONTROLLERS:
            pids |= tree_pids(CGROUP_ROOT / c / HIERARCHY)
        if not pids:
            return
        kill_pids(pids)
        time.sleep(0.2)


def _unmount_netns_dir() -> None:
    """``ip netns add`` turned /run/netns into a mount point; undo it once it is empty."""
    try:
        mounted = any(line.split()[1] == str(NETNS_DIR) for line in Path("/proc/self/mounts").read_text().splitlines())
        if mounted and not os.listdir(NETNS_DIR):
            subprocess.run(["umount", str(NETNS_DIR)], check=False, capture_output=True)
            os.rmdir(NETNS_DIR)
    except OSError as e:
        log.warning("leaving %s: %s", NETNS_DIR, e)


def cleanup(state: State) -> None:
    """Stop the agent, kill every pod process and shim, delete netns, veths, kubelab
    cgroups and the mount points the agent created, and forget all pods.

    Mounts of volumes live only in the shims' private mount namespaces, so they
    vanish with the shims; what pods propagated to the host (mountPropagation
    Bidirectional, e.g. s3fs's FUSE mount in a node root) and the shared binds
    the agent made for that are lazily unmounted here, before anything is removed.
    The node roots (node-local host paths) stay, like a machine's disk.
    """
    procs.stop(state, AGENT_DAEMON)
    agent_dir = state.agent
    for pgid in _container_groups(agent_dir) if agent_dir.is_dir() else ():
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    _kill_cgroups()
    if agent_dir.is_dir():
        kill_pids(_shim_pids(agent_dir))
    _kill_cgroups()
    for veth in list_agent_veths():
        teardown_pod_network(None, veth)
    for ns in list_agent_netns():
        teardown_pod_network(ns, None)
    _unmount_netns_dir()
    unmounted = SharedMounts(agent_dir / "shared-mounts.json").release_all(
        [str(state.root / "nodes"), str(agent_dir)])
    if unmounted:
        log.info("unmounted %s", ", ".join(unmounted))
    for c in CONTROLLERS:
        remove_tree(CGROUP_ROOT / c / HIERARCHY)
    if agent_dir.is_dir():
        HostPathRegistry(agent_dir / "host-paths.json").release_all()
        shutil.rmtree(agent_dir / "nodes", ignore_errors=True)
