"""Datasets end to end: the REST API of servers spawned by the hub on devcluster, real S3 (MinIO).

Two dedicated users, ``ds-alice`` and ``ds-bob``, each with their server
(``ds-*`` so that restarting them never disturbs the other suites' users).
The platform's S3 credentials (``s3_env``) write the shared data under
``datasets/``: 10,000 small objects under ``datasets/bench10k/`` (kept for the
next run) and the files to preview under ``datasets/dstest/``. Everything
else goes through the users' REST APIs, with their own scoped credentials.
The measurements (S3 requests per page, bytes a preview read) are printed
and written to ``test-artifacts/datasets-e2e.json``.
"""
from __future__ import annotations

import hashlib
import io
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.server_extension.conftest import UserServer
from tests.waiting import eventually

pytestmark = pytest.mark.e2e

ALICE, BOB = "ds-alice", "ds-bob"
BENCH, BENCH_N = "datasets/bench10k/", 10_000
DATA = "datasets/dstest/"
SHARED_NS = "kubelab-datasets"
HOME = "/home/jovyan"   # the home in the user's server (on devcluster $HOME is the host's)
MEASURED: dict = {}


# -- fixtures --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ds_users(hub) -> dict[str, UserServer]:
    for name in (ALICE, BOB):
        hub.ensure_user(name)
        srv = hub.server(name) or {}
        if not (srv.get("ready") or srv.get("pending")):
            r = hub.start(name, {"resource_group": "cpu"})
            assert r.status_code in (201, 202, 400), r.text
    for name in (ALICE, BOB):
        hub.wait_ready(name)
    return {"alice": UserServer(hub, ALICE), "bob": UserServer(hub, BOB)}


@pytest.fixture(scope="module")
def ds_alice(ds_users) -> UserServer:
    return ds_users["alice"]


@pytest.fixture(scope="module")
def ds_bob(ds_users) -> UserServer:
    return ds_users["bob"]


@pytest.fixture(scope="module")
def admin_s3(s3_env):
    import boto3
    from botocore.config import Config

    client = boto3.client("s3", endpoint_url=s3_env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                          aws_access_key_id=s3_env["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=s3_env["AWS_SECRET_ACCESS_KEY"],
                          config=Config(s3={"addressing_style": "path"}, max_pool_connections=64,
                                        retries={"max_attempts": 5, "mode": "standard"}))
    return client, s3_env["KUBELAB_S3_BUCKET"]


def _keys(client, bucket: str, prefix: str) -> set[str]:
    out, kw = set(), {"Bucket": bucket, "Prefix": prefix}
    while True:
        r = client.list_objects_v2(**kw)
        out |= {o["Key"] for o in r.get("Contents", [])}
        if not r.get("IsTruncated"):
            return out
        kw["ContinuationToken"] = r["NextContinuationToken"]


def bench_key(i: int) -> str:
    return f"{BENCH}part-{i:05d}.json"


@pytest.fixture(scope="module")
def bench10k(admin_s3) -> list[str]:
    """10,000 objects under datasets/bench10k/ (made once, with a thread pool; reused afterwards)."""
    client, bucket = admin_s3
    want = [bench_key(i) for i in range(BENCH_N)]
    missing = sorted(set(want) - _keys(client, bucket, BENCH))
    t0 = time.monotonic()
    with ThreadPoolExecutor(48) as pool:
        list(pool.map(lambda k: client.put_object(Bucket=bucket, Key=k, Body=b'{"n": 1}\n'), missing))
    MEASURED["bench10k_created"] = {"objects": len(missing), "seconds": round(time.monotonic() - t0, 1)}
    return want


def sales_frame(n: int = 200_000) -> pd.DataFrame:
    rng = np.random.default_rng(2026)
    return pd.DataFrame({
        "order_id": np.arange(n, dtype="int64"),
        "amount": rng.normal(120, 30, n).round(2),
        "region": rng.choice(["north", "south", "east", "west"], n),
        "returned": rng.random(n) > 0.9,
        "discount": np.where(rng.random(n) > 0.8, np.nan, rng.random(n).round(3)),
        "ordered_at": pd.date_range("2025-01-01", periods=n, freq="37s"),
    })


@pytest.fixture(scope="module")
def files(admin_s3) -> dict:
    """The shared files to preview (written with the platform's credentials), and their sources."""
    client, bucket = admin_s3
    df = sales_frame()
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), buf, row_group_size=20_000)
    parquet = buf.getvalue()
    csv = df.drop(columns=["ordered_at"]).to_csv(index=False).encode()
    records = [{"id": i, "name": f"item-{i}", "price": round(1.5 * i, 2), "tags": ["a", "b"][: i % 3],
                "dims": {"w": i % 7, "h": i % 5}} for i in range(20_000)]
    js = json.dumps(records).encode()
    jsonl = "\n".join(json.dumps(r) for r in records).encode()
    rng = np.random.default_rng(5)
    big = io.BytesIO()   # one incompressible 40 MB row group: more than a preview may read
    pq.write_table(pa.table({"blob": pa.array([rng.bytes(10_000_000) for _ in range(4)], pa.binary())}), big,
                   compression="none")
    objs = {"sales.parquet": parquet, "sales.csv": csv, "records.json": js, "records.jsonl": jsonl,
            "huge.parquet": big.getvalue(), "notes.bin": b"\x00\x01binary"}
    for name, body in objs.items():
        client.put_object(Bucket=bucket, Key=DATA + name, Body=body)
    heads = {name: client.head_object(Bucket=bucket, Key=DATA + name) for name in objs}
    yield {"df": df, "csv": csv, "records": records, "objs": objs, "heads": heads, "bucket": bucket}
    client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": DATA + name} for name in objs]})


def error(r) -> str:
    doc = r.json()
    assert doc["code"] == r.status_code and doc["message"] and "\n" not in doc["message"], doc
    assert "Traceback" not in doc["message"]
    return doc["message"]


def record(name: str, value) -> None:
    MEASURED[name] = value
    print(f"\nMEASURED {name}: {json.dumps(value)}")


@pytest.fixture(scope="module", autouse=True)
def write_measurements(artifacts):
    yield
    if MEASURED:
        (artifacts / "datasets-e2e.json").write_text(json.dumps(MEASURED, indent=1))


# -- browse ----------------------------------------------------------------------------------------
def test_10000_objects_page_by_page_one_s3_request_each(ds_alice, ds_bob, bench10k):
    seen, token, pages, times = [], None, 0, []
    while True:
        params = {"prefix": BENCH, "page_size": 1000, **({"token": token} if token else {})}
        t0 = time.monotonic()
        page = ds_alice.ok("GET", "datasets/browse", params=params)
        times.append(time.monotonic() - t0)
        pages += 1
        assert page["s3_requests"] == 1, page["s3_requests"]
        assert page["folders"] == [] and 0 < len(page["objects"]) <= 1000
        seen += [o["key"] for o in page["objects"]]
        token = page["next_token"]
        if not token:
            break
        assert pages < 20
    assert pages == 10 and seen == bench10k          # in key order, each once, nothing missing
    first = ds_bob.ok("GET", "datasets/browse", params={"prefix": BENCH, "page_size": 100})
    assert first["s3_requests"] == 1 and len(first["objects"]) == 100 and first["next_token"]
    assert first["objects"][0] == {**first["objects"][0], "key": bench10k[0], "name": "part-00000.json",
                                   "format": "json", "size": 9}
    record("browse_10k", {"pages": pages, "page_size": 1000, "s3_requests_per_page": 1,
                          "seconds_per_page": [round(t, 3) for t in times]})


def test_roots_folders_and_prefix_search(ds_alice, files, bench10k):
    roots = ds_alice.ok("GET", "datasets/browse")
    assert [f["prefix"] for f in roots["folders"]] == [f"users/{ALICE}/", "datasets/"]
    assert roots["s3_requests"] == 0 and {r["path"] for r in roots["roots"]} == {"/home/jovyan",
                                                                                 "/home/jovyan/datasets"}
    top = ds_alice.ok("GET", "datasets/browse", params={"prefix": "datasets"})
    assert {"datasets/bench10k/", DATA} <= {f["prefix"] for f in top["folders"]}
    assert top["writable"] is False and top["s3_requests"] == 1
    found = ds_alice.ok("GET", "datasets/browse", params={"prefix": DATA + "rec"})
    assert [o["name"] for o in found["objects"]] == ["records.json", "records.jsonl"]
    flat = ds_alice.ok("GET", "datasets/browse", params={"prefix": "datasets/", "recursive": "true",
                                                         "page_size": 5})
    assert flat["folders"] == [] and 0 < len(flat["objects"]) <= 5 and flat["next_token"]
    assert not any(o["key"].endswith("/") for o in flat["objects"])    # no s3fs folder markers


# -- previews --------------------------------------------------------------------------------------
def test_parquet_preview_reads_a_fraction_of_the_file_and_matches_pandas(ds_alice, files):
    df, size = files["df"], len(files["objs"]["sales.parquet"])
    p = ds_alice.ok("GET", "datasets/preview", params={"key": DATA + "sales.parquet", "rows": 50})
    assert p["format"] == "parquet" and p["size"] == size and p["etag"] == files["heads"]["sales.parquet"][
        "ETag"].strip('"')
    assert p["row_count"] == 50 and p["total_rows"] == len(df) and p["row_groups"] == 10 and p["truncated"]
    assert [(c["name"], c["type"]) for c in p["columns"]] == [
        ("order_id", "int64"), ("amount", "double"), ("region", "string"), ("returned", "bool"),
        ("discount", "double"), ("ordered_at", "timestamp[ns]")]
    expected = pa.Table.from_pandas(df.head(50), preserve_index=False).schema
    assert [c["type"] for c in p["columns"]] == [str(f.type) for f in expected]
    head = df.head(50)
    got = pd.DataFrame(p["rows"])
    assert got["order_id"].tolist() == head["order_id"].tolist()
    assert got["amount"].tolist() == head["amount"].tolist()
    assert got["region"].tolist() == head["region"].tolist()
    assert got["discount"].isna().tolist() == head["discount"].isna().tolist()
    assert got["ordered_at"].tolist() == [t.isoformat() for t in head["ordered_at"]]
    st = p["stats"]
    assert st["amount"]["min"] == head["amount"].min() and st["amount"]["max"] == head["amount"].max()
    assert st["amount"]["mean"] == pytest.approx(head["amount"].mean())
    assert st["discount"]["nulls"] == int(head["discount"].isna().sum())
    assert st["region"]["distinct"] == head["region"].nunique()
    assert st["returned"]["true"] == int(head["returned"].sum())
    fs = p["file_stats"]    # the whole file, from the footer
    assert fs["order_id"] == {"nulls": 0, "min": 0, "max": len(df) - 1}
    assert fs["amount"]["min"] == df["amount"].min() and fs["amount"]["max"] == df["amount"].max()
    assert fs["discount"]["nulls"] == int(df["discount"].isna().sum())
    assert (fs["region"]["min"], fs["region"]["max"]) == (df["region"].min(), df["region"].max())
    assert p["bytes_read"] < size / 5, (p["bytes_read"], size)
    record("parquet_preview", {"file_bytes": size, "bytes_read": p["bytes_read"], "s3_requests": p["s3_requests"],
                               "fraction": round(p["bytes_read"] / size, 4), "rows": 50, "row_groups": 10})


def test_csv_preview_matches_pandas_on_the_same_rows(ds_alice, files):
    size = len(files["csv"])
    p = ds_alice.ok("GET", "datasets/preview", params={"key": DATA + "sales.csv", "rows": 40})
    head = pd.read_csv(io.BytesIO(files["csv"]), nrows=40)
    assert p["format"] == "csv" and p["delimiter"] == "," and p["row_count"] == 40 and p["truncated"]
    assert [c["name"] for c in p["columns"]] == list(head.columns)
    assert {c["name"]: c["type"] for c in p["columns"]} == {
        "order_id": "int64", "amount": "double", "region": "string", "returned": "bool", "discount": "double"}
    got = pd.DataFrame(p["rows"])
    for col in ("order_id", "amount", "region", "returned"):
        assert got[col].tolist() == head[col].tolist(), col
    st = p["stats"]
    assert st["amount"]["mean"] == pytest.approx(head["amount"].mean())
    assert (st["amount"]["min"], st["amount"]["max"]) == (head["amount"].min(), head["amount"].max())
    assert st["discount"]["nulls"] == int(head["discount"].isna().sum())
    assert st["order_id"]["count"] == 40 and st["region"]["distinct"] == head["region"].nunique()
    assert p["bytes_read"] < size / 20
    record("csv_preview", {"file_bytes": size, "bytes_read": p["bytes_read"], "s3_requests": p["s3_requests"]})


def test_json_and_json_lines_previews(ds_alice, files):
    recs = files["records"]
    for name in ("records.json", "records.jsonl"):
        p = ds_alice.ok("GET", "datasets/preview", params={"key": DATA + name, "rows": 5})
        assert p["rows"] == recs[:5], name
        types = {c["name"]: c["type"] for c in p["columns"]}
        assert types["id"] == "int64" and types["tags"] == "list<item: string>"
        assert types["dims"] == "struct<w: int64, h: int64>"
        assert p["stats"]["price"]["max"] == recs[4]["price"]
        assert p["bytes_read"] < len(files["objs"][name]) / 10
        record(f"{name}_preview", {"file_bytes": len(files["objs"][name]), "bytes_read": p["bytes_read"]})


def test_own_csv_written_through_the_home(ds_alice):
    ds_alice.put_file("dstest/mine.csv", "city;population\nBerlin;3850809\nHamburg;1945532\n")
    key = f"users/{ALICE}/dstest/mine.csv"
    def preview():
        r = ds_alice.api("GET", "datasets/preview", params={"key": key})
        return r.json() if r.status_code == 200 else None
    doc = eventually(preview, 60, 1, what="the home file in S3")
    assert doc["delimiter"] == ";" and doc["total_rows"] == 2 and not doc["truncated"]
    assert doc["rows"] == [{"city": "Berlin", "population": 3850809}, {"city": "Hamburg", "population": 1945532}]
    obj = ds_alice.ok("GET", "datasets/object", params={"key": key})
    assert obj["path"] == "/home/jovyan/dstest/mine.csv" and obj["writable"] is True
    assert obj["uri"] == f"s3://kubelab/{key}" and obj["s3_requests"] == 1


# -- snippets --------------------------------------------------------------------------------------
def test_snippet_code_runs_in_the_users_kernel(ds_alice, files):
    sn = ds_alice.ok("GET", "datasets/snippet", params={"key": DATA + "sales.parquet"})
    assert sn["path"] == "/home/jovyan/datasets/dstest/sales.parquet"
    assert sn["uri"] == f"s3://{files['bucket']}/{DATA}sales.parquet"
    n = len(files["df"])
    code = "\n".join([
        sn["code"]["path"], "print('PATH', df.shape, float(df['amount'].sum()))",
        sn["code"]["s3"], "print('S3', df.shape)",
        sn["code"]["boto3"], "print('BOTO3', len(data))"])
    out = ds_alice.execute(code, timeout=240)
    assert f"PATH ({n}, 6) {float(files['df']['amount'].sum())}" in out, out
    assert f"S3 ({n}, 6)" in out and f"BOTO3 {len(files['objs']['sales.parquet'])}" in out, out
    csv = ds_alice.ok("GET", "datasets/snippet", params={"key": DATA + "sales.csv"})
    out = ds_alice.execute(csv["code"]["path"] + "print('CSV', df.shape)\n")
    assert f"CSV ({n}, 5)" in out
    folder = ds_alice.ok("GET", "datasets/snippet", params={"key": BENCH})
    assert folder["folder"] is True and folder["format"] == "json" and "list_objects_v2" in folder["code"]["boto3"]


# -- registered datasets ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def registered(ds_alice, ds_bob, files, kubectl):
    tag = uuid.uuid4().hex[:6]
    names = {"sales": f"ds-sales-{tag}", "mine": f"ds-mine-{tag}", "shared": f"ds-shared-{tag}"}
    ds_alice.put_file("dstest/mine.csv", "city;population\nBerlin;3850809\nHamburg;1945532\n")
    kubectl.apply(json.dumps({
        "apiVersion": "kubelab.io/v1alpha1", "kind": "Dataset",
        "metadata": {"name": names["shared"], "namespace": SHARED_NS},
        "spec": {"displayName": "Sales (shared)", "description": "Orders of 2025, for everyone",
                 "owner": "platform-team", "tags": ["gold", tag], "format": "csv",
                 "location": {"uri": f"s3://{files['bucket']}/{DATA}sales.csv"}}}))
    yield names
    for n in ("sales", "mine"):
        ds_alice.api("DELETE", f"datasets/registered/{names[n]}")
    kubectl("-n", SHARED_NS, "delete", "dataset", names["shared"], check=False)


def test_register_pins_the_version_and_both_users_see_shared_datasets(ds_alice, ds_bob, files, registered,
                                                                     kubectl):
    names = registered
    etag = files["heads"]["sales.parquet"]["ETag"].strip('"')
    d = ds_alice.ok("POST", "datasets/registered", 201, json={
        "name": names["sales"], "uri": f"s3://{files['bucket']}/{DATA}sales.parquet",
        "description": "Orders of 2025", "tags": ["finance", "2025"], "display_name": "Sales"})
    assert d["etag"] == etag and d["objects"] == 1 and d["bytes"] == len(files["objs"]["sales.parquet"])
    assert [c["name"] for c in d["schema"]] == list(files["df"].columns) and d["owner"] == ALICE
    assert d["shared"] is False and d["namespace"] == f"kubelab-{ALICE}"
    cr = kubectl.json("-n", f"kubelab-{ALICE}", "get", "dataset", names["sales"])
    assert cr["spec"]["location"]["etag"] == etag and cr["metadata"]["labels"]["kubelab.io/dataset"] == names["sales"]
    eventually(lambda: ds_alice.api("GET", "datasets/object",
                                    params={"key": f"users/{ALICE}/dstest/mine.csv"}).status_code == 200,
               60, 1, what="mine.csv in S3")
    ds_alice.ok("POST", "datasets/registered", 201, json={"name": names["mine"],
                                                         "uri": f"users/{ALICE}/dstest/mine.csv", "tags": ["own"]})
    r = ds_alice.api("POST", "datasets/registered", json={"name": names["sales"], "uri": f"{DATA}sales.csv"})
    assert r.status_code == 409 and "already exists" in error(r)
    r = ds_alice.api("POST", "datasets/registered", json={"name": "ds-pin-x", "uri": f"{DATA}sales.csv",
                                                         "etag": "0123"})
    assert r.status_code == 409 and "changed" in error(r)

    mine = ds_alice.ok("GET", "datasets/registered")["datasets"]
    by = {d["name"]: d for d in mine}
    assert by[names["sales"]]["shared"] is False and by[names["mine"]]["shared"] is False
    assert by[names["shared"]]["shared"] is True and by[names["shared"]]["namespace"] == SHARED_NS
    theirs = ds_bob.ok("GET", "datasets/registered")["datasets"]
    assert names["shared"] in {d["name"] for d in theirs}
    assert not {names["sales"], names["mine"]} & {d["name"] for d in theirs}
    assert ds_bob.ok("GET", f"datasets/registered/{names['shared']}")["shared"] is True

    tag = names["shared"].rsplit("-", 1)[1]
    assert [d["name"] for d in ds_alice.ok("GET", "datasets/registered", params={"tag": tag})["datasets"]] == [
        names["shared"]]
    found = ds_alice.ok("GET", "datasets/registered", params={"q": "orders 2025"})["datasets"]
    assert {names["sales"], names["shared"]} <= {d["name"] for d in found}
    assert names["mine"] not in {d["name"] for d in found}
    assert ds_alice.ok("GET", f"datasets/registered/{names['sales']}")["etag"] == etag

    r = ds_bob.api("DELETE", f"datasets/registered/{names['shared']}")
    assert r.status_code == 403 and "shared" in error(r)
    ds_alice.ok("DELETE", f"datasets/registered/{names['mine']}", 204)
    assert ds_alice.api("GET", f"datasets/registered/{names['mine']}").status_code == 404


# -- transfers -------------------------------------------------------------------------------------
def _poll(user: UserServer, tid: str, timeout: float = 300) -> tuple[dict, list[float]]:
    seen: list[float] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        t = user.ok("GET", f"datasets/transfers/{tid}")
        seen.append(t["percent"])
        if t["status"] in ("succeeded", "failed"):
            return t, seen
        time.sleep(0.05)
    raise AssertionError(f"transfer {tid} did not end: {t}")


def test_upload_and_download_round_trip_multipart_with_progress(ds_alice, admin_s3):
    client, bucket = admin_s3
    size = 80 * 1024 * 1024 + 12345
    out = ds_alice.execute(
        "import hashlib, os\n"
        f"os.makedirs('{HOME}/dstest', exist_ok=True)\n"
        f"data = os.urandom({size})\n"
        f"with open('{HOME}/dstest/big.bin', 'wb') as f:\n"
        "    f.write(data)\n"
        "print('MD5', hashlib.md5(data).hexdigest())\n", timeout=300)
    md5 = out.split("MD5", 1)[1].split()[0]
    key = f"users/{ALICE}/dstest/uploaded/big.bin"
    client.delete_object(Bucket=bucket, Key=key)
    t0 = time.monotonic()
    t = ds_alice.ok("POST", "datasets/transfers", 201, json={"direction": "upload", "path": "dstest/big.bin",
                                                             "key": f"users/{ALICE}/dstest/uploaded/"})
    assert t["key"] == key and t["bytes_total"] == size and t["multipart"] is True
    done, seen = _poll(ds_alice, t["id"])
    up_seconds = time.monotonic() - t0
    assert done["status"] == "succeeded", done
    assert done["percent"] == 100.0 and done["bytes_done"] == size and seen == sorted(seen)
    assert done["etag"].endswith("-6"), done["etag"]        # 16 MiB parts: a multipart upload
    body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert hashlib.md5(body).hexdigest() == md5
    r = ds_alice.api("POST", "datasets/transfers", json={"direction": "upload", "path": "dstest/big.bin",
                                                          "key": key})
    assert r.status_code == 409 and "overwrite" in error(r)

    t1 = time.monotonic()
    d = ds_alice.ok("POST", "datasets/transfers", 201, json={"direction": "download", "key": key,
                                                             "path": "dstest/back/", "overwrite": True})
    assert d["path"] == "dstest/back/big.bin"
    done_d, seen_d = _poll(ds_alice, d["id"])
    down_seconds = time.monotonic() - t1
    assert done_d["status"] == "succeeded" and done_d["percent"] == 100.0, done_d
    out = ds_alice.execute("import hashlib, os\n"
                           f"print('MD5', hashlib.md5(open('{HOME}/dstest/back/big.bin', 'rb')"
                           ".read()).hexdigest())\n", timeout=300)
    assert f"MD5 {md5}" in out
    listed = ds_alice.ok("GET", "datasets/transfers")["transfers"]
    assert [x["id"] for x in listed[:2]] == [d["id"], t["id"]]
    record("transfers", {"bytes": size, "upload_seconds": round(up_seconds, 2), "upload_etag": done["etag"],
                         "upload_progress_samples": sorted(set(seen))[:12],
                         "download_seconds": round(down_seconds, 2),
                         "download_progress_samples": sorted(set(seen_d))[:12]})
    client.delete_object(Bucket=bucket, Key=key)
    ds_alice.execute(f"import os, shutil\nshutil.rmtree('{HOME}/dstest/back', True)\n"
                     f"os.remove('{HOME}/dstest/big.bin')\n")


# -- isolation -------------------------------------------------------------------------------------
def test_bob_can_neither_see_nor_read_alices_prefix_previews_or_datasets(ds_alice, ds_bob, registered, files):
    key = f"users/{ALICE}/dstest/mine.csv"
    eventually(lambda: ds_alice.api("GET", "datasets/object", params={"key": key}).status_code == 200, 60, 1,
               what="mine.csv in S3")
    if ds_alice.api("GET", f"datasets/registered/{registered['sales']}").status_code == 404:
        ds_alice.ok("POST", "datasets/registered", 201, json={"name": registered["sales"],
                                                             "uri": f"{DATA}sales.parquet"})
    attempts = [
        ("GET", "datasets/browse", {"prefix": f"users/{ALICE}/"}, None),
        ("GET", "datasets/browse", {"prefix": f"users/{ALICE}"}, None),
        ("GET", "datasets/browse", {"prefix": "users/ds-al"}, None),
        ("GET", "datasets/browse", {"prefix": "users/"}, None),
        ("GET", "datasets/browse", {"prefix": f"s3://kubelab/users/{ALICE}/"}, None),
        ("GET", "datasets/object", {"key": key}, None),
        ("GET", "datasets/preview", {"key": key}, None),
        ("GET", "datasets/snippet", {"key": key}, None),
        ("POST", "datasets/registered", None, {"name": "steal", "uri": f"s3://kubelab/{key}"}),
        ("POST", "datasets/registered", None, {"name": "steal2", "uri": f"users/{ALICE}/dstest/"}),
        ("POST", "datasets/transfers", None, {"direction": "download", "key": key, "path": "stolen.csv"}),
        ("POST", "datasets/transfers", None, {"direction": "upload", "path": "x", "key": f"users/{ALICE}/x"}),
    ]
    for method, path, params, body in attempts:
        r = ds_bob.api(method, path, params=params, json=body)
        assert r.status_code == 403, (method, path, params, body, r.status_code, r.text)
        msg = error(r)
        assert "Berlin" not in r.text and "population" not in r.text
        assert "outside what you may see" in msg or "not in the kubelab bucket" in msg, msg
    r = ds_bob.api("GET", "datasets/browse", params={"prefix": "users/ds-bob/../ds-alice/"})
    assert r.status_code == 400 and "'..'" in error(r)
    for name in (registered["sales"], registered["mine"]):
        assert ds_bob.api("GET", f"datasets/registered/{name}").status_code == 404
        assert ds_bob.api("DELETE", f"datasets/registered/{name}").status_code == 404
    assert registered["sales"] not in {d["name"] for d in ds_bob.ok("GET", "datasets/registered")["datasets"]}
    assert ds_alice.api("GET", f"datasets/registered/{registered['sales']}").status_code == 200
    # bob's own server, his own credentials: the shared data is readable, writing it is not
    assert ds_bob.ok("GET", "datasets/preview", params={"key": DATA + "sales.csv", "rows": 1})["row_count"] == 1
    ds_bob.put_file("mine.txt", "bob's")
    r = ds_bob.api("POST", "datasets/transfers", json={"direction": "upload", "path": "mine.txt",
                                                       "key": DATA + "evil.txt"})
    assert r.status_code == 403 and "read-only" in error(r)
    # alice's transfers are not bob's
    for t in ds_alice.ok("GET", "datasets/transfers")["transfers"][:1]:
        assert ds_bob.api("GET", f"datasets/transfers/{t['id']}").status_code == 404


# -- mistakes --------------------------------------------------------------------------------------
@pytest.mark.parametrize("method, path, params, body, status, words", [
    ("GET", "datasets/object", {"key": DATA + "no-such.csv"}, None, 404, "does not exist"),
    ("GET", "datasets/preview", {"key": DATA + "no-such.parquet"}, None, 404, "does not exist"),
    ("GET", "datasets/snippet", {"key": DATA + "nothing-here/"}, None, 404, "holds no objects"),
    ("GET", "datasets/object", {}, None, 400, "key is required"),
    ("GET", "datasets/preview", {"key": DATA + "sales.csv", "rows": 100_000}, None, 413, "at most"),
    ("GET", "datasets/preview", {"key": DATA + "sales.csv", "rows": "many"}, None, 400, "rows"),
    ("GET", "datasets/preview", {"key": DATA + "huge.parquet", "rows": 2}, None, 413, "too large to preview"),
    ("GET", "datasets/preview", {"key": DATA + "notes.bin"}, None, 400, "not CSV, Parquet or JSON"),
    ("GET", "datasets/preview", {"key": DATA + "sales.csv/"}, None, 400, "is a folder"),
    ("GET", "datasets/browse", {"prefix": "models/"}, None, 403, "outside what you may see"),
    ("GET", "datasets/browse", {"prefix": "/etc/"}, None, 400, "empty path segment"),
    ("GET", "datasets/browse", {"prefix": "datasets/../users/"}, None, 400, "'..'"),
    ("GET", "datasets/browse", {"prefix": "datasets/", "page_size": 5000}, None, 400, "page_size"),
    ("GET", "datasets/browse", {"prefix": "datasets/", "token": "bm90LWEtdG9rZW4="}, None, 400, "token"),
    ("GET", "datasets/browse", {"prefix": "datasets/", "token": "%%%"}, None, 400, "token"),
    ("GET", "datasets/registered/Not_A_Name", None, None, 404, "not found"),
    ("POST", "datasets/registered", None, {"name": "Bad_Name", "uri": DATA + "sales.csv"}, 400, "invalid"),
    ("POST", "datasets/registered", None, {"name": "x" * 60, "uri": DATA + "sales.csv"}, 400, "too long"),
    ("POST", "datasets/registered", None, {"name": "ghost", "uri": DATA + "ghost.csv"}, 404, "does not exist"),
    ("POST", "datasets/registered", None, {"name": "ok", "uri": DATA + "sales.csv", "extra": 1}, 400, "unknown"),
    ("POST", "datasets/transfers", None, {"direction": "upload", "path": "nope.bin",
                                          "key": f"users/{ALICE}/nope.bin"}, 400, "not a file"),
    ("GET", "datasets/transfers/tr-0000000000000000", None, None, 404, "not found"),
])
def test_mistakes_are_4xx_with_a_message(ds_alice, files, method, path, params, body, status, words):
    r = ds_alice.api(method, path, params=params, json=body)
    assert r.status_code == status, (r.status_code, r.text)
    assert words in error(r)
