"""`make cluster-down` leaves nothing behind. Runs last (make test's second pytest run)."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from devcluster import cluster, procs
from devcluster.paths import BRIDGE, State

pytestmark = pytest.mark.teardown


def _pids_using(root: Path) -> list[str]:
    """Processes whose command line or working directory points into the state dir."""
    hits = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = str((p / "cwd").resolve())
        except OSError:
            continue
        if str(root) in cmd or cwd.startswith(str(root)):
            hits.append(f"{p.name}: {cmd[:120]}")
    return hits


def test_cluster_down_leaves_nothing_running():
    state = State.default()
    assert state.kubeconfig.exists(), "the devcluster was never started in this checkout"
    rc = subprocess.run(["make", "cluster-down"], cwd=cluster.REPO, capture_output=True, text=True)
    assert rc.returncode == 0, rc.stderr
    for name in ["s3"] + cluster.CONTROL_PLANE + cluster.NODE_SIDE:
        assert procs.running_pid(state, name) is None, f"{name} still running"
    assert _pids_using(state.root) == []
    mounts = Path("/proc/self/mounts").read_text()
    assert str(state.root) not in mounts and "s3fs" not in mounts
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert "kl-" not in netns, netns
    assert subprocess.run(["ip", "link", "show", BRIDGE], capture_output=True).returncode != 0
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    assert "KUBE-" not in rules, "kube-proxy's rules are still there"
    assert "KUBELAB-" not in rules, "the NetworkPolicy agent's rules are still there"
    assert not cluster.status(state)["running"]
