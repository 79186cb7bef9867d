"""Scheduled notebooks end to end: a user's server spawned by the hub on
devcluster, its REST API through the proxy, real CronJobs and papermill runs."""
from __future__ import annotations

import pytest

from tests.server_extension.conftest import notebook
from tests.waiting import eventually

pytestmark = pytest.mark.e2e


def test_api_answers_in_a_spawned_server(alice, bob):
    assert alice.ok("GET", "version")["version"]
    ws = alice.ok("GET", "workspace")
    assert ws["namespace"] == alice.namespace and ws["default_resource_group"] == "cpu"
    # the groups each user may submit work to: alice is in gpu-users; approval groups need an approved spawn
    assert {g["name"] for g in ws["resource_groups"]} == {"cpu", "gpu-a100"}
    assert {g["name"] for g in bob.ok("GET", "workspace")["resource_groups"]} == {"cpu"}


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
    listed = {s["name"]: s for s in alice.ok("GET", "schedules")["schedules"]}
    assert listed["nightly"]["parameters"] == {"alpha": 42} and listed["nightly"]["timezone"] == "Europe/Berlin"


def test_failing_notebook_gives_a_failed_run_with_the_cells_error(alice):
    alice.put_file("sched/failing.ipynb", FAILING_NB)
    alice.api("DELETE", "schedules/failing")
    alice.ok("POST", "schedules", 201, json={"name": "failing", "notebook": "sched/failing.ipynb",
                                             "schedule": "0 0 1 1 *", "suspend": True})
    run = alice.ok("POST", "schedules/failing/runs", 201)
    done = _wait_run(alice, "failing", run["id"])
    assert done["status"] == "Failed", done
    assert "ZeroDivisionError: division by zero" in done["message"], done
    assert done["error"]["ename"] == "ZeroDivisionError"
    history = alice.ok("GET", "schedules/failing/runs")["runs"]
    assert history[0]["id"] == run["id"] and history[0]["status"] == "Failed"
    assert "ZeroDivisionError" in history[0]["message"]
    logs = alice.api("GET", f"schedules/failing/runs/{run['id']}/logs").text
    assert "ZeroDivisionError" in logs and "never" not in logs.split("ZeroDivisionError")[-1]
    # the executed copy is kept, with the error in it, for the user to open
    out = alice.get_file(done["output_notebook"]).json()
    assert "ZeroDivisionError" in str(out["content"])
    events = alice.ok("GET", f"schedules/failing/runs/{run['id']}/events")["events"]
    assert any(e["object"].startswith("Job/") for e in events), events
    alice.ok("DELETE", "schedules/failing", 204)
    assert alice.api("GET", "schedules/failing").status_code == 404


@pytest.mark.parametrize("body, message", [
    ({"name": "ok-name", "notebook": "sched/params.ipynb", "schedule": "61 * * * *"}, "minute"),
    ({"name": "ok-name", "notebook": "sched/params.ipynb", "schedule": "0 6 * * *", "timezone": "Mars/Base"},
     "time zone"),
    ({"name": "Bad_Name", "notebook": "sched/params.ipynb", "schedule": "0 6 * * *"}, "invalid"),
    ({"name": "n" * 53, "notebook": "sched/params.ipynb", "schedule": "0 6 * * *"}, "too long"),
    ({"name": "ok-name", "notebook": "sched/missing.ipynb", "schedule": "0 6 * * *"}, "not found"),
    ({"name": "ok-name", "notebook": "../wl-bob/x.ipynb", "schedule": "0 6 * * *"}, "outside your home"),
    ({"name": "ok-name", "notebook": "/etc/passwd.ipynb", "schedule": "0 6 * * *"}, "outside your home"),
    ({"name": "ok-name", "notebook": "sched/params.ipynb", "schedule": "0 6 * * *", "retries": 99}, "retries"),
    ({"name": "ok-name", "notebook": "sched/params.ipynb", "schedule": "0 6 * * *", "gpus": 1}, "GPUs"),
    ({"name": "ok-name", "notebook": "sched/params.ipynb", "schedule": "0 6 * * *", "colour": "red"}, "unknown"),
])
def test_bad_schedules_are_refused_and_nothing_is_created(alice, kubectl, body, message):
    alice.put_file("sched/params.ipynb", PARAMS_NB)
    r = alice.api("POST", "schedules", json=body)
    assert r.status_code == 400, r.text
    err = r.json()
    assert err["code"] == 400 and message in err["message"] and "\n" not in err["message"], err
    assert kubectl("get", "cronjobs", "-n", alice.namespace, "-o", "name").count("ok-name") == 0
    assert not alice.get_file("/.kubelab/schedules/ok-name").ok


def test_not_json_and_unknown_schedule_are_4xx(alice):
    r = alice.api("POST", "schedules", data="{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "JSON" in r.json()["message"]
    assert alice.api("GET", "schedules/does-not-exist").status_code == 404
    assert alice.api("POST", "schedules/does-not-exist/runs").status_code == 404
    assert alice.api("PATCH", "schedules/does-not-exist", json={"suspend": True}).status_code == 404
    assert alice.api("GET", "cron", params={"schedule": "* * *"}).status_code == 400


def test_schedule_fires_every_minute_while_its_server_is_stopped_and_suspend_stops_it(hub, kubectl, s3_env):
    """The CronJob is the record: it keeps firing with the user's server gone."""
    import boto3

    from tests.server_extension.conftest import UserServer

    name = "wl-carol"
    hub.ensure_user(name)
    hub.spawn(name, {"resource_group": "cpu"})
    carol = UserServer(hub, name)
    carol.put_file("every/minute.ipynb", PARAMS_NB)
    carol.api("DELETE", "schedules/minutely")
    carol.ok("POST", "schedules", 201, json={"name": "minutely", "notebook": "every/minute.ipynb",
                                             "schedule": "* * * * *", "parameters": {"alpha": 7}})
    hub.stop(name)

    def fired_and_succeeded():
        jobs = kubectl.json("get", "jobs", "-n", carol.namespace, "-l", "kubelab.io/schedule=minutely")["items"]
        done = [j for j in jobs if any(c["type"] == "Complete" and c["status"] == "True"
                                       for c in j.get("status", {}).get("conditions", []))]
        return done or None
    eventually(fired_and_succeeded, 200, 3, what="a scheduled run completed while the server was stopped")

    s3 = boto3.client("s3", endpoint_url=s3_env["AWS_ENDPOINT_URL"], aws_access_key_id=s3_env["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=s3_env["AWS_SECRET_ACCESS_KEY"], region_name="us-east-1")
    bucket = s3_env["KUBELAB_S3_BUCKET"]
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=f"users/{name}/.kubelab/runs/minutely/")
            .get("Contents", [])]
    executed = [k for k in keys if k.endswith("/minute.ipynb")]
    assert executed, keys
    body = s3.get_object(Bucket=bucket, Key=executed[0])["Body"].read().decode()
    assert "alpha = 7" in body and "alpha=7 beta=x" in body, body[:2000]

    hub.spawn(name, {"resource_group": "cpu"})
    runs = carol.ok("GET", "schedules/minutely/runs")["runs"]
    assert any(r["trigger"] == "schedule" and r["status"] == "Succeeded" and r["output_notebook"] for r in runs), runs
    assert carol.ok("PATCH", "schedules/minutely", json={"suspend": True})["next_runs"] == []
    before = {r["id"] for r in carol.ok("GET", "schedules/minutely/runs")["runs"]}
    import time
    time.sleep(75)  # more than a minute boundary: a suspended CronJob starts nothing
    after = {r["id"] for r in carol.ok("GET", "schedules/minutely/runs")["runs"]}
    assert after <= before, after - before
    carol.ok("DELETE", "schedules/minutely", 204)
    hub.stop(name)


def test_update_changes_cron_parameters_and_limits_and_webhook_reports_runs(alice):
    import http.server
    import json
    import threading

    from devcluster.paths import BRIDGE_IP

    received: list[dict] = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's naming
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer((BRIDGE_IP, 0), Hook)  # where pods reach the host
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        alice.put_file("sched/params.ipynb", PARAMS_NB)
        alice.api("DELETE", "schedules/hooked")
        alice.ok("POST", "schedules", 201, json={"name": "hooked", "notebook": "sched/params.ipynb",
                                                 "schedule": "0 6 * * *", "suspend": True})
        url = f"http://{BRIDGE_IP}:{srv.server_port}/hook"
        updated = alice.ok("PATCH", "schedules/hooked", json={
            "schedule": "30 7 * * 1-5", "timezone": "America/New_York", "parameters": {"alpha": 9},
            "timeout_seconds": 900, "retries": 1, "webhook": url, "notify": ["success", "failure"]})
        assert updated["schedule"] == "30 7 * * 1-5" and updated["timezone"] == "America/New_York"
        assert updated["timeout_seconds"] == 900 and updated["retries"] == 1 and updated["parameters"] == {"alpha": 9}
        assert updated["suspend"] is True and updated["next_runs"] == []
        resumed = alice.ok("PATCH", "schedules/hooked", json={"suspend": False})
        assert len(resumed["next_runs"]) == 5 and all(t.endswith(("11:30:00Z", "12:30:00Z"))
                                                      for t in resumed["next_runs"]), resumed["next_runs"]
        assert alice.api("PATCH", "schedules/hooked", json={"name": "renamed"}).status_code == 400
        assert alice.api("PATCH", "schedules/hooked", json={"schedule": "nope"}).status_code == 400
        assert alice.ok("GET", "schedules/hooked")["schedule"] == "30 7 * * 1-5"  # a refused update changes nothing
        run = alice.ok("POST", "schedules/hooked/runs", 201)
        assert _wait_run(alice, "hooked", run["id"])["status"] == "Succeeded"
        eventually(lambda: received or None, 60, 1, what="the webhook was called")
        assert received[0]["event"] == "run.succeeded"
        assert received[0]["run"]["run_id"] == run["id"] and received[0]["run"]["parameters"] == {"alpha": 9}
    finally:
        srv.shutdown()
        alice.api("DELETE", "schedules/hooked")
