"""devcluster benchmark (`make bench-cluster`): figures, not assertions.

Prints: cold build time and binary size of the control plane (from the build
cache's record), warm `up` time to all nodes Ready, pod create -> Running
p50/p95 over 50 pods, and node-agent CPU/memory idle and with 50 pods.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from devcluster import cluster, procs  # noqa: E402
from devcluster.kube import ApiError, Client  # noqa: E402
from devcluster.paths import State  # noqa: E402

N_PODS = int(os.environ.get("BENCH_PODS", "50"))
TICK = os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def cpu_rss(pid: int) -> tuple[float, int]:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / TICK
    rss = int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return cpu, rss


def agent_usage(state: State, seconds: float = 10.0) -> dict:
    pid = procs.running_pid(state, "node-agent")
    c0, _ = cpu_rss(pid)
    time.sleep(seconds)
    c1, rss = cpu_rss(pid)
    return {"cpu_percent": round(100 * (c1 - c0) / seconds, 1), "rss_mib": round(rss / 2**20, 1)}


def main() -> None:
    state = State.default()
    report: dict = {}
    build = next(iter(Path(cluster.clusterbin()).parent.glob("build.json")), None)
    if build:
        report["clusterbin"] = json.loads(build.read_text())
    if cluster.status(state)["running"]:
        cluster.down(state)
    t0 = time.monotonic()
    cluster.up(state)
    report["warm_up_seconds_to_all_nodes_ready"] = round(time.monotonic() - t0, 1)

    admin = Client.from_kubeconfig(state.kubeconfig)
    time.sleep(5)
    report["agent_idle"] = agent_usage(state)

    ns = f"bench-{int(time.time())}"
    admin.create("/api/v1/namespaces", {"metadata": {"name": ns}})
    while True:
        try:
            admin.get(f"/api/v1/namespaces/{ns}/serviceaccounts/default")
            break
        except ApiError:
            time.sleep(0.2)
    created: dict[str, float] = {}
    for i in range(N_PODS):
        name = f"p{i}"
        admin.create(f"/api/v1/namespaces/{ns}/pods", {
            "metadata": {"name": name},
            "spec": {"containers": [{"name": "main", "image": "python:3.11",
                                     "command": ["python", "-c", "import time; time.sleep(3600)"],
                                     "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}})
        created[name] = time.monotonic()
    running: dict[str, float] = {}
    deadline = time.monotonic() + 600
    while len(running) < N_PODS and time.monotonic() < deadline:
        for p in admin.list(f"/api/v1/namespaces/{ns}/pods")["items"]:
            n = p["metadata"]["name"]
            if n not in running and p["status"].get("phase") == "Running":
                running[n] = time.monotonic()
        time.sleep(0.25)
    lat = [running[n] - created[n] for n in running]
    report["pod_create_to_running"] = {
        "pods": N_PODS, "running": len(running),
        "p50_s": round(pct(lat, 0.5), 2) if lat else None, "p95_s": round(pct(lat, 0.95), 2) if lat else None}
    report[f"agent_with_{N_PODS}_pods"] = agent_usage(state)
    admin.delete(f"/api/v1/namespaces/{ns}")
    print(json.dumps(report, indent=2))
    if report["agent_idle"]["rss_mib"]:
        print(f"agent RSS ratio {N_PODS} pods / idle: "
              f"{report[f'agent_with_{N_PODS}_pods']['rss_mib'] / report['agent_idle']['rss_mib']:.2f}")


if __name__ == "__main__":
    main()
