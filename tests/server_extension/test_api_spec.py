"""The REST API's OpenAPI document (server_extension/openapi.yaml) against the code.

No cluster: the spec is checked as OpenAPI 3, against the route table and the
request/response shapes of the service layer, and the extension is served by
a local Jupyter server (pytest-jupyter) that was not started by KubelabSpawner.
"""
from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlencode

import pytest
import schemathesis
import yaml
from jsonschema import Draft4Validator
from jupyter_server.utils import url_path_join
from pytest_jupyter import jupyter_server as _pytest_jupyter_server
from referencing import Registry
from referencing.jsonschema import DRAFT4
from traitlets.config import Config

import kubelab
from kubelab.core import resource_groups as rg
from kubelab.core import models as M
from kubelab.core import workloads as W
from kubelab.core.settings import WorkspaceSettings
from kubelab.server_extension import app as extension_app
from kubelab.server_extension import handlers
from kubelab.server_extension.services import Services
from kubelab.server_extension.services.workspace import event_view

SPEC_FILE = Path(handlers.SPEC_PATH)
SPEC = yaml.safe_load(SPEC_FILE.read_text())
API_PREFIX = "/" + handlers.API
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
SAMPLE_PATH_ARGS = {"name": "demo", "run": "demo-1700000000", "version": "1", "alias": "production"}
# The longest name each kind of object may have (path parameter maxLength).
NAME_LIMITS = {"schedules": W.MAX_SCHEDULE_NAME, "jobs": W.MAX_JOB_NAME, "models": M.MAX_MODEL_NAME,
               "services": 63, "datasets": 52}
JSON = "application/json"

# pytest-jupyter's fixtures (jp_serverapp, jp_fetch, ...) for this module only. A
# `pytest_plugins` entry would put its autouse fixtures and its hooks on every test
# of the session (and is not allowed outside the root conftest).
globals().update({name: obj for name, obj in vars(_pytest_jupyter_server).items()
                  if getattr(obj, "_fixture_function_marker", None) is not None
                  or hasattr(obj, "_pytestfixturefunction")})


# --- the spec as data -----------------------------------------------------------------------------
def spec_operations() -> set[tuple[str, str]]:
    return {(path, method) for path, item in SPEC["paths"].items() for method in item if method in HTTP_METHODS}


def route_operations() -> set[tuple[str, str]]:
    """(spec path, method) of every handler method in the route table."""
    ops = set()
    for pattern, cls in extension_app.all_handlers():
        assert pattern.startswith(API_PREFIX + "/"), pattern
        path = re.sub(r"\(\?P<(\w+)>\[\^/\]\+\)", r"{\1}", pattern[len(API_PREFIX):]).replace("\\.", ".")
        assert re.fullmatch(r"[/\w.{}-]+", path), f"route {pattern!r} has a regex the spec test cannot map"
        methods = {m for klass in cls.__mro__ if issubclass(klass, handlers.KubelabHandler)
                   for m in HTTP_METHODS if m in vars(klass)}
        assert methods, f"{cls.__name__} serves no method"
        ops |= {(path, m) for m in methods}
    return ops


def deref(node: dict) -> dict:
    while "$ref" in node:
        node = resolve_pointer(node["$ref"])
    return node


def resolve_pointer(ref: str):
    assert ref.startswith("#/"), ref
    node = SPEC
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def pointer(*parts: str) -> str:
    return "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def _json_schema(node):
    """OpenAPI 3.0 schema objects as JSON Schema (draft 4): ``nullable`` becomes a null type."""
    if isinstance(node, list):
        return [_json_schema(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: _json_schema(v) for k, v in node.items() if k not in ("nullable", "example")}
    if node.get("nullable") is True:
        if isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
        if "enum" in out and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]
    return out


JSON_SPEC = _json_schema(SPEC)
REGISTRY = Registry().with_resource("urn:kubelab-openapi", DRAFT4.create_resource(JSON_SPEC))


def validator(ref: str) -> Draft4Validator:
    """A validator for the schema at ``ref`` (a ``#/...`` pointer into the spec)."""
    return Draft4Validator({"$ref": "urn:kubelab-openapi" + ref}, registry=REGISTRY)


def assert_valid(doc, ref: str) -> None:
    errors = sorted(validator(ref).iter_errors(doc), key=lambda e: list(e.absolute_path))
    assert not errors, f"{ref}: " + "; ".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:5])


def response_schema_ref(path: str, method: str, status: int, content_type: str = JSON) -> str | None:
    """Pointer to the documented schema of one response; None when the status is not documented."""
    responses = SPEC["paths"][path][method]["responses"]
    resp = responses.get(str(status))
    if resp is None:
        return None
    if "$ref" in resp:
        base = resp["$ref"][2:].split("/")
        resp = deref(resp)
    else:
        base = ["paths", path, method, "responses", str(status)]
    if status == 204:
        assert "content" not in resp, f"{method.upper()} {path} 204 has content"
        return pointer(*base)
    assert content_type in resp.get("content", {}), f"{method.upper()} {path} {status}: no {content_type} content"
    return pointer(*base, "content", content_type, "schema")


# --- the document ---------------------------------------------------------------------------------
def test_spec_is_valid_openapi_3():
    assert SPEC["openapi"].startswith("3.0")
    assert SPEC["info"]["title"] == "kubelab"
    assert SPEC["info"]["version"] == kubelab.__version__
    assert [server["url"] for server in SPEC["servers"]] == ["/kubelab/api"]
    schema = schemathesis.openapi.from_path(str(SPEC_FILE))
    schema.validate()  # against the OpenAPI 3.0 meta-schema; raises on the first error
    operations = [result.ok() for result in schema.get_all_operations()]  # every $ref resolves
    assert {(op.path, op.method.lower()) for op in operations} == spec_operations()
    for name, sub in JSON_SPEC["components"]["schemas"].items():
        Draft4Validator.check_schema(sub)


def test_every_route_is_documented_and_every_documented_operation_is_served():
    routes, documented = route_operations(), spec_operations()
    assert routes - documented == set(), "handlers without a spec entry: document them in openapi.yaml"
    assert documented - routes == set(), "spec entries without a handler"
    for pattern, _cls in extension_app.all_handlers():  # one spec path per route
        path = re.sub(r"\(\?P<(\w+)>\[\^/\]\+\)", r"{\1}", pattern[len(API_PREFIX):]).replace("\\.", ".")
        assert path in SPEC["paths"]


def test_every_operation_documents_auth_errors_and_its_parameters():
    assert SPEC["security"] == [{"token": []}]
    scheme = SPEC["components"]["securitySchemes"]["token"]
    assert (scheme["type"], scheme["in"], scheme["name"]) == ("apiKey", "header", "Authorization")
    operation_ids = set()
    for path, item in SPEC["paths"].items():
        for method in (m for m in item if m in HTTP_METHODS):
            op = item[method]
            where = f"{method.upper()} {path}"
            assert op["operationId"] not in operation_ids, where
            operation_ids.add(op["operationId"])
            codes = set(op["responses"])
            assert codes & {"200", "201", "204"}, where
            assert "403" in codes, f"{where}: unauthenticated requests get 403"
            for code in codes - {"200", "201", "204"}:
                schema = deref(resolve_pointer(response_schema_ref(path, method, int(code))))
                assert schema is SPEC["components"]["schemas"]["Error"], f"{where} {code}"
            params = [deref(p) for p in item.get("parameters", []) + op.get("parameters", [])]
            in_path = {p["name"] for p in params if p["in"] == "path"}
            assert in_path == set(re.findall(r"{(\w+)}", path)), where
            for p in params:
                if p["in"] == "path":
                    s = deref(p["schema"])
                    if p["name"] == "version":  # a number, v<N> or an alias
                        assert s["maxLength"] == 31, where
                        continue
                    if p["name"] == "alias":
                        assert s["pattern"] == M.ALIAS.pattern, where
                        continue
                    assert s["pattern"] == "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", where
                    limit = 63 if p["name"] == "run" else NAME_LIMITS[path.split("/")[1]]
                    assert s["maxLength"] == limit, where
            if method in ("post", "patch") and "requestBody" in op:
                assert JSON in op["requestBody"]["content"], where


def test_request_schemas_list_exactly_the_fields_the_services_accept():
    schemas = SPEC["components"]["schemas"]
    create, update, submit = schemas["ScheduleCreate"], schemas["ScheduleUpdate"], schemas["JobSubmit"]
    assert set(create["properties"]) == set(W.SCHEDULE_FIELDS)
    assert set(create["required"]) == {"name", "notebook", "schedule"}
    assert create["additionalProperties"] is False and update["additionalProperties"] is False
    assert update["properties"] == create["properties"] and "required" not in update
    assert create["properties"]["name"]["maxLength"] == W.MAX_SCHEDULE_NAME
    assert create["properties"]["concurrency_policy"]["enum"][:3] == list(W.CONCURRENCY_POLICIES)
    assert set(submit["properties"]) == set(W.TRAINING_FIELDS)
    assert submit["required"] == ["name"] and submit["additionalProperties"] is False
    assert submit["properties"]["name"]["maxLength"] == W.MAX_JOB_NAME
    assert sorted(s["required"][0] for s in submit["oneOf"]) == sorted(["script", "notebook", "code", "command"])
    assert set(schemas["RunNow"]["properties"]) == {"parameters"}
    v = validator(pointer("components", "schemas", "JobSubmit"))
    assert v.is_valid({"name": "train", "script": "train.py", "workers": 2, "env": {"A": 1}})
    assert not v.is_valid({"name": "train"})
    assert not v.is_valid({"name": "train", "script": "a.py", "command": ["python"]})
    assert not v.is_valid({"name": "train", "script": "a.py", "bogus": 1})
    v = validator(pointer("components", "schemas", "ScheduleCreate"))
    assert v.is_valid({"name": "daily", "notebook": "a.ipynb", "schedule": "0 6 * * *", "timezone": None,
                       "concurrency_policy": None, "notify": ["failure", "success"], "webhook": ""})
    assert not v.is_valid({"name": "Daily", "notebook": "a.ipynb", "schedule": "0 6 * * *"})
    assert not v.is_valid({"name": "daily", "notebook": "a.ipynb"})


# --- the views the services return match the documented response schemas -------------------------
SETTINGS = WorkspaceSettings(user="alice", namespace="kubelab-alice", image="kubelab/singleuser:test",
                             resource_groups=tuple(rg.parse(rg.DEFAULT_GROUPS)))
NOW = "2025-01-31T06:00:00Z"


def _services() -> Services:
    return Services.create(Config({"Workspace": {"settings_json": SETTINGS.to_json()}}))


def _pod(name: str, phase: str = "Running", worker: int | None = None, **status) -> dict:
    ann = {W.COMPLETION_INDEX_ANNOTATION: str(worker)} if worker is not None else {}
    return {"metadata": {"name": name, "annotations": ann, "creationTimestamp": NOW, "labels": {}},
            "spec": {"nodeName": "node-1"} if phase != "Pending" else {}, "status": {"phase": phase, **status}}


def _event(obj: str) -> dict:
    return {"type": "Warning", "reason": "FailedScheduling", "message": "0/3 nodes are available\n",
            "involvedObject": {"kind": "Pod", "name": obj}, "count": 2, "lastTimestamp": NOW,
            "metadata": {"creationTimestamp": NOW}}


def test_service_views_match_the_response_schemas():
    services = _services()
    schemas = lambda name: pointer("components", "schemas", name)  # noqa: E731
    assert_valid(services.info(), schemas("Workspace"))
    assert_valid(services.schedules.preview("*/15 * * * *", "Europe/Berlin", 3), schemas("CronPreview"))
    assert_valid(event_view(_event("x")), schemas("Event"))
    assert_valid(event_view({"metadata": {}}), schemas("Event"))

    spec = W.parse_schedule({"name": "daily", "notebook": "reports/a.ipynb", "schedule": "0 6 * * *",
                             "parameters": {"alpha": 1}, "webhook": "https://example.com/hook"},
                            SETTINGS, services.schedules.defaults)
    cj = W.schedule_cronjob(SETTINGS, spec, services.schedules.defaults)
    cj["metadata"].update(uid="u-1", creationTimestamp=NOW)
    assert_valid(services.schedules._view(cj), schemas("Schedule"))
    cj["status"] = {"lastScheduleTime": NOW, "active": [{"name": "daily-1"}]}
    cj["spec"]["suspend"] = True
    assert_valid(services.schedules._view(cj), schemas("Schedule"))
    bare = {"metadata": {"name": "bare", "labels": {W.SCHEDULE_LABEL: "bare"}},
            "spec": {"schedule": "@daily", "jobTemplate": {"spec": {}}}}
    assert_valid(services.schedules._view(bare), schemas("Schedule"))

    job = W.run_job_from_cronjob(cj, W.manual_run_name("daily", datetime.now(timezone.utc)), "manual", {"b": 2})
    job["metadata"]["creationTimestamp"] = NOW
    assert_valid(W.run_view(job), schemas("Run"))
    job["status"] = {"startTime": NOW, "completionTime": NOW, "failed": 1,
                     "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}
    record = {"output_notebook": ".kubelab/runs/daily/x/a.ipynb", "output_html": None, "parameters": {"b": 2},
              "error": {"cell": 3, "ename": "ZeroDivisionError", "evalue": "division by zero",
                        "traceback_tail": None, "execution_count": 3}}
    run = W.run_view(job, [_pod("daily-1-abc", "Failed")], [_event("daily-1-abc")], record)
    run["events"] = [event_view(_event("daily-1-abc"))]
    assert_valid(run, schemas("Run"))

    for source in ({"script": "train.py"}, {"code": "print(1)", "workers": 3}, {"command": ["python", "-V"]}):
        tspec = W.parse_training({"name": "train", **source}, SETTINGS, services.jobs.defaults)
        tjob = W.training_job(SETTINGS, tspec)
        tjob["metadata"]["creationTimestamp"] = NOW
        pods = [_pod("train-0-x", "Running", 0), _pod("train-1-y", "Pending", 1, conditions=[
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "no GPU"}])]
        view = services.jobs._view(tjob, pods, [_event("train-1-y")])
        assert_valid(view, schemas("Job"))
        view["events"] = []
        services.jobs.get = lambda name, view=view: view
        assert_valid(services.jobs.why_pending("train"), schemas("PendingReasons"))
        tjob["metadata"]["annotations"]["kubelab.io/cancelled"] = "true"
        tjob["spec"]["suspend"] = True
        cancelled = services.jobs._view(tjob, [])
        assert cancelled["status"] == "Cancelled"
        assert_valid(cancelled, schemas("Job"))
        assert_valid(cancelled, schemas("CancelledJob"))
    assert_valid(W.training_view(W.pytorchjob(SETTINGS, tspec)), schemas("Job"))
    assert_valid({"name": "train", "status": "Cancelled"}, schemas("CancelledJob"))


# --- served by a Jupyter server -------------------------------------------------------------------
@pytest.fixture
def not_spawned(monkeypatch):
    """As outside a server KubelabSpawner started: no settings, no in-cluster ServiceAccount."""
    monkeypatch.delenv("KUBELAB_SETTINGS", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_PORT", raising=False)


@pytest.fixture
def jp_server_config(not_spawned):
    return {"ServerApp": {"jpserver_extensions": {"kubelab.server_extension": True}}}


@pytest.fixture
def api(jp_serverapp, jp_fetch, http_server_client, jp_base_url, jp_asyncio_loop):
    """``api(method, path, params=..., body=..., auth=...)`` -> tornado response (never raises for a status).

    ``auth``: "token" (the server's token, via jp_fetch), None (no Authorization header
    at all), or a literal Authorization header value.
    """

    def call(method: str, path: str, *, params: dict | None = None, body: str | None = None,
             auth: str | None = "token"):
        kw = {"method": method.upper(), "raise_error": False}
        if method.upper() in ("POST", "PATCH", "PUT"):
            kw["body"] = "{}" if body is None else body
        else:
            assert body is None
        if auth is None:
            url = url_path_join(jp_base_url, "kubelab/api", path) + ("?" + urlencode(params) if params else "")
            future = http_server_client.fetch(url, **kw)
        elif auth == "token":
            future = jp_fetch("kubelab", "api", path, params=params, **kw)
        else:
            future = jp_fetch("kubelab", "api", path, params=params, headers={"Authorization": auth}, **kw)
        return jp_asyncio_loop.run_until_complete(future)

    return call


def concrete(path: str) -> str:
    return path.lstrip("/").format(**SAMPLE_PATH_ARGS)


def error_of(resp) -> dict:
    assert resp.headers.get("Content-Type", "").startswith(JSON), (resp.code, resp.headers.get("Content-Type"))
    doc = json.loads(resp.body)
    assert doc["code"] == resp.code and isinstance(doc["message"], str) and doc["message"], doc
    return doc


@pytest.mark.parametrize("auth", [None, "token not-the-token"], ids=["no-header", "wrong-token"])
def test_no_endpoint_is_unauthenticated(api, auth):
    for path, method in sorted(spec_operations()):
        resp = api(method, concrete(path), auth=auth)
        assert resp.code in (401, 403), f"{method.upper()} {path} without a valid token: {resp.code} {resp.body!r}"
        error_of(resp)
        assert response_schema_ref(path, method, resp.code), f"{method.upper()} {path}: {resp.code} undocumented"


def test_with_the_token_every_operation_answers_as_documented(api):
    """Off-cluster, every operation answers 2xx, 400 or 503 - documented, JSON errors, never a 500."""
    queries = {"/cron": {"schedule": "0 6 * * *"}}
    for path, method in sorted(spec_operations()):
        resp = api(method, concrete(path), params=queries.get(path))
        where = f"{method.upper()} {path}: {resp.code} {resp.body[:300]!r}"
        assert resp.code < 500 or resp.code == 503, where
        documented = deref(SPEC["paths"][path][method]["responses"].get(str(resp.code), {}))
        assert documented, f"undocumented status: {where}"
        if JSON in documented.get("content", {}):  # the others' Content-Type: test_spec_is_served_as_yaml
            assert resp.headers["Content-Type"].startswith(JSON), where
            assert_valid(json.loads(resp.body), response_schema_ref(path, method, resp.code))
        if resp.code >= 400:
            error_of(resp)


def test_meta_endpoints(api):
    resp = api("GET", "version")
    assert resp.code == 200 and json.loads(resp.body) == {"version": kubelab.__version__}
    resp = api("GET", "openapi.yaml")
    assert resp.code == 200 and resp.body == SPEC_FILE.read_bytes()


def test_spec_is_served_as_yaml(api):
    resp = api("GET", "openapi.yaml")
    assert resp.headers["Content-Type"].startswith("application/yaml")


@pytest.mark.parametrize("path", ["schedules", "jobs", "workspace", "schedules/demo", "jobs/demo/pending"])
def test_not_started_by_kubelab_spawner_is_503_in_one_line(api, path):
    resp = api("GET", path)
    assert resp.code == 503, resp.body
    message = error_of(resp)["message"]
    assert "not started by KubelabSpawner" in message
    assert "\n" not in message and "Traceback" not in message


def test_cron_preview(api):
    resp = api("GET", "cron", params={"schedule": "61 * * * *"})
    assert resp.code == 400
    assert "minute" in error_of(resp)["message"]

    resp = api("GET", "cron", params={"schedule": "*/15 * * * *", "timezone": "Europe/Berlin", "count": 3})
    assert resp.code == 200, resp.body
    doc = json.loads(resp.body)
    assert_valid(doc, response_schema_ref("/cron", "get", 200))
    assert (doc["schedule"], doc["timezone"]) == ("*/15 * * * *", "Europe/Berlin")
    assert len(doc["next_runs"]) == 3 and len(doc["next_runs_local"]) == 3
    times = [datetime.strptime(t, "%Y-%m-%dT%H:%M:%SZ") for t in doc["next_runs"]]
    assert times == sorted(times) and all(t.minute % 15 == 0 and t.second == 0 for t in times)
    assert all(t.endswith(("+01:00", "+02:00")) for t in doc["next_runs_local"]), doc["next_runs_local"]

    assert len(json.loads(api("GET", "cron", params={"schedule": "@daily"}).body)["next_runs"]) == 5
    for params in ({}, {"schedule": "0 6 * * *", "count": 0}, {"schedule": "0 6 * * *", "count": 51},
                   {"schedule": "0 6 * * *", "count": "x"}, {"schedule": "0 6 * * *", "timezone": "Mars/Base"},
                   {"schedule": "0 0 * * * *"}):
        resp = api("GET", "cron", params=params)
        assert resp.code == 400, (params, resp.body)
        assert "\n" not in error_of(resp)["message"]


@pytest.mark.parametrize("method, path", [("POST", "schedules"), ("PATCH", "schedules/demo"),
                                          ("POST", "schedules/demo/runs"), ("POST", "jobs")])
def test_a_body_that_is_not_json_is_a_400(api, method, path):
    for body in ("{not json", "\x00\xff", "[1, 2"):
        resp = api(method, path, body=body)
        assert resp.code in (400, 503), (body, resp.code, resp.body)
        assert "\n" not in error_of(resp)["message"]


def test_bad_query_and_run_now_bodies_are_400_without_a_cluster(api):
    for path, params in (("schedules/demo/runs/demo-1/logs", {"follow": "maybe"}),
                         ("schedules/demo/runs/demo-1/logs", {"tail": -1}),
                         ("jobs/demo/logs", {"worker": "x"}),
                         ("jobs/demo/logs", {"worker": -1}),
                         ("jobs/demo/logs", {"tail": "ten"})):
        resp = api("GET", path, params=params)
        assert resp.code == 400, (path, params, resp.body)
        error_of(resp)
    for body in ("[]", '{"parameters": {}, "extra": 1}', '"x"'):
        resp = api("POST", "schedules/demo/runs", body=body)
        assert resp.code == 400, (body, resp.body)
        error_of(resp)
