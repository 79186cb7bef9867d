"""Spawn benchmark (`make bench-spawn`): KubelabSpawner vs stock KubeSpawner, side by side.

Same devcluster, same hub, same image; stock KubeSpawner runs with
enable_user_namespaces. Prints first-spawn and respawn latency p50/p95 for
each, their ratios, apiserver requests per spawn (from the apiserver's audit
log of the hub's ServiceAccount), and N concurrent KubelabSpawner spawns:
failures and time until all are ready. Figures, not assertions.
"""
from __future__ import annotations

import concurrent.futures as cf
import json
import os
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from devcluster import cluster  # noqa: E402
from devcluster import hub as devhub  # noqa: E402
from devcluster.paths import State  # noqa: E402
from tests.hubclient import Hub  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_SPAWN_ROUNDS", "5"))
CONCURRENT = int(os.environ.get("BENCH_CONCURRENT", "50"))


def pct(values: list[float], q: float) -> float:
    v = sorted(values)
    return round(v[min(len(v) - 1, int(round(q * (len(v) - 1))))], 2)


def audit_lines(state: State) -> int:
    try:
        with open(state.logs / "audit-hub.log", "rb") as f:
            return sum(1 for _ in f)
    except OSError:
        return 0


def timed_spawn(hub: Hub, user: str) -> float:
    t0 = time.monotonic()
    hub.spawn(user)
    return time.monotonic() - t0


def measure(state: State, spawner: str, run: str) -> dict:
    devhub.down(state)
    hub = Hub(devhub.up(state, spawner=spawner), devhub.test_token(state))
    first, again, requests = [], [], []
    users = [f"b{spawner[:4]}{run}{i}" for i in range(ROUNDS)]
    for u in users:
        hub.ensure_user(u)
        before = audit_lines(state)
        first.append(timed_spawn(hub, u))
        requests.append(audit_lines(state) - before)
        hub.stop(u)
        again.append(timed_spawn(hub, u))
        hub.stop(u)
    for u in users:
        hub.delete_user(u)
    return {"first_spawn_p50_s": pct(first, 0.5), "first_spawn_p95_s": pct(first, 0.95),
            "respawn_p50_s": pct(again, 0.5), "respawn_p95_s": pct(again, 0.95),
            "apiserver_requests_per_first_spawn": round(sum(requests) / len(requests), 1)}


def concurrent(state: State, run: str) -> dict:
    devhub.down(state)
    hub = Hub(devhub.up(state), devhub.test_token(state))
    users = [f"c{run}{i}" for i in range(CONCURRENT)]
    for u in users:
        hub.ensure_user(u)
    t0 = time.monotonic()
    failures = []

    def one(u: str) -> None:
        try:
            hub.start(u).raise_for_status()
            hub.wait_ready(u, timeout=900)
        except Exception as e:  # noqa: BLE001 - counted, not raised
            failures.append(f"{u}: {e}")
    with cf.ThreadPoolExecutor(max_workers=CONCURRENT) as pool:
        list(pool.map(one, users))
    elapsed = time.monotonic() - t0
    with cf.ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(hub.delete_user, users))
    return {"spawns": CONCURRENT, "failures": len(failures), "seconds_until_all_ready": round(elapsed, 1),
            "first_failures": failures[:3]}


def main() -> None:
    state = State.default()
    if not cluster.status(state)["running"]:
        cluster.up(state)
    run = uuid.uuid4().hex[:4]
    report = {"rounds": ROUNDS}
    report["kubespawner"] = measure(state, "kubespawner", run)
    report["kubelab"] = measure(state, "kubelab", run)
    k, s = report["kubelab"], report["kubespawner"]
    report["ratio_kubelab_over_kubespawner"] = {
        key: round(k[key] / s[key], 2) for key in k if s.get(key)}
    report["concurrent"] = concurrent(state, run)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
