"""Datasets and model-serving benchmark (`make bench-data`): figures, not assertions.

Measured side by side in one run, on devcluster with JupyterHub + KubelabSpawner
(user ``wl-benchdata``, resource group ``cpu``), against what a user would do
without kubelab:

1. the first page of a 100,000-object prefix: ``GET datasets/browse?prefix=
   datasets/bench100k/&page_size=100`` (one S3 ListObjectsV2) against listing
   the same folder through an s3fs mount of the bucket (``os.scandir``: time to
   the first entry and to the first 100; s3fs lists the whole folder, and
   stats what it lists, before it returns the first entry). The 100,000 small
   objects are written once with the platform's S3 credentials (a thread pool
   of PutObject) and reused afterwards. S3 requests per page: the API's own
   ``s3_requests``, and MinIO's request counters around each listing;
2. previewing a ~1 GiB Parquet file (``datasets/bench1g/data.parquet``, made
   once with pyarrow: random numbers and strings, several row groups, uploaded
   multipart; reused afterwards): ``GET datasets/preview?key=...&rows=50``
   (byte ranges through pyarrow) against pyarrow/pandas reading the first 50
   rows of the same file through the s3fs mount
   (``ParquetFile(path).iter_batches(batch_size=50)``, first batch, to pandas);
   bytes read from S3 for both (the API's ``bytes_read``; MinIO's sent bytes);
3. deploy -> Ready: a small ONNX model (LogisticRegression on iris, trained in
   the user's kernel, converted with skl2onnx, registered), ``POST services``
   until ``GET services/<name>`` says Ready, ``--deploy-rounds`` times (deleted
   in between), broken down from a watch on the service's pods (pod created,
   scheduled, model fetched by the init container, server started, Ready) and
   the model server's log (model loaded, uvicorn listening);
4. inference: kubelab's model server (``python -m kubelab.server_extension.serving
   --format sklearn``, KServe ModelServer, V2 REST) against ``mlflow models
   serve`` (``--env-manager local``, MLflow in its own virtualenv under
   ``~/.cache/kubelab/bench-mlflow``, never in the project's) on the SAME
   scikit-learn model (one fitted LogisticRegression: joblib for kubelab, MLflow's
   sklearn flavour for MLflow), both local processes on 127.0.0.1, same client,
   alternating: single-row requests one at a time (p50/p99) and from
   ``--threads`` threads at once (requests/s), ``--duration`` seconds each; and
   the deployed ONNX service through the cluster (its Service address from the
   host, and the REST API's ``services/<name>/predict``), measured before the
   local part while the user's server is still up.

About 6 minutes with the defaults once the data exist (the s3fs listings of
100,000 objects are most of it; ``--s3fs-rounds``); making them the first time
adds ~5 minutes (100,000 PutObject at a few hundred a second here) and ~20 s
(the Parquet file), installing MLflow ~40 s. ``--skip-100k``, ``--skip-1g``,
``--skip-serving``, ``--skip-inference``, ``--skip-mlflow`` leave parts out.

Everything runs on one 2-core machine (client, servers, MinIO, the cluster):
the figures are relative, and other users' tests on the shared cluster add
noise (the load average is printed). MinIO's counters are the whole server's,
so they include others' traffic during the measured operation. Cleaned up at the
end: the service and the model are deleted, the server stopped, the s3fs mount
removed; the two data sets and the MLflow virtualenv stay for the next run.
"""
from __future__ import annotations

import argparse
import base64
import concurrent.futures as cf
import datetime as dt
import hashlib
import hmac
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from devcluster import s3 as devs3  # noqa: E402
from devcluster.kube import Client, list_watch  # noqa: E402
from devcluster.paths import State  # noqa: E402
from tests.hubclient import Hub  # noqa: E402
from common import admin_s3, diff, fmt, hub_up, machine, pct, say  # noqa: E402
from tests.server_extension.conftest import UserServer  # noqa: E402

USER = "wl-benchdata"
PREFIX_100K, N_100K = "datasets/bench100k/", 100_000
KEY_1G = "datasets/bench1g/data.parquet"
TARGET_1G = 1024**3
ROWS_PER_GROUP = 2_000_000
MODEL, SERVICE = "bench-iris", "bench-iris"
SERVICE_LABEL = "kubelab.io/inference-service"   # kubelab.core.models.SERVICE_LABEL
MODEL_DIR = "bench/models/onnx"
MLFLOW_VENV = Path(os.environ.get("KUBELAB_CACHE", Path.home() / ".cache" / "kubelab")) / "bench-mlflow"
MiB = 1024 * 1024

TRAIN_ONNX = f"""
import os, json, numpy as np
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from skl2onnx import to_onnx
X, y = load_iris(return_X_y=True)
X = X.astype(np.float32)
os.makedirs({MODEL_DIR!r}, exist_ok=True)
lr = LogisticRegression(max_iter=500).fit(X, y)
open({MODEL_DIR!r} + "/model.onnx", "wb").write(to_onnx(lr, X[:1], options={{"zipmap": False}}).SerializeToString())
print(json.dumps({{"rows": X[[0, 60, 120]].tolist(), "pred": lr.predict(X[[0, 60, 120]]).tolist()}}))
"""


# --- small helpers ----------------------------------------------------------------------------


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def human(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


# --- S3: the platform's client and MinIO's live request counters ------------------------------


class MinioCounters:
    """MinIO's own request counters (metrics v3, live; v2's are refreshed every 10 s),
    read with a Prometheus bearer token signed by the root credentials."""

    URL = f"{devs3.ENDPOINT}/minio/metrics/v3/api/requests"

    def __init__(self, state: State):
        env = devs3.env(state)
        b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()  # noqa: E731
        head = b64(json.dumps({"alg": "HS512", "typ": "JWT"}).encode())
        body = b64(json.dumps({"exp": int(time.time()) + 6 * 3600, "sub": env["AWS_ACCESS_KEY_ID"],
                               "iss": "prometheus"}).encode())
        sig = b64(hmac.new(env["AWS_SECRET_ACCESS_KEY"].encode(), f"{head}.{body}".encode(),
                           hashlib.sha512).digest())
        self.s = requests.Session()
        self.s.trust_env = False
        self.s.headers["Authorization"] = f"Bearer {head}.{body}.{sig}"
        self.ok = self.snapshot() is not None

    def snapshot(self) -> dict[str, float] | None:
        try:
            r = self.s.get(self.URL, timeout=5)
        except requests.RequestException:
            return None
        if r.status_code != 200:
            return None
        out: dict[str, float] = {}
        for line in r.text.splitlines():
            m = re.match(r'minio_api_requests_total\{name="(\w+)".*type="s3"\} (\S+)', line)
            if m:
                out[m.group(1)] = float(m.group(2))
            elif line.startswith("minio_api_requests_traffic_sent_bytes{") and 'type="s3"' in line:
                out["sent_bytes"] = float(line.split()[-1])
        return out

    @staticmethod
    def delta(a: dict | None, b: dict | None) -> dict[str, float]:
        if not a or not b:
            return {}
        return {k: b[k] - a.get(k, 0) for k in b if b[k] != a.get(k, 0)}


def list_ops(d: dict) -> float | None:
    return sum(v for k, v in d.items() if k.startswith("ListObjects")) if d else None


def requests_total(d: dict) -> float | None:
    return sum(v for k, v in d.items() if k != "sent_bytes") if d else None


# --- the cluster side ---------------------------------------------------------------------------


class BenchUser(UserServer):
    """UserServer whose requests wait out a restart of the shared hub/proxy (others' tests restart it);
    ``retried`` says a request had to, so a timed one is left out."""

    retried = False

    def api(self, method: str, path: str, **kw) -> requests.Response:
        deadline = time.monotonic() + 180
        while True:
            try:
                return super().api(method, path, **kw)
            except requests.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                self.retried = True
                say("  the hub/proxy did not answer (restarted by someone else?): retrying")
                time.sleep(3)


def spawn_user(hub: Hub, timeout: float = 360) -> None:
    """Start USER's server (if it is not running) and wait for it; others' tests may restart the
    shared hub meanwhile, so a refused connection is waited out rather than fatal."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            hub.ensure_user(USER)
            srv = hub.server(USER) or {}
            if srv.get("ready"):
                return
            if not srv.get("pending"):
                r = hub.start(USER, {"resource_group": "cpu"})
                if r.status_code not in (201, 202, 400):
                    raise RuntimeError(f"spawn of {USER} refused: {r.status_code} {r.text}")
            hub.wait_ready(USER)
            return
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                raise
            say("  the hub did not answer (restarted by someone else?): waiting")
            time.sleep(5)


class PodWatch:
    """When this process saw each step of the service's pods: created, scheduled, init container
    (model fetch) done, server container running, Ready."""

    def __init__(self, admin: Client, namespace: str):
        self.cv = threading.Condition()
        self.stop = threading.Event()
        self.pods: dict[str, dict] = {}
        listed = threading.Event()
        path = Client.path("v1", "pods", namespace)   # all of them (watch() takes no selector): filtered here

        def replace_all(items: list[dict]) -> None:
            items = [o for o in items if self._ours(o)]
            with self.cv:
                for obj in items:   # there before (or during a re-list): no "seen" time
                    self.pods.setdefault(obj["metadata"]["name"], {"seen": None})
            for obj in items:
                self._set(obj)
            listed.set()

        threading.Thread(target=list_watch, daemon=True, name="watch-service-pods", args=(
            admin, path, self.stop, replace_all, self._set, self._gone, "service-pods")).start()
        listed.wait(30)

    @staticmethod
    def _ours(pod: dict) -> bool:
        return (pod.get("metadata", {}).get("labels") or {}).get(SERVICE_LABEL) == SERVICE

    def _set(self, pod: dict) -> None:
        if not self._ours(pod):
            return
        now = time.time()
        st = pod.get("status", {})
        with self.cv:
            rec = self.pods.setdefault(pod["metadata"]["name"], {"seen": now})
            if pod.get("spec", {}).get("nodeName"):
                rec.setdefault("scheduled", now)
            init = (st.get("initContainerStatuses") or [{}])[0].get("state") or {}
            if "terminated" in init:
                rec.setdefault("fetched", now)
            main = (st.get("containerStatuses") or [{}])[0].get("state") or {}
            if "running" in main:
                rec.setdefault("running", now)
            if any(c.get("type") == "Ready" and c.get("status") == "True" for c in st.get("conditions") or []):
                rec.setdefault("ready", now)
            self.cv.notify_all()

    def _gone(self, pod: dict) -> None:
        if not self._ours(pod):
            return
        with self.cv:
            self.pods.setdefault(pod["metadata"]["name"], {"seen": None})["gone"] = time.time()
            self.cv.notify_all()

    def new_since(self, t: float) -> dict:
        with self.cv:
            recs = [p for p in self.pods.values() if p.get("seen") and p["seen"] >= t]
        return min(recs, key=lambda p: p["seen"]) if recs else {}

    def wait_all_gone(self, timeout: float) -> bool:
        with self.cv:
            return self.cv.wait_for(lambda: all("gone" in p for p in self.pods.values()), timeout)


# --- 1. first page of 100,000 objects ----------------------------------------------------------


def all_keys(client, bucket: str, prefix: str) -> set[str]:
    out, kw = set(), {"Bucket": bucket, "Prefix": prefix, "MaxKeys": 1000}
    while True:
        r = client.list_objects_v2(**kw)
        out |= {o["Key"] for o in r.get("Contents", [])}
        if not r.get("IsTruncated"):
            return out
        kw["ContinuationToken"] = r["NextContinuationToken"]


def ensure_100k(client, bucket: str) -> dict:
    t0 = time.monotonic()
    want = [f"{PREFIX_100K}part-{i:06d}.json" for i in range(N_100K)]
    # what is there: ten listings at once, one per 10,000 keys (part-00*, part-01*, ... part-09*)
    with cf.ThreadPoolExecutor(10) as pool:
        have = set().union(*pool.map(lambda d: all_keys(client, bucket, f"{PREFIX_100K}part-0{d}"), range(10)))
    listed = time.monotonic() - t0
    missing = sorted(set(want) - have)
    if not missing:
        say(f"  s3://{bucket}/{PREFIX_100K}: {len(have):,} objects already there (listed in {listed:.1f} s), reused")
        return {"created": 0, "seconds": 0.0}
    say(f"  s3://{bucket}/{PREFIX_100K}: {len(have):,} objects there, writing {len(missing):,} "
        "(PutObject, 48 threads)")
    t1, done = time.monotonic(), 0
    with cf.ThreadPoolExecutor(48) as pool:
        futs = [pool.submit(client.put_object, Bucket=bucket, Key=k, Body=f'{{"n": {k[-11:-5]}}}\n'.encode())
                for k in missing]
        for _ in cf.as_completed(futs):
            done += 1
            if done % 20_000 == 0:
                say(f"    {done:,}/{len(missing):,} after {time.monotonic() - t1:.0f} s (load {load()})")
    secs = time.monotonic() - t1
    say(f"  wrote {len(missing):,} objects in {secs:.1f} s ({len(missing) / secs:.0f} objects/s)")
    return {"created": len(missing), "seconds": secs}


def browse_rounds(user: UserServer, mount: Path, counters: MinioCounters, rounds: int, s3fs_rounds: int) -> dict:
    folder = mount / PREFIX_100K
    res: dict[str, list] = {"kubelab": [], "s3fs": []}
    params = {"prefix": PREFIX_100K, "page_size": 100}
    for i in range(rounds):
        order = ("kubelab", "s3fs") if i % 2 == 0 else ("s3fs", "kubelab")
        line = []
        for which in order:
            if which == "s3fs" and i >= s3fs_rounds:
                continue
            a = counters.snapshot()
            if which == "kubelab":
                user.retried = False
                t0 = time.perf_counter()
                r = user.api("GET", "datasets/browse", params=params)
                wall = None if user.retried else time.perf_counter() - t0
                doc = r.json() if r.ok else {}
                d = MinioCounters.delta(a, counters.snapshot())
                res["kubelab"].append({"wall": wall, "status": r.status_code, "s3_requests": doc.get("s3_requests"),
                                       "objects": len(doc.get("objects") or []), "more": bool(doc.get("next_token")),
                                       "minio": d})
                line.append(f"kubelab page {fmt(wall and wall * 1000, 0, 0)} ms ({r.status_code}, {len(doc.get('objects') or [])} "
                            f"objects, s3_requests {doc.get('s3_requests')}, MinIO saw {fmt(list_ops(d), 0, 0)} list)")
            else:
                t0 = time.perf_counter()
                it = os.scandir(folder)
                try:
                    first = next(it, None)
                    t_first = time.perf_counter() - t0
                    names = [first.name] if first else []
                    for e in it:
                        names.append(e.name)
                        if len(names) >= 100:
                            break
                    t_100 = time.perf_counter() - t0
                finally:
                    it.close()
                d = MinioCounters.delta(a, counters.snapshot())
                res["s3fs"].append({"first": t_first, "hundred": t_100, "entries": len(names), "minio": d})
                line.append(f"s3fs first entry {t_first:.2f} s, 100 entries {t_100:.2f} s (MinIO saw "
                            f"{fmt(list_ops(d), 0, 0)} list + {d.get('HeadObject', 0):.0f} HEAD)")
        say(f"  round {i + 1}/{rounds}: " + "; ".join(line) + f"; load {load()}")
    return res


# --- 2. preview of a 1 GiB Parquet file -----------------------------------------------------------


def ensure_1g(client, bucket: str) -> dict:
    import botocore.exceptions

    try:
        head = client.head_object(Bucket=bucket, Key=KEY_1G)
        if head["ContentLength"] >= 0.9 * TARGET_1G:
            say(f"  s3://{bucket}/{KEY_1G}: {human(head['ContentLength'])} already there, reused")
            return {"size": head["ContentLength"], "generated_s": 0.0, "uploaded_s": 0.0}
    except botocore.exceptions.ClientError:
        pass
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from boto3.s3.transfer import TransferConfig

    tmp = Path(tempfile.mkdtemp(prefix="bench-data-1g-"))
    path = tmp / "data.parquet"
    rng = np.random.default_rng(2026)
    cats = np.array(["books", "food", "games", "garden", "music", "sports", "tools", "toys"])

    def group(i: int):
        n = ROWS_PER_GROUP
        ids = np.arange(i * n, (i + 1) * n, dtype=np.int64)
        letters = rng.integers(97, 123, (n, 12), dtype=np.uint8)
        return pa.table({
            "id": ids, "ts": pa.array(np.datetime64("2025-01-01", "ms") + ids * 37_000),
            "amount": rng.normal(120, 30, n), "score": rng.random(n),
            "lat": rng.uniform(-90, 90, n), "lon": rng.uniform(-180, 180, n),
            "qty": rng.integers(0, 1000, n, dtype=np.int32),
            "category": pa.array(cats[rng.integers(0, len(cats), n)]),
            "user": pa.array(letters.view("S12").ravel(), pa.binary()).cast(pa.string())})

    try:
        t0 = time.monotonic()
        first = group(0)
        groups = 0
        with pq.ParquetWriter(path, first.schema) as w:   # snappy, pyarrow's defaults otherwise
            while path.stat().st_size < TARGET_1G:
                w.write_table(first if groups == 0 else group(groups), row_group_size=ROWS_PER_GROUP)
                groups += 1
        gen = time.monotonic() - t0
        size = path.stat().st_size
        say(f"  generated {human(size)} ({groups} row groups of {ROWS_PER_GROUP:,} rows, 9 columns) in {gen:.1f} s")
        t1 = time.monotonic()
        client.upload_file(str(path), bucket, KEY_1G, Config=TransferConfig(
            multipart_threshold=64 * MiB, multipart_chunksize=64 * MiB, max_concurrency=4))
        up = time.monotonic() - t1
        say(f"  uploaded to s3://{bucket}/{KEY_1G} (multipart, 64 MiB parts) in {up:.1f} s "
            f"({size / MiB / up:.0f} MiB/s)")
        return {"size": size, "generated_s": gen, "uploaded_s": up}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def first_rows_via_mount(path: Path, n: int) -> int:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    batch = next(pf.iter_batches(batch_size=n))
    return len(batch.to_pandas())


def preview_rounds(user: UserServer, mount: Path, counters: MinioCounters, rounds: int) -> dict:
    res: dict[str, list] = {"kubelab": [], "s3fs": []}
    t0 = time.perf_counter()   # the server's first preview also imports pyarrow: timed apart
    r = user.api("GET", "datasets/preview", params={"key": KEY_1G, "rows": 50}, timeout=120)
    res["cold"] = time.perf_counter() - t0
    say(f"  first preview in this server (untimed warm-up: it imports pyarrow): {res['cold']:.2f} s ({r.status_code})")
    for i in range(rounds):
        order = ("kubelab", "s3fs") if i % 2 == 0 else ("s3fs", "kubelab")
        line = []
        for which in order:
            a = counters.snapshot()
            user.retried = False
            t0 = time.perf_counter()
            if which == "kubelab":
                r = user.api("GET", "datasets/preview", params={"key": KEY_1G, "rows": 50}, timeout=120)
                wall = None if user.retried else time.perf_counter() - t0
                doc = r.json() if r.content else {}
                d = MinioCounters.delta(a, counters.snapshot())
                rec = {"wall": wall, "status": r.status_code, "bytes_read": doc.get("bytes_read"),
                       "s3_requests": doc.get("s3_requests"), "rows": len(doc.get("rows") or []),
                       "size": doc.get("size"), "row_groups": doc.get("row_groups"), "minio": d,
                       "message": doc.get("message")}
                line.append(f"kubelab preview {fmt(wall, 0)} s ({r.status_code}, {rec['rows']} rows, read "
                            f"{human(rec['bytes_read'])} in {rec['s3_requests']} S3 requests; MinIO sent "
                            f"{human(d.get('sent_bytes'))})" + (f" {rec['message']}" if rec["message"] else ""))
            else:
                try:
                    rows, err = first_rows_via_mount(mount / KEY_1G, 50), None
                except Exception as e:  # noqa: BLE001 - reported, the rest goes on
                    rows, err = 0, f"{type(e).__name__}: {e}"
                wall = time.perf_counter() - t0
                d = MinioCounters.delta(a, counters.snapshot())
                rec = {"wall": wall, "rows": rows, "minio": d, "error": err}
                line.append(f"s3fs first 50 rows {wall:.2f} s ({rows} rows; MinIO sent {human(d.get('sent_bytes'))} "
                            f"in {d.get('GetObject', 0):.0f} GET)" + (f" {err}" if err else ""))
            res[which].append(rec)
        say(f"  round {i + 1}/{rounds}: " + "; ".join(line) + f"; load {load()}")
    return res


# --- 3. deploy -> Ready -------------------------------------------------------------------------


def wait_service_gone(user: UserServer, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while user.api("GET", f"services/{SERVICE}").status_code != 404 and time.monotonic() < deadline:
        time.sleep(0.5)


def register_model(user: UserServer) -> dict:
    if user.api("DELETE", f"services/{SERVICE}").status_code in (200, 202, 204):
        wait_service_gone(user)
    user.api("DELETE", f"models/{MODEL}")
    t0 = time.monotonic()
    out = user.execute(TRAIN_ONNX, timeout=300)
    trained = json.loads(out.strip().splitlines()[-1])
    t1 = time.monotonic()
    doc = user.ok("POST", "models", 201, json={"name": MODEL, "path": MODEL_DIR,
                                               "description": "bench-data: iris LogisticRegression (ONNX)"},
                  timeout=300)
    t2 = time.monotonic()
    say(f"  trained + converted in the kernel in {t1 - t0:.1f} s; registered version {doc['version']} "
        f"({doc['format']}, validation {doc['validation']['status']}) in {t2 - t1:.1f} s")
    return {**trained, "version": doc["version"], "train_s": t1 - t0, "register_s": t2 - t1,
            "input": (doc.get("signature") or {}).get("inputs", [{}])[0]}


def deploy_rounds(user: UserServer, admin: Client, rounds: int, version: int) -> tuple[list[dict], dict]:
    watch = PodWatch(admin, user.namespace)
    res, last_status = [], {}
    try:
        for i in range(rounds):
            t_post = time.time()
            user.ok("POST", "services", 201, json={"name": SERVICE, "model": MODEL, "version": str(version)})
            t_resp = time.time()
            state, polls, t_ready = None, 0, None
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                last_status = user.ok("GET", f"services/{SERVICE}")
                polls += 1
                state = last_status.get("state")
                if state == "Ready":
                    t_ready = time.time()
                    break
                if state == "Failing":
                    break
                time.sleep(0.25)
            pod = watch.new_since(t_post)
            rec = {"t_post": t_post, "posted": diff(t_post, t_resp), "ready_api": diff(t_post, t_ready),
                   "state": state, "polls": polls,
                   **{k: diff(t_post, pod.get(k)) for k in ("seen", "scheduled", "fetched", "running", "ready")},
                   "load_s": None}
            marks = server_log_marks(admin, user.namespace, last_status)
            rec.update(load_s=marks["load_s"], loaded=diff(t_post, marks["loaded"]),
                       listening=diff(t_post, marks["listening"]))
            res.append(rec)
            say(f"  deploy {i + 1}/{rounds}: {state} after {fmt(rec['ready_api'], 0)} s "
                f"(POST answered {fmt(rec['posted'], 0)} s; pod created {fmt(rec['seen'], 0)} s, scheduled "
                f"{fmt(rec['scheduled'], 0)} s, model fetched {fmt(rec['fetched'], 0)} s, server running "
                f"{fmt(rec['running'], 0)} s, model loaded {fmt(rec['loaded'], 0)} s (load itself "
                f"{fmt(rec['load_s'], 0)} s), listening {fmt(rec['listening'], 0)} s, pod Ready {fmt(rec['ready'], 0)} s; "
                f"load {load()})")
            if state != "Ready":
                say(f"    problems: {last_status.get('problems')}")
            if i < rounds - 1 or state != "Ready":   # the last one stays for the cluster inference figures
                t_del = time.monotonic()
                user.api("DELETE", f"services/{SERVICE}")
                wait_service_gone(user)
                watch.wait_all_gone(120)
                rec["deleted_s"] = time.monotonic() - t_del
    finally:
        watch.stop.set()
    return res, last_status


def rfc3339(value: str) -> float | None:
    """A node agent log timestamp (RFC 3339, up to ns) as epoch seconds."""
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", value)
    if not m:
        return None
    frac = (m.group(2) or ".0")[:7]
    tz = "+00:00" if m.group(3) == "Z" else m.group(3)
    return dt.datetime.fromisoformat(m.group(1) + frac + tz).timestamp()


def server_log_marks(admin: Client, namespace: str, status: dict) -> dict:
    """From the model server's log (the node agent's line timestamps): when the model was loaded
    (and how long loading took, as the server says), and when uvicorn listened."""
    out = {"loaded": None, "load_s": None, "listening": None}
    pods = [p.get("name") for p in status.get("pods") or [] if p.get("name")]
    if not pods:
        return out
    r = admin.session.get(admin.server + Client.path("v1", "pods", namespace, pods[-1], "log"),
                          params={"container": "server", "timestamps": "true"}, timeout=30)
    for line in r.text.splitlines() if r.ok else []:
        stamp, _, text = line.partition(" ")
        m = re.search(r"loaded in ([0-9.]+)s", text)
        if m and out["loaded"] is None:
            out["loaded"], out["load_s"] = rfc3339(stamp), float(m.group(1))
        if "Uvicorn running" in text and out["listening"] is None:
            out["listening"] = rfc3339(stamp)
    return out


# --- 4. inference: kubelab's model server vs mlflow models serve -----------------------------------


def ensure_mlflow(sklearn_version: str) -> tuple[Path | None, str]:
    """MLflow in its own virtualenv (never the project's); (its bin dir, what happened)."""
    bin_dir = MLFLOW_VENV / "bin"
    check = [str(bin_dir / "python"), "-c", "import mlflow, mlflow.sklearn, sklearn, pandas, uvicorn; "
             "print(mlflow.__version__, sklearn.__version__)"]
    if (bin_dir / "mlflow").exists():
        r = subprocess.run(check, capture_output=True, text=True)
        if r.returncode == 0:
            mv, sv = r.stdout.split()
            if sv == sklearn_version:
                return bin_dir, f"mlflow {mv} (scikit-learn {sv}) reused from {MLFLOW_VENV}"
    t0 = time.monotonic()
    try:
        if not (bin_dir / "python").exists():
            subprocess.run(["/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable,
                            "-m", "venv", str(MLFLOW_VENV)], check=True, capture_output=True, text=True)
        # mlflow-skinny has `mlflow models serve` (FastAPI + uvicorn scoring server); the sklearn
        # flavour also needs pandas. Same scikit-learn as the project, so the same pickle loads.
        subprocess.run([str(bin_dir / "pip"), "install", "-q", "mlflow-skinny", f"scikit-learn=={sklearn_version}",
                        "pandas"], check=True, capture_output=True, text=True, timeout=900)
        r = subprocess.run(check, capture_output=True, text=True, check=True)
    except subprocess.CalledProcessError as e:
        why = " ".join((e.stderr or e.stdout or "").split())[-400:]
        return None, f"installing mlflow failed: {' '.join(map(str, e.cmd))[:120]}: {why}"
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, f"installing mlflow failed: {e}"
    mv, sv = r.stdout.split()
    return bin_dir, (f"mlflow-skinny {mv} (scikit-learn {sv}, pandas) installed in {MLFLOW_VENV} in "
                     f"{time.monotonic() - t0:.0f} s")


class LocalServer:
    def __init__(self, name: str, argv: list[str], ready_url: str, log: Path, env: dict | None = None):
        self.name, self.argv, self.ready_url, self.log, self.env = name, argv, ready_url, log, env
        self.proc: subprocess.Popen | None = None
        self.startup_s: float | None = None

    def start(self) -> None:
        self.t0 = time.monotonic()
        self.f = open(self.log, "w")
        self.proc = subprocess.Popen(self.argv, stdout=self.f, stderr=subprocess.STDOUT, env=self.env,
                                     start_new_session=True)

    def wait_ready(self, timeout: float = 120) -> bool:
        s = requests.Session()
        s.trust_env = False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                if s.get(self.ready_url, timeout=2).status_code == 200:
                    self.startup_s = time.monotonic() - self.t0
                    return True
            except requests.RequestException:
                pass
            time.sleep(0.1)
        return False

    def tail(self) -> str:
        try:
            return "\n".join(self.log.read_text().splitlines()[-8:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(5)
        self.f.close()


def session() -> requests.Session:
    s = requests.Session()
    s.trust_env = False
    return s


def sequential(url: str, bodies: list, duration: float, headers: dict | None = None) -> dict:
    s, lat, fails, i = session(), [], 0, 0
    end = time.perf_counter() + duration
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        try:
            r = s.post(url, json=bodies[i % len(bodies)], headers=headers, timeout=30)
            ok = r.status_code == 200
        except requests.RequestException:
            ok = False
        if ok:
            lat.append(time.perf_counter() - t0)
        else:
            fails += 1
        i += 1
    return {"lat": lat, "fails": fails}


def concurrent(url: str, bodies: list, duration: float, threads: int, headers: dict | None = None) -> dict:
    lat: list[float] = []
    counts = {"ok": 0, "fails": 0}
    lock = threading.Lock()
    start = threading.Barrier(threads + 1)

    def worker(k: int) -> None:
        s, mine, bad, i = session(), [], 0, k
        start.wait()
        end = time.perf_counter() + duration
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            try:
                ok = s.post(url, json=bodies[i % len(bodies)], headers=headers, timeout=30).status_code == 200
            except requests.RequestException:
                ok = False
            if ok:
                mine.append(time.perf_counter() - t0)
            else:
                bad += 1
            i += 1
        with lock:
            lat.extend(mine)
            counts["ok"] += len(mine)
            counts["fails"] += bad

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in ts:
        t.join()
    elapsed = time.perf_counter() - t0
    return {"lat": lat, "rps": counts["ok"] / elapsed, "fails": counts["fails"], "ok": counts["ok"]}


def local_inference(args: argparse.Namespace, work: Path) -> dict:
    import joblib
    import sklearn
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    out: dict = {"mlflow_note": None}
    X, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=500).fit(X, y)
    (work / "kubelab").mkdir()
    joblib.dump(model, work / "kubelab" / "model.joblib")
    rows = X[[0, 60, 120, 10, 75, 140, 30, 90]].tolist()
    expect = model.predict(X[[0, 60, 120, 10, 75, 140, 30, 90]]).tolist()

    servers: dict[str, LocalServer] = {}
    if args.skip_mlflow:
        out["mlflow_note"] = "skipped (--skip-mlflow)"
    else:
        bin_dir, note = ensure_mlflow(sklearn.__version__)
        say(f"  {note}")
        out["mlflow_note"] = note
        if bin_dir is not None:
            r = subprocess.run([str(bin_dir / "python"), "-c",
                                "import sys, joblib, mlflow.sklearn; mlflow.sklearn.save_model("
                                "joblib.load(sys.argv[1]), sys.argv[2], serialization_format='pickle')",
                                str(work / "kubelab" / "model.joblib"), str(work / "mlflow")],
                               capture_output=True, text=True)
            if r.returncode != 0:
                out["mlflow_note"] = f"mlflow.sklearn.save_model failed: {r.stderr.strip()[-300:]}"
                say(f"  {out['mlflow_note']}")
            else:
                port = free_port()
                env = dict(os.environ, PATH=f"{bin_dir}:{os.environ.get('PATH', '')}")
                servers["mlflow"] = LocalServer(
                    "mlflow", [str(bin_dir / "mlflow"), "models", "serve", "-m", str(work / "mlflow"), "-h",
                               "127.0.0.1", "-p", str(port), "--env-manager", "local"],
                    f"http://127.0.0.1:{port}/ping", work / "mlflow.log", env)
                servers["mlflow"].url = f"http://127.0.0.1:{port}/invocations"
                servers["mlflow"].bodies = [{"inputs": [r]} for r in rows]
    port = free_port()
    servers["kubelab"] = LocalServer(
        "kubelab", [sys.executable, "-m", "kubelab.server_extension.serving", "--model-dir", str(work / "kubelab"),
                    "--model-name", "iris", "--format", "sklearn", "--http-port", str(port)],
        f"http://127.0.0.1:{port}/v2/models/iris/ready", work / "kubelab.log")
    servers["kubelab"].url = f"http://127.0.0.1:{port}/v2/models/iris/infer"
    try:
        for name, srv in list(servers.items()):
            srv.start()   # one at a time, so that each start -> ready is its own
            if not srv.wait_ready():
                say(f"  {name} server did not become ready:\n{srv.tail()}")
                srv.stop()
                del servers[name]
                if name == "mlflow":
                    out["mlflow_note"] = "mlflow models serve did not become ready (see above)"
                continue
            say(f"  {name} server ready {srv.startup_s:.1f} s after it was started (pid {srv.proc.pid})")
        if "kubelab" in servers:
            base = servers["kubelab"].url.rsplit("/", 1)[0]
            meta = session().get(base, timeout=5).json()
            name = meta["inputs"][0]["name"]
            servers["kubelab"].bodies = [{"inputs": [{"name": name, "datatype": "FP64", "shape": [1, 4], "data": r}]}
                                         for r in rows]
        # same answers?
        for name, srv in servers.items():
            got = []
            for b in srv.bodies:
                doc = session().post(srv.url, json=b, timeout=10).json()
                got += doc["outputs"][0]["data"] if name == "kubelab" else doc["predictions"]
            out[f"{name}_agrees"] = got == expect
            say(f"  {name}: predictions {got} ({'same as' if got == expect else 'DIFFER from'} the model's {expect})")
            for _ in range(50):   # warm up
                session().post(srv.url, json=srv.bodies[0], timeout=10)
        res: dict[str, dict[str, list]] = {n: {"seq": [], "conc": []} for n in servers}
        names = list(servers)
        for r in range(args.inference_rounds):
            order = names if r % 2 == 0 else names[::-1]
            for name in order:
                srv = servers[name]
                seq = sequential(srv.url, srv.bodies, args.duration)
                conc = concurrent(srv.url, srv.bodies, args.duration, args.threads)
                res[name]["seq"].append(seq)
                res[name]["conc"].append(conc)
                say(f"  round {r + 1}/{args.inference_rounds} {name}: one at a time p50 "
                    f"{pct(seq['lat'], 0.5) * 1000:.2f} ms p99 {pct(seq['lat'], 0.99) * 1000:.2f} ms "
                    f"({len(seq['lat'])} requests, {seq['fails']} failed); {args.threads} threads "
                    f"{conc['rps']:.0f} req/s ({conc['fails']} failed); load {load()}")
        out["results"] = res
        out["startup"] = {n: s.startup_s for n, s in servers.items()}
    finally:
        for srv in servers.values():
            srv.stop()
    return out


def cluster_inference(user: UserServer, admin: Client, status: dict, model: dict, args: argparse.Namespace) -> dict:
    out: dict = {}
    if status.get("state") != "Ready":
        out["note"] = f"the service is not Ready ({status.get('state')}): no cluster figures"
        return out
    rows = model["rows"]
    svc = admin.get(Client.path("v1", "services", user.namespace, SERVICE))
    ip = svc["spec"].get("clusterIP")
    url = f"http://{ip}/v2/models/{SERVICE}/infer"
    name = (model.get("input") or {}).get("name") or "X"
    bodies = [{"inputs": [{"name": name, "datatype": "FP32", "shape": [1, 4], "data": r}]} for r in rows]
    try:
        r = session().post(url, json=bodies[0], timeout=3)
        reachable = r.status_code == 200
        why = f"HTTP {r.status_code}: {r.text[:200]}"
    except requests.RequestException as e:
        reachable, why = False, f"{type(e).__name__}"
    if reachable:
        for _ in range(20):
            session().post(url, json=bodies[0], timeout=10)
        out["direct"] = {"seq": sequential(url, bodies, args.duration),
                         "conc": concurrent(url, bodies, args.duration, args.threads), "url": url}
        d = out["direct"]
        say(f"  Service {ip}:80 from the host: one at a time p50 {pct(d['seq']['lat'], 0.5) * 1000:.2f} ms, "
            f"{args.threads} threads {d['conc']['rps']:.0f} req/s; load {load()}")
    else:
        out["direct_note"] = (f"the Service address {url} did not answer from the host ({why}): "
                              "skipped (kube-proxy's ClusterIP rules may not cover host traffic)")
        say(f"  {out['direct_note']}")
    api = f"{user.hub.url}/user/{user.name}/kubelab/api/services/{SERVICE}/predict"
    rest_bodies = [{"data": [r]} for r in rows]
    s = user.hub.s
    check = s.post(api, json=rest_bodies[0], timeout=30)
    if check.status_code == 200:
        lat, fails = [], 0
        end = time.perf_counter() + args.duration
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            ok = s.post(api, json=rest_bodies[len(lat) % len(rest_bodies)], timeout=30).status_code == 200
            if ok:
                lat.append(time.perf_counter() - t0)
            else:
                fails += 1
        out["rest"] = {"seq": {"lat": lat, "fails": fails}}
        say(f"  REST services/{SERVICE}/predict through the hub: one at a time p50 {pct(lat, 0.5) * 1000:.1f} ms "
            f"({len(lat)} requests, {fails} failed)")
    else:
        out["rest_note"] = f"services/{SERVICE}/predict answered {check.status_code}: {check.text[:200]}"
        say(f"  {out['rest_note']}")
    return out


# --- report --------------------------------------------------------------------------------------


class Table:
    def __init__(self):
        self.rows: list[tuple[str, str, str, str, str]] = []

    def section(self, title: str) -> None:
        self.rows.append((f"[{title}]", "", "", "", ""))

    def add(self, label: str, values: list, unit: str = "s", hi: float = 0.95, scale: float = 1.0,
            digits: int = 2) -> float | None:
        v = [x * scale for x in values if x is not None]
        p50 = pct(v, 0.5)
        self.rows.append((label, fmt(p50, 9, digits), fmt(pct(v, hi), 9, digits), str(len(v)),
                          f"{unit}{'' if hi == 0.95 else f', p{round(hi * 100)}'}"))
        return p50

    def value(self, label: str, x: float | None, unit: str = "", digits: int = 2) -> None:
        self.rows.append((label, fmt(x, 9, digits), "", "", unit))

    def ratio(self, label: str, a: float | None, b: float | None) -> None:
        r = f"{a / b:8.1f}x" if a is not None and b else "        -"
        self.rows.append((label, r, "", "", ""))

    def print(self) -> None:
        w = max(len(r[0]) for r in self.rows if not r[0].startswith("["))
        say(f"{'':{w}}  {'p50':>9} {'p95':>9} {'n':>5}  unit")
        for label, a, b, n, unit in self.rows:
            if label.startswith("["):
                say(label)
            else:
                say(f"{label:{w}}  {a:>9} {b:>9} {n:>5}  {unit}".rstrip())


def header(admin: Client, args: argparse.Namespace) -> None:
    import pyarrow

    say("kubelab datasets + model serving benchmark (figures, not assertions)")
    say(f"{machine()}, pyarrow {pyarrow.__version__}")
    say(f"load average at start: {load()}")
    version = admin.get("/version").get("gitVersion")
    pods = admin.list("/api/v1/pods")["items"]
    running = [p for p in pods if p.get("status", {}).get("phase") == "Running"]
    servers = sorted(p["metadata"]["name"].removeprefix("jupyter-") for p in running
                     if p["metadata"]["name"].startswith("jupyter-"))
    say(f"devcluster Kubernetes {version}: {len(running)} pods running, user servers: "
        f"{', '.join(servers) or 'none'} (shared cluster: others' tests add noise)")
    s3fs = subprocess.run(["s3fs", "--version"], capture_output=True, text=True).stdout.splitlines()
    say(f"S3: MinIO on 127.0.0.1:9000 (pods: 10.244.0.1:9000), same disk; {s3fs[0] if s3fs else 's3fs: not found'}")
    say(f"rounds {args.rounds} (s3fs listing {min(args.s3fs_rounds, args.rounds)}), deploy rounds "
        f"{args.deploy_rounds}, inference {args.inference_rounds} x {args.duration:.0f} s per server and mode, "
        f"{args.threads} client threads; with 20 or fewer samples p95 is the slowest one")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    env = os.environ.get
    ap.add_argument("--rounds", type=int, default=int(env("BENCH_DATA_ROUNDS", "5")),
                    help="rounds of first page and of preview (each side)")
    ap.add_argument("--s3fs-rounds", type=int, default=3, help="of which the s3fs listing runs (it is slow)")
    ap.add_argument("--deploy-rounds", type=int, default=3)
    ap.add_argument("--inference-rounds", type=int, default=3, help="alternating blocks per server")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds of each inference block")
    ap.add_argument("--threads", type=int, default=4, help="client threads of the concurrent blocks")
    ap.add_argument("--skip-100k", action="store_true", help="skip the 100,000-object listing")
    ap.add_argument("--skip-1g", action="store_true", help="skip the 1 GiB Parquet preview")
    ap.add_argument("--skip-serving", action="store_true", help="skip deploy -> Ready and cluster inference")
    ap.add_argument("--skip-inference", action="store_true", help="skip the local kubelab vs MLflow inference")
    ap.add_argument("--skip-mlflow", action="store_true", default=env("BENCH_DATA_MLFLOW") == "0",
                    help="no MLflow (kubelab's local model server is still measured)")
    args = ap.parse_args()
    args.deploy_rounds = max(1, args.deploy_rounds)
    t_start = time.monotonic()

    state = State.default()
    hub = hub_up(state)
    admin = Client.from_kubeconfig(state.kubeconfig)
    header(admin, args)
    s3c, bucket = admin_s3(state)
    counters = MinioCounters(state)
    if not counters.ok:
        say("MinIO's metrics did not answer: no S3 request counts")
    report: dict = {}
    if not args.skip_100k:
        say(f"\n1. data: {N_100K:,} objects under {PREFIX_100K}")
        report["made_100k"] = ensure_100k(s3c, bucket)
    if not args.skip_1g:
        say(f"\n2. data: ~1 GiB Parquet at {KEY_1G}")
        report["made_1g"] = ensure_1g(s3c, bucket)

    say(f"\nspawning {USER} (resource group cpu)")
    t = time.monotonic()
    spawn_user(hub)
    report["spawn_s"] = time.monotonic() - t
    user = BenchUser(hub, USER)
    work = Path(tempfile.mkdtemp(prefix="bench-data-"))
    mount = work / "s3"
    try:
        try:
            if not (args.skip_100k and args.skip_1g):
                devs3.mount(state, mount)
                say(f"s3fs mount of the bucket at {mount} (devcluster's platform mount options, a fresh "
                    "process: the nodes' DaemonSet mounts are others' and stay untouched)")
            if not args.skip_100k:
                user.api("GET", "datasets/browse", params={"prefix": "datasets/", "page_size": 1})  # first use
                say(f"\n1. first page of {PREFIX_100K} ({N_100K:,} objects): kubelab browse vs s3fs listing, "
                    "alternating")
                report["browse"] = browse_rounds(user, mount, counters, args.rounds, args.s3fs_rounds)
            if not args.skip_1g:
                say(f"\n2. 50-row preview of {KEY_1G}: kubelab preview vs pyarrow through s3fs, alternating")
                report["preview"] = preview_rounds(user, mount, counters, args.rounds)
            if not args.skip_serving:
                say(f"\n3. deploy -> Ready ({args.deploy_rounds} rounds): model {MODEL} (ONNX) as service {SERVICE}")
                report["model"] = register_model(user)
                report["deploy"], status = deploy_rounds(user, admin, args.deploy_rounds, report["model"]["version"])
                report["deploy_limits"] = next((c.get("resources", {}) for c in admin.get(
                    Client.path("apps/v1", "deployments", user.namespace, SERVICE))["spec"]["template"]["spec"][
                        "containers"]), {}) if status.get("state") == "Ready" else {}
                say("\n4b. the deployed ONNX service through the cluster")
                report["cluster"] = cluster_inference(user, admin, status, report["model"], args)
        finally:
            if devs3.is_mounted(mount):
                devs3.unmount(mount, state)
            if not args.skip_serving:
                if user.api("DELETE", f"services/{SERVICE}").status_code in (200, 202, 204):
                    wait_service_gone(user)
                user.api("DELETE", f"models/{MODEL}")
            hub.stop(USER)
            say(f"\nservice and model deleted, s3fs mount removed, {USER}'s server stopped")

        if not args.skip_inference:
            say("\n4. inference, local processes on 127.0.0.1: kubelab model server vs mlflow models serve "
                "(same scikit-learn model), alternating")
            report["local"] = local_inference(args, work)
    finally:
        if devs3.is_mounted(mount):   # never rmtree through a mount of the bucket
            say(f"{mount} is still mounted: {work} left in place")
        else:
            shutil.rmtree(work, ignore_errors=True)

    # -- the table
    tab = Table()
    heads: list[str] = []
    if "browse" in report:
        b = report["browse"]
        k, f = b["kubelab"], b["s3fs"]
        tab.section(f"first page of {N_100K:,} objects ({PREFIX_100K}), page_size 100")
        kp = tab.add("  kubelab GET datasets/browse (through hub + proxy)", [r["wall"] for r in k if r["status"] == 200], "s")
        tab.add("    S3 requests per page (the API's s3_requests)", [r["s3_requests"] for r in k], "requests",
                digits=0)
        tab.add("    MinIO list requests during the page (whole server)", [list_ops(r["minio"]) for r in k],
                "requests", digits=0)
        fp = tab.add("  s3fs os.scandir: first entry", [r["first"] for r in f], "s")
        tab.add("  s3fs os.scandir: first 100 entries", [r["hundred"] for r in f], "s")
        tab.add("    MinIO list requests during the listing", [list_ops(r["minio"]) for r in f], "requests", digits=0)
        tab.add("    MinIO HEAD requests during the listing", [r["minio"].get("HeadObject") for r in f], "requests",
                digits=0)
        tab.add("    MinIO requests of any kind during the listing", [requests_total(r["minio"]) for r in f],
                "requests", digits=0)
        tab.ratio("  s3fs first entry / kubelab first page (p50s)", fp, kp)
        if fp and kp:
            heads.append(f"first page of {N_100K:,} objects: kubelab {kp * 1000:.0f} ms vs s3fs {fp:.1f} s to the "
                         f"first entry = {fp / kp:.0f}x")
        made = report.get("made_100k") or {}
        if made.get("created"):
            tab.value(f"  one-time creation of {made['created']:,} objects (48 threads)", made["seconds"], "s", 1)
    if "preview" in report:
        p = report["preview"]
        k, f = p["kubelab"], p["s3fs"]
        size = next((r["size"] for r in k if r.get("size")), None)
        tab.section(f"50-row preview of a {human(size)} Parquet file "
                    f"({next((r['row_groups'] for r in k if r.get('row_groups')), '?')} row groups)")
        kp = tab.add("  kubelab GET datasets/preview?rows=50", [r["wall"] for r in k if r.get("status") == 200], "s")
        tab.value("    the server's first preview (imports pyarrow; not in the p50)", p.get("cold"), "s")
        tab.add("    bytes read (the API's bytes_read)", [r["bytes_read"] for r in k], "MiB", scale=1 / MiB)
        tab.add("    S3 requests (the API's s3_requests)", [r["s3_requests"] for r in k], "requests", digits=0)
        tab.add("    MinIO bytes sent during the preview", [r["minio"].get("sent_bytes") for r in k], "MiB",
                scale=1 / MiB)
        fp = tab.add("  pyarrow via s3fs: iter_batches(50), first batch, to_pandas",
                     [r["wall"] for r in f if not r.get("error")], "s")
        tab.add("    MinIO bytes sent during the read", [r["minio"].get("sent_bytes") for r in f], "MiB",
                scale=1 / MiB)
        tab.add("    MinIO GET requests during the read", [r["minio"].get("GetObject") for r in f], "requests",
                digits=0)
        tab.ratio("  s3fs first rows / kubelab preview (p50s)", fp, kp)
        kb = pct([r["bytes_read"] for r in k], 0.5)
        if kb and size:
            tab.value("  kubelab bytes read / file size", 100 * kb / size, "%", 2)
        fb = pct([r["minio"].get("sent_bytes") for r in f], 0.5)
        tab.ratio("  bytes: s3fs read / kubelab read (MinIO sent, p50s)", fb,
                  pct([r["minio"].get("sent_bytes") for r in k], 0.5))
        if fp and kp:
            heads.append(f"50-row preview of {human(size)} Parquet: kubelab {kp:.2f} s vs pyarrow via s3fs {fp:.2f} s "
                         f"= {fp / kp:.1f}x")
        made = report.get("made_1g") or {}
        if made.get("generated_s"):
            tab.value("  one-time generation (pyarrow, snappy)", made["generated_s"], "s", 1)
            tab.value("  one-time upload (multipart, 64 MiB parts)", made["uploaded_s"], "s", 1)
    if "deploy" in report:
        d = report["deploy"]
        tab.section(f"deploy -> Ready, {len(d)} rounds, {sum(r['state'] == 'Ready' for r in d)} Ready "
                    "(POST services -> GET services/<name> says Ready, polled every 0.25 s)")
        dp = tab.add("  POST services -> Ready (the API)", [r["ready_api"] for r in d], "s")
        tab.add("    POST answered (Deployment + Service created)", [r["posted"] for r in d], "s")
        tab.add("    -> pod created (seen by a watch)", [r["seen"] for r in d], "s")
        tab.add("    -> pod scheduled", [r["scheduled"] for r in d], "s")
        tab.add("    -> model fetched (init container done)", [r["fetched"] for r in d], "s")
        tab.add("    -> server container running", [r["running"] for r in d], "s")
        tab.add("    -> model loaded (server log: python + imports + load)", [r["loaded"] for r in d], "s")
        tab.add("    -> uvicorn listening (server log)", [r["listening"] for r in d], "s")
        tab.add("    -> pod Ready (readiness probe, 1 s period)", [r["ready"] for r in d], "s")
        tab.add("    the model load itself (the server says)", [r["load_s"] for r in d], "s")
        tab.add("  DELETE -> service and pod gone", [r.get("deleted_s") for r in d], "s")
        m = report["model"]
        tab.value("  train + skl2onnx in the kernel (once)", m["train_s"], "s", 1)
        tab.value("  POST models: register + sandboxed validation (once)", m["register_s"], "s", 1)
        if dp:
            heads.append(f"deploy -> Ready: {dp:.1f} s p50")
    loc = report.get("local") or {}
    res = loc.get("results") or {}
    if res:
        tab.section(f"inference, single-row requests, local 127.0.0.1 ({args.inference_rounds} x {args.duration:.0f} s "
                    f"blocks each, alternating; sequential p50/p99, then {args.threads} threads)")
        p50s, rps = {}, {}
        for name, label in (("kubelab", "kubelab model server (KServe V2, sklearn joblib)"),
                            ("mlflow", "mlflow models serve (/invocations, sklearn pickle)")):
            if name not in res:
                continue
            seq = sum((x["lat"] for x in res[name]["seq"]), [])
            conc = res[name]["conc"]
            p50s[name] = tab.add(f"  {label}: one at a time", seq, "ms", hi=0.99, scale=1000)
            tab.add(f"    {args.threads} threads: latency", sum((x["lat"] for x in conc), []), "ms", hi=0.99,
                    scale=1000)
            rps[name] = tab.add(f"    {args.threads} threads: requests/s (per block)", [x["rps"] for x in conc],
                                "req/s", digits=0)
            fails = sum(x["fails"] for x in res[name]["seq"]) + sum(x["fails"] for x in conc)
            tab.value("    failed requests", fails, "", 0)
            tab.value("    server start -> ready", (loc.get("startup") or {}).get(name), "s", 1)
        if "mlflow" in p50s:
            tab.ratio("  kubelab / mlflow: one-at-a-time latency (p50s)", p50s["kubelab"], p50s["mlflow"])
            tab.ratio("  kubelab / mlflow: requests/s (p50s)", rps["kubelab"], rps["mlflow"])
            if p50s["kubelab"] and p50s["mlflow"]:
                heads.append(f"inference: kubelab {p50s['kubelab']:.2f} ms p50, {rps['kubelab']:.0f} req/s vs mlflow "
                             f"{p50s['mlflow']:.2f} ms, {rps['mlflow']:.0f} req/s")
    cl = report.get("cluster") or {}
    if cl:
        lim = (report.get("deploy_limits") or {}).get("limits") or {}
        tab.section(f"inference through the cluster: the deployed ONNX service (pod limits {json.dumps(lim)})")
        if "direct" in cl:
            tab.add("  Service ClusterIP from the host: one at a time", cl["direct"]["seq"]["lat"], "ms", hi=0.99,
                    scale=1000)
            tab.add(f"    {args.threads} threads: latency", cl["direct"]["conc"]["lat"], "ms", hi=0.99, scale=1000)
            tab.value(f"    {args.threads} threads: requests/s", cl["direct"]["conc"]["rps"], "req/s", 0)
        if "rest" in cl:
            tab.add(f"  REST services/{SERVICE}/predict (hub, proxy, server, status check)", cl["rest"]["seq"]["lat"],
                    "ms", hi=0.99, scale=1000)

    say("")
    say(f"spawn of {USER}: {report.get('spawn_s', 0):.1f} s (0 when its server was already up); "
        f"load average at end: {load()}; total {time.monotonic() - t_start:.0f} s")
    if loc:
        say(f"mlflow: {loc.get('mlflow_note')}")
    if cl.get("direct_note"):
        say(f"cluster: {cl['direct_note']}")
    if cl.get("note"):
        say(f"cluster: {cl['note']}")
    say("the client, both local servers (no CPU limit), MinIO and the cluster share this machine's CPUs; the "
        "deployed service runs under its pod's CPU limit (a CFS quota)")
    for h in heads:
        say(f"headline: {h}")
    tab.print()


if __name__ == "__main__":
    main()
