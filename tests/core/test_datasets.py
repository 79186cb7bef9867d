"""kubelab.core.datasets: key and prefix checks, Dataset objects, snippets and preview helpers (pure)."""
from __future__ import annotations

import datetime as dt
import decimal
import json
import math

import pytest

from kubelab.core import datasets as D
from kubelab.core import labels as L
from kubelab.core.settings import WorkspaceSettings

S = WorkspaceSettings(user="alice", namespace="kubelab-alice", image="kubelab/singleuser:test")
ODD = WorkspaceSettings(user="Alice@Example.org", namespace="kubelab-x", image="i")
BUCKET = "kubelab"


# -- keys and prefixes -----------------------------------------------------------------------------
def test_roots_are_the_users_prefix_and_the_shared_one():
    assert D.roots("alice") == ("users/alice/", "datasets/")
    assert D.roots("Alice@Example.org") == ("users/alice-example-org---cfd44c4f/", "datasets/")


@pytest.mark.parametrize("key", ["users/alice/a.csv", "users/alice/deep/er/x.parquet", "datasets/sales/2024.csv",
                                 "datasets/é ü.json", "users/alice/with space.csv"])
def test_keys_under_the_roots_are_accepted(key):
    assert D.check_key(key, "alice") == key


@pytest.mark.parametrize("key", ["users/bob/a.csv", "users/alicex/a.csv", "users/alice", "users/", "models/x",
                                 "datasetsx/a", "Datasets/a.csv"])
def test_keys_outside_the_roots_are_403(key):
    with pytest.raises(D.OutsideRoots) as e:
        D.check_key(key, "alice")
    assert e.value.status == 403
    assert "users/alice/... or datasets/..." in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("key, words", [
    ("users/alice/../bob/a.csv", "'..'"), ("datasets/./a.csv", "'..'"), ("datasets/..", "'..'"),
    ("/datasets/a.csv", "empty path segment"), ("datasets//a.csv", "empty path segment"),
    ("s3://kubelab/users/alice/a.csv", "empty path segment"),
    ("datasets/a\x00b", "control characters"), ("datasets/a\nb", "control characters"),
    ("datasets/" + "x" * 1020, "too long"), ("datasets/\udcff", "UTF-8"), ("", "required"), (None, "required"),
    (5, "must be a string"),
])
def test_malformed_keys_are_400_with_a_message(key, words):
    with pytest.raises(D.DatasetError) as e:
        D.check_key(key, "alice")
    assert not isinstance(e.value, D.OutsideRoots)
    assert e.value.status == 400 and words in str(e.value), str(e.value)


def test_dotdot_is_refused_before_the_roots_are_checked():
    with pytest.raises(D.DatasetError) as e:
        D.check_key("users/alice/../../users/bob/x", "alice")
    assert "'..'" in str(e.value)


def test_folders_and_objects():
    with pytest.raises(D.DatasetError, match="is a folder"):
        D.check_key("datasets/sales/", "alice")
    assert D.check_key("datasets/sales/", "alice", folder=None) == "datasets/sales/"
    assert D.check_key("datasets/sales/", "alice", folder=True) == "datasets/sales/"
    with pytest.raises(D.DatasetError, match="must be a folder"):
        D.check_key("datasets/sales", "alice", folder=True)


def test_prefixes():
    assert D.check_prefix("", "alice") == "" and D.check_prefix(None, "alice") == ""
    assert D.check_prefix("datasets", "alice") == "datasets/"
    assert D.check_prefix("users/alice", "alice") == "users/alice/"
    assert D.check_prefix("datasets/sal", "alice") == "datasets/sal"      # a prefix search
    assert D.check_prefix("users/alice/data/", "alice") == "users/alice/data/"
    for outside in ("users/", "users", "users/al", "users/bob/", "d", "data"):
        with pytest.raises(D.OutsideRoots):
            D.check_prefix(outside, "alice")
    with pytest.raises(D.DatasetError, match="'..'"):
        D.check_prefix("datasets/../users/bob/", "alice")


def test_page_sizes_and_tokens():
    assert D.check_page_size(None, 100, 1000) == 100
    assert D.check_page_size("", 100, 1000) == 100
    assert D.check_page_size("7", 100, 1000) == 7 and D.check_page_size(1000, 100, 1000) == 1000
    for bad in ("0", 0, 1001, "x", 1.5, True, "-3"):
        with pytest.raises(D.DatasetError, match="page_size"):
            D.check_page_size(bad, 100, 1000)
    assert D.check_token("") is None and D.check_token("abc==") == "abc=="
    for bad in ("x" * 5000, "a\nb", 3):
        with pytest.raises(D.DatasetError, match="token"):
            D.check_token(bad)


def test_uris():
    assert D.key_of_uri("s3://kubelab/datasets/a.csv", BUCKET, "alice") == "datasets/a.csv"
    assert D.key_of_uri("users/alice/x/", BUCKET, "alice") == "users/alice/x/"
    with pytest.raises(D.OutsideRoots, match="not in the kubelab bucket"):
        D.key_of_uri("s3://other/datasets/a.csv", BUCKET, "alice")
    with pytest.raises(D.OutsideRoots):
        D.key_of_uri("s3://kubelab/users/bob/a.csv", BUCKET, "alice")
    with pytest.raises(D.DatasetError, match="must be s3://"):
        D.key_of_uri("https://kubelab/datasets/a.csv", BUCKET, "alice")
    with pytest.raises(D.DatasetError, match="uri is required"):
        D.key_of_uri("", BUCKET, "alice")


def test_formats_names_and_writability():
    cases = {"a.csv": "csv", "a.TSV": "csv", "a.parquet": "parquet", "x/a.pq": "parquet", "a.json": "json",
             "a.jsonl": "jsonl", "a.ndjson": "jsonl", "a.csv.gz": "other", "README": "other", "dir/": "other"}
    for key, fmt in cases.items():
        assert D.format_of(key) == fmt, key
    assert D.name_of("datasets/sales/2024.csv") == "2024.csv"
    assert D.name_of("datasets/sales/") == "sales/"
    assert D.writable("users/alice/x", "alice") and not D.writable("datasets/x", "alice")


def test_mount_paths():
    assert D.mount_path("users/alice/data/a.csv", S) == "/home/jovyan/data/a.csv"
    assert D.mount_path("users/alice/", S) == "/home/jovyan"
    assert D.mount_path("datasets/sales/a.csv", S) == "/home/jovyan/datasets/sales/a.csv"
    assert D.mount_path("datasets/", S) == "/home/jovyan/datasets"
    # the home's own datasets/ folder is hidden under the shared mount
    assert D.mount_path("users/alice/datasets/a.csv", S) is None
    assert D.mount_path("users/alice/datasetsx/a.csv", S) == "/home/jovyan/datasetsx/a.csv"
    assert D.mount_path("users/bob/a.csv", S) is None


# -- snippets --------------------------------------------------------------------------------------
def test_snippet_of_a_parquet_object_has_path_s3_and_boto3_code_that_compiles():
    sn = D.snippet("datasets/sales/2024.parquet", BUCKET, S)
    assert sn["uri"] == "s3://kubelab/datasets/sales/2024.parquet"
    assert sn["path"] == "/home/jovyan/datasets/sales/2024.parquet"
    assert sn["format"] == "parquet" and sn["folder"] is False
    assert "pd.read_parquet('/home/jovyan/datasets/sales/2024.parquet')" in sn["code"]["path"]
    assert "open_input_file('kubelab/datasets/sales/2024.parquet')" in sn["code"]["s3"]
    assert "Bucket='kubelab', Key='datasets/sales/2024.parquet'" in sn["code"]["boto3"]
    for code in sn["code"].values():
        compile(code, "<snippet>", "exec")


@pytest.mark.parametrize("key, fmt, expect", [
    ("users/alice/a.csv", None, "pd.read_csv('/home/jovyan/a.csv')"),
    ("users/alice/a.tsv", None, "pd.read_csv('/home/jovyan/a.tsv', sep='\\t')"),
    ("users/alice/a.jsonl", None, "pd.read_json('/home/jovyan/a.jsonl', lines=True)"),
    ("users/alice/a.bin", None, "open('/home/jovyan/a.bin', 'rb')"),
    ("datasets/events/", "parquet", "pd.read_parquet('/home/jovyan/datasets/events/')"),
    ("datasets/logs/", "csv", "glob.glob('/home/jovyan/datasets/logs/*.csv')"),
    ("datasets/misc/", "other", "os.listdir('/home/jovyan/datasets/misc/')"),
])
def test_snippets_by_format(key, fmt, expect):
    sn = D.snippet(key, BUCKET, S, fmt)
    assert expect in sn["code"]["path"], sn["code"]["path"]
    for code in sn["code"].values():
        compile(code, "<snippet>", "exec")


def test_snippet_quotes_odd_keys_and_has_no_path_where_no_mount_shows_it():
    key = "users/alice/datasets/it's \"x\".csv"
    sn = D.snippet(key, BUCKET, S)
    assert sn["path"] is None and "path" not in sn["code"]
    assert repr(key) in sn["code"]["boto3"]
    for code in sn["code"].values():
        compile(code, "<snippet>", "exec")


# -- registration ----------------------------------------------------------------------------------
def test_parse_registration_fills_defaults():
    spec = D.parse_registration({"name": "sales-2024", "uri": "s3://kubelab/datasets/sales/2024.parquet",
                                 "tags": ["finance", "finance", "2024"]}, S, BUCKET)
    assert (spec.name, spec.key, spec.format, spec.owner) == ("sales-2024", "datasets/sales/2024.parquet",
                                                              "parquet", "alice")
    assert spec.tags == ("finance", "2024") and spec.uri == "s3://kubelab/datasets/sales/2024.parquet"
    spec = D.parse_registration({"name": "mine", "uri": "users/alice/data/", "format": "csv", "tags": "a, b",
                                 "owner": "team-x", "schema": [{"name": "id", "type": "int64"}]}, S, BUCKET)
    assert spec.folder and spec.format == "csv" and spec.tags == ("a", "b") and spec.owner == "team-x"
    assert spec.schema == ({"name": "id", "type": "int64", "nullable": True},)


@pytest.mark.parametrize("req, cls, words", [
    ({"name": "Sales", "uri": "datasets/a.csv"}, D.DatasetError, "dataset name 'Sales' is invalid"),
    ({"name": "x" * 53, "uri": "datasets/a.csv"}, D.DatasetError, "too long"),
    ({"name": "ok", "uri": "s3://kubelab/users/bob/a.csv"}, D.OutsideRoots, "outside what you may see"),
    ({"name": "ok", "uri": "s3://kubelab/users/alice/../bob/a.csv"}, D.DatasetError, "'..'"),
    ({"name": "ok"}, D.DatasetError, "uri is required"),
    ({"name": "ok", "uri": "datasets/a.csv", "format": "xls"}, D.DatasetError, "format must be one of"),
    ({"name": "ok", "uri": "datasets/a.csv", "tags": [""]}, D.DatasetError, "tags"),
    ({"name": "ok", "uri": "datasets/a.csv", "tags": ["x"] * 65}, D.DatasetError, "tags"),
    ({"name": "ok", "uri": "datasets/a.csv", "schema": [{"name": "a"}]}, D.DatasetError, "schema"),
    ({"name": "ok", "uri": "datasets/a.csv", "schema": [{"name": "a", "type": "x", "extra": 1}]},
     D.DatasetError, "schema"),
    ({"name": "ok", "uri": "datasets/d/", "etag": "abc"}, D.DatasetError, "a folder"),
    ({"name": "ok", "uri": "datasets/a.csv", "description": 5}, D.DatasetError, "description"),
    ({"name": "ok", "uri": "datasets/a.csv", "bogus": 1}, D.DatasetError, "unknown dataset field(s): bogus"),
    ([], D.DatasetError, "JSON object"),
])
def test_parse_registration_refuses(req, cls, words):
    with pytest.raises(cls) as e:
        D.parse_registration(req, S, BUCKET)
    assert words in str(e.value), str(e.value)
    assert "\n" not in str(e.value)


def test_dataset_object_and_view_round_trip():
    spec = D.parse_registration({"name": "sales", "uri": "datasets/sales/2024.parquet", "description": "Sales",
                                 "display_name": "Sales 2024", "tags": ["finance"]}, S, BUCKET)
    from dataclasses import replace
    spec = replace(spec, etag="abc-2", version_id="v1", objects=1, bytes=1234,
                   schema=({"name": "id", "type": "int64", "nullable": False},))
    obj = D.dataset_object(S, spec)
    assert obj["apiVersion"] == "kubelab.io/v1alpha1" and obj["kind"] == "Dataset"
    assert obj["metadata"]["namespace"] == "kubelab-alice"
    labels = obj["metadata"]["labels"]
    assert labels[D.DATASET_LABEL] == "sales" and labels[L.USER] == "alice" and labels[L.COMPONENT] == "dataset"
    assert obj["spec"]["location"] == {"uri": "s3://kubelab/datasets/sales/2024.parquet", "etag": "abc-2",
                                       "versionId": "v1", "objects": 1, "bytes": 1234}
    assert obj["spec"]["format"] == "parquet" and obj["spec"]["displayName"] == "Sales 2024"
    obj["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    view = D.dataset_view(obj, False, BUCKET)
    assert view == {"name": "sales", "namespace": "kubelab-alice", "shared": False, "display_name": "Sales 2024",
                    "description": "Sales", "owner": "alice", "tags": ["finance"], "format": "parquet",
                    "uri": "s3://kubelab/datasets/sales/2024.parquet", "key": "datasets/sales/2024.parquet",
                    "etag": "abc-2", "version_id": "v1", "objects": 1, "bytes": 1234,
                    "schema": [{"name": "id", "type": "int64", "nullable": False}],
                    "created": "2026-01-01T00:00:00Z"}
    assert D.dataset_view({"metadata": {"name": "x"}}, True, BUCKET)["shared"] is True


def test_dataset_object_matches_the_crd_schema():
    import pathlib

    import yaml
    from jsonschema import Draft7Validator

    crds = list(yaml.safe_load_all((pathlib.Path(__file__).parents[2] / "deploy/crds/kubelab.io.yaml").read_text()))
    crd = next(c for c in crds if c["spec"]["names"]["kind"] == "Dataset")
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    spec = D.parse_registration({"name": "a", "uri": "users/alice/d/", "tags": ["t"],
                                 "schema": [{"name": "x", "type": "double"}]}, S, BUCKET)
    errors = list(Draft7Validator(schema).iter_errors(D.dataset_object(S, spec)))
    assert not errors, errors


def test_search_by_metadata():
    view = {"name": "sales-2024", "display_name": "Sales", "description": "Monthly revenue by region",
            "owner": "finance-team", "uri": "s3://kubelab/datasets/sales/2024.parquet", "format": "parquet",
            "tags": ["finance", "gold"]}
    assert D.matches(view) and D.matches(view, "REVENUE") and D.matches(view, "region sales")
    assert D.matches(view, tag="gold") and not D.matches(view, tag="gol")
    assert not D.matches(view, "revenue hr") and D.matches(view, "finance-team")
    assert D.matches(view, "datasets/sales")


# -- preview helpers -------------------------------------------------------------------------------
def test_sniff_delimiter():
    assert D.sniff_delimiter("a,b,c\n1,2,3\n") == ","
    assert D.sniff_delimiter("a;b;c\n1;2;3\n") == ";"
    assert D.sniff_delimiter("a\tb\n1\t2\n") == "\t"
    assert D.sniff_delimiter("whatever", "x.tsv") == "\t"
    assert D.sniff_delimiter("single\ncolumn\n") == ","


def test_first_json_records_reads_only_complete_elements():
    doc = json.dumps([{"a": i, "s": "x" * i} for i in range(10)])
    recs, done = D.first_json_records(doc, 3, True)
    assert recs == [{"a": 0, "s": ""}, {"a": 1, "s": "x"}, {"a": 2, "s": "xx"}] and done
    recs, done = D.first_json_records(doc, 50, True)
    assert len(recs) == 10 and done
    # cut anywhere: never a wrong element, and done only when n were found
    for cut in range(len(doc)):
        recs, done = D.first_json_records(doc[:cut], 4, False)
        assert recs == json.loads(doc)[:len(recs)]
        assert done == (len(recs) == 4)
    recs, done = D.first_json_records("[1, 2, 12", 5, False)
    assert recs == [1, 2] and not done           # 12 may be 123...
    assert D.first_json_records("  [ ]", 5, True) == ([], True)
    with pytest.raises(ValueError):
        D.first_json_records('{"a": 1}', 5, True)
    with pytest.raises(ValueError):
        D.first_json_records("[1, 2", 5, True)


def test_json_safe():
    assert D.json_safe(float("nan")) is None and D.json_safe(math.inf) is None
    assert str(D.json_safe(-0.0)) == "0.0" and D.json_safe(-1.5) == -1.5
    assert D.json_safe(dt.datetime(2024, 1, 2, 3, 4, 5)) == "2024-01-02T03:04:05"
    assert D.json_safe(dt.date(2024, 1, 2)) == "2024-01-02"
    assert D.json_safe(decimal.Decimal("1.10")) == "1.10"
    assert D.json_safe(b"\x00\x01") == "AAE="
    assert D.json_safe({"a": [1, float("nan"), {"b": dt.time(1, 2)}]}) == {"a": [1, None, {"b": "01:02:00"}]}
    long = D.json_safe("y" * 5000)
    assert len(long) == D.MAX_CELL_CHARS + 1 and long.endswith("…")
    json.dumps(D.json_safe({"x": [math.nan, b"z", dt.timedelta(seconds=3)]}), allow_nan=False)


def test_odd_user_names_use_their_slug():
    assert D.check_key("users/alice-example-org---cfd44c4f/a.csv", ODD.user)
    assert D.mount_path("users/alice-example-org---cfd44c4f/a.csv", ODD) == "/home/jovyan/a.csv"
    with pytest.raises(D.OutsideRoots):
        D.check_key("users/Alice@Example.org/a.csv", ODD.user)
