"""Scheduled notebooks end to end: a user's server spawned by the hub on
devcluster, its REST API through the proxy, real CronJobs and papermill runs."""
from __future__ import annotations

import pytest

from tests.server_extension.conftest import notebook
from tests.waiting import eventually

pytestmark = pytest.mark.e2e


def test_api_answers_in_a_spawned_server(alice):
    assert alice.ok("GET", "version")["version"]
    ws = alice.ok("GET", "workspace")
    assert ws["namespace"] == alice.namespace
    assert "cpu" in [g["name"] for g in ws["resource_groups"]]


PARAMS_NB = notebook("print(f'alpha={alpha} beta={beta}')", "open('alpha.txt', 'w').write(str(alpha))",
                     parameters="alpha = 1\nbeta = 'x'")
FAILING_NB = notebook("x = 1", "y = x / 0", "print('never')")


def _wait_run(user, schedule, run_id, timeout=240):
    def finished():
        run = user.ok("GET", f"schedules/{schedule}/runs/{run_id}")
        return run if run["status"] in ("Succeeded", "Failed") else None
    return eventually(finished, timeout, 2, what=f"run {run_id} of {schedule} finished")


def test_run_now_executes_the_snapshot_with_parameters(alice):
    alice.put_file("sched/params.ipynb", PARAMS_NB)
    alice.api("DELETE", "schedules/nightly")
    created = alice.ok("POST", "schedules", 201, json={
        "name": "nightly", "notebook": "sched/params.ipynb", "schedule": "0 3 * * *",
        "timezone": "Europe/Berlin", "parameters": {"alpha": 42}})
    assert len(created["next_runs"]) == 5 and created["next_runs"][0].endswith(("01:00:00Z", "02:00:00Z"))
    # later edits of the notebook do not change what runs: the snapshot does
    alice.put_file("sched/params.ipynb", notebook("raise SystemExit('edited after scheduling')"))
    run = alice.ok("POST", "schedules/nightly/runs", 201, json={"parameters": {"beta": "manual"}})
    done = _wait_run(alice, "nightly", run["id"])
    assert done["status"] == "Succeeded", done
    assert done["trigger"] == "manual" and done["duration_seconds"] is not None
    out = alice.get_file(done["output_notebook"] + "?content=1").json()
    text = str(out["content"])
    assert "alpha=42 beta=manual" in text, text[:2000]
    assert alice.get_file(done["output_html"]).status_code == 200
    logs = alice.api("GET", f"schedules/nightly/runs/{run['id']}/logs")
    assert logs.status_code == 200 and "alpha=42 beta=manual" in logs.text, logs.text
    assert [r["id"] for r in alice.ok("GET", "schedules/nightly/runs")["runs"]][0] == run["id"]
