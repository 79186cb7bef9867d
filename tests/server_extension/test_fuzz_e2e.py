"""A fuzz pass over the REST API's OpenAPI spec (schemathesis) finds no 5xx.

Every operation of server_extension/openapi.yaml is called with generated
requests (valid and invalid) on a real server spawned by the hub for a
dedicated user, ``wl-fuzz``, through the proxy with the test service's
token. Each answer must not be a server error and must match the spec: a
documented status code, its content type and its schema.

A schedule and a job with the names the spec uses as examples
(``daily-report``, ``train-resnet``) exist before each operation, so the
generated requests reach real objects too, not only 404s. Log requests that
follow (``follow=true``) would block until the pod ends: those cases are
left out. Afterwards everything in wl-fuzz's namespace is deleted (through
the API) and its server stopped.
"""
from __future__ import annotations

import shutil
from collections import Counter, defaultdict
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (content_type_conformance, not_a_server_error, response_schema_conformance,
                                 status_code_conformance)

import kubelab.server_extension
from tests.server_extension.conftest import UserServer, notebook
from tests.waiting import eventually

pytestmark = pytest.mark.e2e

USER = "wl-fuzz"
SPEC = Path(kubelab.server_extension.__file__).resolve().parent / "openapi.yaml"
SEED = 20261123
MAX_EXAMPLES = 25
# The names the spec gives as examples: the explicit and coverage phases use them.
SCHEDULE, JOB, NOTEBOOK = "daily-report", "train-resnet", "fuzz/report.ipynb"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

schema = schemathesis.openapi.from_path(SPEC, config=schemathesis.Config.from_dict({
    "seed": SEED,
    "suppress-health-check": ["all"],
    "request-timeout": 60,
    "generation": {"max-examples": MAX_EXAMPLES, "no-shrink": True},
}))


class Target:
    def __init__(self, hub) -> None:
        self.hub = hub
        self.user = UserServer(hub, USER)
        self.base_url = f"{hub.url}/user/{USER}/kubelab/api"
        self.headers = {"Authorization": f"token {hub.token}"}
        self.session = requests.Session()
        self.session.trust_env = False
        self.skipped_follow = 0
        self.answers: dict[str, Counter] = defaultdict(Counter)  # operation -> status -> count

    def ensure_objects(self) -> None:
        """The example schedule and job exist (earlier operations may have deleted them)."""
        if self.user.api("GET", f"schedules/{SCHEDULE}").status_code == 404:
            self.user.ok("POST", "schedules", 201, json={"name": SCHEDULE, "notebook": NOTEBOOK,
                                                         "schedule": "0 0 1 1 *", "suspend": True})
        job = self.user.api("GET", f"jobs/{JOB}")
        if job.status_code == 200 and job.json()["status"] == "Cancelled":  # no log any more: a fresh one
            self.user.api("DELETE", f"jobs/{JOB}")
            eventually(lambda: self.user.api("GET", f"jobs/{JOB}").status_code == 404, 60, 1,
                       what=f"job {JOB} deleted")
            job = self.user.api("GET", f"jobs/{JOB}")
        if job.status_code == 404:
            self.user.ok("POST", "jobs", 201, json={"name": JOB, "command": ["python", "-c", "print('fuzz')"]})
            eventually(lambda: self.user.ok("GET", f"jobs/{JOB}")["status"] in ("Succeeded", "Failed"), 120, 1,
                       what=f"job {JOB} finished")

    def cleanup(self) -> list[str]:
        """Delete every schedule and job in the namespace (through the API); what could not be deleted."""
        left = []
        for kind, key in (("schedules", "schedules"), ("jobs", "jobs")):
            r = self.user.api("GET", kind)
            if r.status_code != 200:
                left.append(f"GET {kind}: {r.status_code} {r.text[:200]}")
                continue
            for obj in r.json()[key]:
                d = self.user.api("DELETE", f"{kind}/{obj['name']}")
                if d.status_code not in (204, 404):
                    left.append(f"DELETE {kind}/{obj['name']}: {d.status_code} {d.text[:200]}")
        return left


@pytest.fixture(scope="module")
def target(hub):
    hub.ensure_user(USER)
    if not (hub.server(USER) or {}).get("ready"):
        if (hub.server(USER) or {}).get("pending"):
            hub.wait_ready(USER)
        else:
            hub.spawn(USER, {"resource_group": "cpu"})
    t = Target(hub)
    t.user.put_file(NOTEBOOK, notebook("print('fuzz report')"))
    try:
        yield t
    finally:
        print(f"\nfuzz answers (follow=true cases left out: {t.skipped_follow}):")
        for op, statuses in sorted(t.answers.items()):
            print(f"  {op}: {dict(sorted(statuses.items()))}")
        try:
            left = t.cleanup()
            eventually(lambda: not t.user.ok("GET", "jobs")["jobs"] and not t.user.ok("GET", "schedules")["schedules"],
                       120, 2, what="wl-fuzz's schedules and jobs deleted")
            for path in (NOTEBOOK, NOTEBOOK.split("/")[0]):
                hub.s.delete(f"{hub.url}/user/{USER}/api/contents/{path}", timeout=60)
        finally:
            hub.stop(USER)
    assert not left, f"left behind in wl-fuzz's namespace: {left}"


@pytest.fixture
def objects(target) -> Target:
    target.ensure_objects()
    return target


def _follows(case) -> bool:
    """Would the handler follow the log (and so block until the pod ends)? As handlers.bool_arg reads it."""
    value = (case.query or {}).get("follow")
    values = value if isinstance(value, list) else [value]
    return any(v is True or (isinstance(v, (str, bytes)) and str(v).lower() in ("1", "true", "yes"))
               for v in values if v is not None)


def _defuse(case) -> None:
    """A generated job command that names a real program (pods see the host's tools on devcluster) runs echo."""
    body = case.body
    if case.method.upper() == "POST" and case.path == "/jobs" and isinstance(body, dict):
        cmd = body.get("command")
        if isinstance(cmd, list) and cmd and isinstance(cmd[0], str) and cmd[0] and shutil.which(cmd[0]):
            body["command"] = ["echo", *cmd[1:]]


@schema.parametrize()
@settings(suppress_health_check=list(HealthCheck), deadline=None, database=None)
def test_fuzz_finds_no_server_error(case, objects):
    if _follows(case):
        objects.skipped_follow += 1
        return
    _defuse(case)
    response = case.call(base_url=objects.base_url, headers=objects.headers, session=objects.session, timeout=60)
    objects.answers[f"{case.method.upper()} {case.path}"][response.status_code] += 1
    case.validate_response(response, checks=CHECKS, headers=objects.headers)
