"""The external trigger API end to end: a token with the custom scope for
adm-alice's schedules starts one run per Idempotency-Key, with parameter
overrides, on devcluster; other tokens are refused; an admin stops a runaway run."""
from __future__ import annotations

import uuid

import pytest

from tests.hub.conftest import ALICE, BOB, Client, assert_error, new_token
from tests.server_extension.conftest import UserServer, notebook
from tests.waiting import eventually

pytestmark = pytest.mark.e2e

SCHEDULE = "adm-report"
SCOPE = f"custom:kubelab-schedules:run!user={ALICE}"
NB = notebook("print(f'alpha={alpha}')", "import time\ntime.sleep(sleep_s)", "assert not fail, 'asked to fail'",
              parameters="alpha = 1\nsleep_s = 0\nfail = False")
RUNS = f"api/users/{ALICE}/schedules/{SCHEDULE}/runs"
RUN_ID = uuid.uuid4().hex[:6]  # keys unique to this test session (the audit log outlives namespaces)


@pytest.fixture(scope="module")
def schedule(admin_hub, adm_users):
    """adm-alice's schedule (suspended: only triggers run it), made through her server's REST API."""
    alice = UserServer(admin_hub, ALICE)
    alice.put_file("adm/report.ipynb", NB)
    alice.api("DELETE", f"schedules/{SCHEDULE}")
    alice.ok("POST", "schedules", 201, json={"name": SCHEDULE, "notebook": "adm/report.ipynb",
                                             "schedule": "0 0 1 1 *", "suspend": True, "resource_group": "cpu",
                                             "parameters": {"alpha": 1}})
    yield SCHEDULE
    alice.api("DELETE", f"schedules/{SCHEDULE}")


@pytest.fixture(scope="module")
def trigger(admin_hub, adm_users) -> Client:
    """A token of adm-alice's that carries only the trigger scope for her own schedules."""
    return Client(admin_hub, new_token(admin_hub, ALICE, [SCOPE]))


def runs_with_key(kubectl, key: str) -> list[dict]:
    jobs = kubectl.json("-n", f"kubelab-{ALICE}", "get", "jobs", "-l", f"kubelab.io/schedule={SCHEDULE}")["items"]
    return [j for j in jobs if j["metadata"].get("annotations", {}).get("kubelab.io/idempotency-key") == key]


def wait_finished(client: Client, run: str, timeout: float = 300) -> dict:
    def done():
        view = client.ok("GET", f"{RUNS}/{run}")
        return view if view["status"] in ("Succeeded", "Failed") else None
    return eventually(done, timeout, 2, what=f"run {run} finished")


def test_a_repeated_key_runs_the_notebook_once_with_the_override(schedule, trigger, kubectl, admin):
    key = f"nightly-export-2026-11-23T06:00-{RUN_ID}"
    first = trigger.ok("POST", RUNS, 201, json={"parameters": {"alpha": 42}}, headers={"Idempotency-Key": key})
    run = first["run"]
    assert first["status_url"].endswith(f"{RUNS}/{run}") and first["parameters"] == {"alpha": 42}
    again = trigger.ok("POST", RUNS, 200, json={"parameters": {"alpha": 42}}, headers={"Idempotency-Key": key})
    assert again["run"] == run
    assert len(runs_with_key(kubectl, key)) == 1, "a repeated key started no second Job"
    assert_error(trigger("POST", RUNS, json={"parameters": {"alpha": 43}}, headers={"Idempotency-Key": key}),
                 409, "different parameters")

    done = wait_finished(trigger, run)
    assert done["status"] == "Succeeded", done
    assert done["trigger"] == "external" and done["triggered_by"] == ALICE and done["idempotency_key"] == key
    log = kubectl("-n", f"kubelab-{ALICE}", "logs", f"job/{run}")
    assert "alpha=42" in log, log[-2000:]
    assert len(runs_with_key(kubectl, key)) == 1
    audit = admin.ok("GET", "api/audit", params={"action": "trigger"})["entries"]
    mine = [e for e in audit if e["details"].get("idempotency_key") == key]
    assert [e["result"] for e in mine] == ["replayed", "ok"], mine


def test_tokens_without_the_scope_for_that_user_get_403(admin_hub, schedule, kubectl):
    before = kubectl("-n", f"kubelab-{ALICE}", "get", "jobs", "-o", "name")
    no_scope = Client(admin_hub, new_token(admin_hub, ALICE, ["read:users!user"]))
    assert_error(no_scope("POST", RUNS, json={}, headers={"Idempotency-Key": "k1"}), 403,
                 f"custom:kubelab-schedules:run!user={ALICE}")
    bob = Client(admin_hub, new_token(admin_hub, BOB))  # bob's full token: his own schedules only
    assert_error(bob("POST", RUNS, json={}, headers={"Idempotency-Key": "k2"}), 403, f"{ALICE}'s schedules")
    assert_error(bob("GET", f"{RUNS}/{SCHEDULE}-0000000000"), 403)
    anon = Client(admin_hub, None)
    assert_error(anon("POST", RUNS, json={}, headers={"Idempotency-Key": "k3"}), 401)
    assert kubectl("-n", f"kubelab-{ALICE}", "get", "jobs", "-o", "name") == before, "no run was started"


@pytest.mark.parametrize("path, body, headers, status, words", [
    (RUNS, {}, {}, 400, ["Idempotency-Key header is required"]),
    (RUNS, {}, {"Idempotency-Key": "x" * 201}, 400, ["Idempotency-Key"]),
    (RUNS, {}, {"Idempotency-Key": "has space"}, 400, ["Idempotency-Key"]),
    (RUNS, {"parameters": [1, 2]}, {"Idempotency-Key": "p1"}, 400, ["parameters"]),
    (RUNS, {"parameters": {"not a name": 1}}, {"Idempotency-Key": "p2"}, 400, ["not a valid Python name"]),
    (RUNS, {"params": {}}, {"Idempotency-Key": "p3"}, 400, ["unknown field"]),
    (RUNS, {"parameters": {"blob": "x" * 70000}}, {"Idempotency-Key": "p4"}, 413, ["larger than"]),
    (f"api/users/{ALICE}/schedules/Bad_Name/runs", {}, {"Idempotency-Key": "p5"}, 400, ["invalid"]),
    (f"api/users/{ALICE}/schedules/no-such-schedule/runs", {}, {"Idempotency-Key": "p6"}, 404, ["no schedule"]),
    (f"{RUNS}/{SCHEDULE}-ffffffffff", None, {}, 404, ["not found"]),
])
def test_bad_trigger_requests_get_a_clear_4xx_and_start_nothing(schedule, trigger, kubectl, path, body, headers,
                                                                status, words):
    before = kubectl("-n", f"kubelab-{ALICE}", "get", "jobs", "-o", "name")
    method = "GET" if body is None else "POST"
    assert_error(trigger(method, path, json=body, headers=headers), status, *words)
    assert kubectl("-n", f"kubelab-{ALICE}", "get", "jobs", "-o", "name") == before


def test_a_failed_run_shows_in_its_status_and_in_the_cluster_warnings(schedule, trigger, admin):
    run = trigger.ok("POST", RUNS, 201, json={"parameters": {"fail": True}},
                     headers={"Idempotency-Key": f"fail-once-{RUN_ID}"})["run"]
    done = wait_finished(trigger, run)
    assert done["status"] == "Failed" and done["parameters"]["fail"] is True, done
    # the admin's Events page shows the cluster's warning about it
    events = eventually(lambda: [e for e in admin.ok("GET", "api/events")["events"]
                                 if e["object"] == f"Job/{run}"], 120, 2, what="warning event for the run")
    assert events[0]["reason"] == "BackoffLimitExceeded" and events[0]["user"] == ALICE
    failed = admin.ok("GET", "api/workloads", params={"user": ALICE, "kind": "run", "status": "Failed"})
    assert run in [w["name"] for w in failed["workloads"]]


def test_an_admin_stops_a_runaway_run(schedule, trigger, admin, kubectl):
    run = trigger.ok("POST", RUNS, 201, json={"parameters": {"sleep_s": 1800}},
                     headers={"Idempotency-Key": f"runaway-{RUN_ID}"})["run"]
    eventually(lambda: trigger.ok("GET", f"{RUNS}/{run}")["status"] == "Running", 240, 2, what=f"{run} running")
    rows = admin.ok("GET", "api/workloads", params={"user": ALICE, "kind": "run"})["workloads"]
    assert [w for w in rows if w["name"] == run and w["stoppable"] and w["status"] == "Running"], rows
    stopped = admin.ok("POST", f"api/workloads/jobs/kubelab-{ALICE}/{run}/stop")
    assert stopped["status"] == "Cancelled"
    eventually(lambda: kubectl("-n", f"kubelab-{ALICE}", "get", "pods", "-l", f"batch.kubernetes.io/job-name={run}",
                               "-o", "name").strip() == "", 120, 2, what="the run's pod gone")
    row = [w for w in admin.ok("GET", "api/workloads", params={"user": ALICE})["workloads"] if w["name"] == run][0]
    assert row["status"] == "Cancelled" and row["detail"] == "cancelled by admin" and not row["stoppable"]
    assert_error(admin("POST", f"api/workloads/jobs/kubelab-{ALICE}/no-such-job/stop"), 404)
    assert_error(admin("POST", "api/workloads/jobs/kube-system/coredns/stop"), 404, "no user namespace")
    entry = admin.ok("GET", "api/audit", params={"action": "job.stop"})["entries"][0]
    assert entry["target"] == f"job:kubelab-{ALICE}/{run}" and entry["actor"] == "admin"
