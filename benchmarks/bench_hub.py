"""Hub admin benchmark (`make bench-hub`): figures, not assertions.

On devcluster with JupyterHub and the kubelab-admin service, with ``--users``
(1,000) extra hub users ``adm-bench-NNNN``, each with a user namespace
(labelled ``kubelab.io/user-namespace=true``, built by kubelab's own manifest
builders) holding a ResourceQuota, as the spawner would make them:

1. the admin overview, ``GET /services/kubelab-admin/api/users`` with an admin
   token, ``--requests`` times one after another (after 2 warm-up requests):
   p50/p95/max wall time, response size and rows. The service answers it with
   one paginated listing of hub users (pages fetched concurrently) and one
   cluster-wide LIST per kind (namespaces, quotas, cronjobs, jobs, deployments);
2. for scale, the same quota data fetched the naive way: one GET per namespace
   (sequential, once), as a per-namespace client would;
3. the resource-groups page's API (``api/resource-groups``: nodes and pods,
   independent of the number of users), ``--requests`` times.

Setup is timed too (bulk user creation through the hub API, namespaces and
quotas applied from 8 threads). Everything made is removed at the end (hub
users deleted; namespaces deleted, and waited for up to ``--cleanup-timeout``
seconds), unless ``--keep``.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import sys
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from devcluster import hub as devhub  # noqa: E402
from devcluster.kube import ApiError, Client  # noqa: E402
from devcluster.paths import State  # noqa: E402
from kubelab.core import manifests  # noqa: E402
from common import fmt, hub_up, machine, pct, say  # noqa: E402

SERVICE = "/services/kubelab-admin"
PREFIX = "adm-bench-"
QUOTA = {"requests.cpu": "4", "limits.cpu": "8", "requests.memory": "8Gi", "limits.memory": "16Gi", "pods": "20",
         "count/jobs.batch": "20", "count/cronjobs.batch": "10"}


def admin_service_up(url: str) -> bool:
    try:
        r = requests.get(f"{url}{SERVICE}/api/capacity", timeout=10)
        return r.status_code == 401 and r.json().get("code") == 401
    except (requests.RequestException, ValueError):
        return False


def timed(fn, *a, **kw):
    t = time.monotonic()
    out = fn(*a, **kw)
    return time.monotonic() - t, out


def create_users(hub, names: list[str]) -> int:
    existing = set()
    offset = 0
    while True:
        r = hub.api("GET", "/users", params={"offset": offset, "limit": 200},
                    headers={"Accept": "application/jupyterhub-pagination+json"})
        r.raise_for_status()
        body = r.json()
        existing |= {u["name"] for u in body["items"]}
        nxt = body.get("_pagination", {}).get("next")
        if not nxt:
            break
        offset = nxt["offset"]
    missing = [n for n in names if n not in existing]
    for i in range(0, len(missing), 200):
        r = hub.api("POST", "/users", json={"usernames": missing[i:i + 200]})
        assert r.status_code == 201, r.text
    return len(missing)


def apply_namespaces(kube: Client, names: list[str]) -> None:
    def one(user: str) -> None:
        ns = f"kubelab-{user}"
        kube.apply(Client.path("v1", "namespaces", name=ns), manifests.namespace(ns, user), "kubelab-bench")
        kube.apply(Client.path("v1", "resourcequotas", ns, "kubelab-quota"),
                   manifests.resource_quota(ns, user, QUOTA), "kubelab-bench")
    with cf.ThreadPoolExecutor(8) as pool:
        list(pool.map(one, names))


def cleanup(hub, kube: Client, names: list[str], timeout: float) -> tuple[float, int]:
    t = time.monotonic()
    with cf.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: hub.api("DELETE", f"/users/{n}"), names))
        list(pool.map(lambda n: kube.delete(Client.path("v1", "namespaces", name=f"kubelab-{n}")), names))
    deadline = time.monotonic() + timeout
    left = len(names)
    while time.monotonic() < deadline:
        left = len([n for n in kube.list("/api/v1/namespaces")["items"]
                    if n["metadata"]["name"].startswith(f"kubelab-{PREFIX}")])
        if not left:
            break
        time.sleep(5)
    return time.monotonic() - t, left


def series(session: requests.Session, url: str, n: int) -> tuple[list[float], int, int]:
    for _ in range(2):
        session.get(url, timeout=300).raise_for_status()
    walls, size, rows = [], 0, 0
    for _ in range(n):
        t = time.monotonic()
        r = session.get(url, timeout=300)
        walls.append(time.monotonic() - t)
        r.raise_for_status()
        size = len(r.content)
        body = r.json()
        rows = len(body.get("users") or body.get("groups") or [])
    return walls, size, rows


def line(label: str, walls: list[float], extra: str = "") -> None:
    ms = [w * 1000 for w in walls]
    say(f"  {label:<34} p50 {fmt(pct(ms, 0.5), 7, 0)} ms   p95 {fmt(pct(ms, 0.95), 7, 0)} ms   "
        f"max {fmt(max(ms), 7, 0)} ms   n={len(ms)}{extra}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, default=1000, help="hub users and user namespaces to add")
    ap.add_argument("--requests", type=int, default=30, help="timed requests per series")
    ap.add_argument("--keep", action="store_true", help="leave the users and namespaces in place")
    ap.add_argument("--cleanup-timeout", type=float, default=600)
    args = ap.parse_args()

    state = State.default()
    hub = hub_up(state)
    if not admin_service_up(hub.url):
        say("the running hub has no kubelab-admin service (older config): restarting the hub")
        devhub.down(state)
        devhub.up(state)
    kube = Client.from_kubeconfig(state.kubeconfig)
    say("kubelab hub admin benchmark (figures, not assertions)")
    say(machine())
    version = kube.get("/version").get("gitVersion")
    before_ns = len(kube.list("/api/v1/namespaces", labelSelector="kubelab.io/user-namespace=true")["items"])
    say(f"devcluster Kubernetes {version}; {before_ns} user namespaces before the benchmark (shared cluster: "
        "others' tests add noise)")

    names = [f"{PREFIX}{i:04d}" for i in range(1, args.users + 1)]
    t_users, made = timed(create_users, hub, names)
    t_ns, _ = timed(apply_namespaces, kube, names)
    say(f"setup: {made} hub users created in {t_users:.1f} s (bulk POST /hub/api/users, 200 a request); "
        f"{len(names)} namespaces + ResourceQuotas applied in {t_ns:.1f} s (8 threads)")
    r = hub.api("POST", "/users/admin/tokens", json={"note": "bench-hub", "expires_in": 3600})
    r.raise_for_status()
    s = requests.Session()
    s.trust_env = False
    s.headers["Authorization"] = f"token {r.json()['token']}"
    try:
        total_users = hub.api("GET", "/users", params={"limit": 1},
                              headers={"Accept": "application/jupyterhub-pagination+json"}).json()["_pagination"]["total"]
        say(f"hub users now: {total_users}; user namespaces now: "
            f"{len(kube.list('/api/v1/namespaces', labelSelector='kubelab.io/user-namespace=true')['items'])}")

        say("\n1. admin overview (GET api/users), sequential requests")
        walls, size, rows = series(s, f"{hub.url}{SERVICE}/api/users", args.requests)
        line("overview", walls, f"   {rows} rows, {size / 1024:.0f} KiB")

        say("\n2. the same quotas, one GET per namespace (sequential, once)")
        t0 = time.monotonic()
        for n in names:
            try:
                kube.get(Client.path("v1", "resourcequotas", f"kubelab-{n}", "kubelab-quota"))
            except ApiError:
                pass
        naive = time.monotonic() - t0
        say(f"  {len(names)} quota GETs                      {naive * 1000:7.0f} ms in all "
            f"({naive * 1000 / len(names):.1f} ms each); the overview lists them in one request")

        say("\n3. resource groups (GET api/resource-groups), sequential requests")
        walls, size, rows = series(s, f"{hub.url}{SERVICE}/api/resource-groups", args.requests)
        line("resource groups", walls, f"   {rows} groups, {size / 1024:.0f} KiB")
    finally:
        if args.keep:
            say(f"\nkept {len(names)} users and namespaces ({PREFIX}*)")
        else:
            t_clean, left = cleanup(hub, kube, names, args.cleanup_timeout)
            say(f"\ncleanup: {len(names)} users and namespaces deleted in {t_clean:.0f} s"
                + (f" ({left} namespaces still terminating)" if left else ""))


if __name__ == "__main__":
    main()
