"""Training jobs end to end, submitted through a spawned server's REST API."""
from __future__ import annotations

import time

import pytest

from tests.server_extension.conftest import notebook
from tests.waiting import eventually

pytestmark = pytest.mark.e2e

RENDEZVOUS = """
import os, socket, time
rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
addr, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
print(f"rank={rank} world={world} master={addr}", flush=True)
if rank == 0:
    srv = socket.create_server(("", port))
    conn, _ = srv.accept()
    print("rank 0 got hello from rank", conn.recv(16).decode(), flush=True)
else:
    for _ in range(120):
        try:
            socket.create_connection((addr, port), timeout=2).sendall(str(rank).encode())
            break
        except OSError:
            time.sleep(0.5)
    else:
        raise SystemExit("could not reach rank 0")
    print(f"rank {rank} said hello", flush=True)
"""


def _wait(user, name, statuses=("Succeeded", "Failed"), timeout=240):
    def done():
        job = user.ok("GET", f"jobs/{name}")
        return job if job["status"] in statuses else None
    return eventually(done, timeout, 2, what=f"job {name} in {statuses}")


def _fresh(user, *names):
    for n in names:
        user.api("DELETE", f"jobs/{n}")
    eventually(lambda: all(user.api("GET", f"jobs/{n}").status_code == 404 for n in names), 60, 1,
               what="old jobs gone")


def test_two_workers_see_distinct_ranks_and_rendezvous(alice):
    _fresh(alice, "ddp")
    job = alice.ok("POST", "jobs", 201, json={"name": "ddp", "code": RENDEZVOUS, "workers": 2})
    assert job["workers"] == 2 and job["status"] in ("Pending", "Running")
    done = _wait(alice, "ddp")
    assert done["status"] == "Succeeded", done
    assert sorted(p["worker"] for p in done["pods"]) == [0, 1]
    log0 = alice.api("GET", "jobs/ddp/logs", params={"worker": 0}).text
    log1 = alice.api("GET", "jobs/ddp/logs", params={"worker": 1}).text
    assert "rank=0 world=2" in log0 and "rank 0 got hello from rank 1" in log0, log0
    assert "rank=1 world=2" in log1 and "rank 1 said hello" in log1, log1
    alice.ok("DELETE", "jobs/ddp", 204)


def test_gpu_job_gets_its_gpu_waits_on_quota_and_cancel_removes_pods(alice, kubectl):
    _fresh(alice, "gpu-hold", "gpu-wait")
    hold = alice.ok("POST", "jobs", 201, json={
        "name": "gpu-hold", "resource_group": "gpu-a100", "gpus": 2,
        "command": ["python", "-c", "import os,time; print('gpus', os.environ['CUDA_VISIBLE_DEVICES'], flush=True);"
                    " time.sleep(600)"]})
    assert hold["resource_group"] == "gpu-a100" and hold["gpus"] == 2
    running = _wait(alice, "gpu-hold", ("Running",))
    assert running["pods"][0]["node"] == "kubelab-gpu-0"
    eventually(lambda: "gpus " in alice.api("GET", "jobs/gpu-hold/logs").text, 60, 1, what="gpu-hold logged")
    gpus = alice.api("GET", "jobs/gpu-hold/logs").text.split("gpus ", 1)[1].split()[0]
    assert len(gpus.split(",")) == 2, gpus
    # the Resources panel's numbers: both GPUs held, the quota's GPU headroom used up
    res = alice.ok("GET", "resources")
    assert res["namespace"] == alice.namespace and res["gpus_in_use"] == 2, res
    gpu_row = {r["resource"]: r for r in res["quota"]}["requests.nvidia.com/gpu"]
    assert gpu_row["used_value"] == 2 and gpu_row["hard_value"] == 2, gpu_row
    a100 = {g["name"]: g for g in res["groups"]}["gpu-a100"]
    assert a100["gpu_quota_headroom"] == 0, res["groups"]
    assert a100["free_gpus"] is not None and a100["free_gpus"] >= 0, a100  # from the hub's capacity API

    # the group's quota (2 GPUs) is used up: the next GPU job waits, and says why
    alice.ok("POST", "jobs", 201, json={"name": "gpu-wait", "resource_group": "gpu-a100", "gpus": 1,
                                        "command": ["python", "-c", "print('second gpu job ran')"]})

    def quota_reason():
        why = alice.ok("GET", "jobs/gpu-wait/pending")
        return why if why["pending"] and any("exceeded quota" in r for r in why["reasons"]) else None
    why = eventually(quota_reason, 90, 2, what="gpu-wait pending on quota")
    assert "nvidia.com/gpu" in " ".join(why["reasons"])
    events = alice.ok("GET", "jobs/gpu-wait/events")["events"]
    assert any(e["reason"] == "FailedCreate" and "exceeded quota" in e["message"] for e in events), events

    cancelled = alice.ok("POST", "jobs/gpu-hold/cancel")
    assert cancelled["status"] == "Cancelled"
    eventually(lambda: not kubectl.json("get", "pods", "-n", alice.namespace, "-l",
                                        "kubelab.io/job=gpu-hold")["items"], 60, 1, what="gpu-hold's pods gone")
    assert alice.ok("GET", "jobs/gpu-hold")["status"] == "Cancelled"
    done = _wait(alice, "gpu-wait", timeout=300)
    assert done["status"] == "Succeeded", done
    assert "second gpu job ran" in alice.api("GET", "jobs/gpu-wait/logs").text
    for n in ("gpu-hold", "gpu-wait"):
        alice.ok("DELETE", f"jobs/{n}", 204)
    assert alice.api("GET", "jobs/gpu-hold").status_code == 404


def test_script_and_notebook_jobs_run_in_the_home_and_record_the_model(alice):
    _fresh(alice, "script-job", "nb-job")
    alice.put_file("train/train.py", "import sys, os\nos.makedirs('train/out', exist_ok=True)\n"
                                     "open('train/out/model.txt', 'w').write('weights')\n"
                                     "print('trained with', sys.argv[1:])\n")
    alice.put_file("train/train.ipynb", notebook("print('lr is', lr)", parameters="lr = 0.1"))
    alice.ok("POST", "jobs", 201, json={"name": "script-job", "script": "train/train.py", "args": ["--epochs", "3"],
                                        "output_model": "train/out/model.txt"})
    alice.ok("POST", "jobs", 201, json={"name": "nb-job", "notebook": "train/train.ipynb",
                                        "parameters": {"lr": 0.5}})
    s = _wait(alice, "script-job")
    assert s["status"] == "Succeeded", s
    assert "trained with ['--epochs', '3']" in alice.api("GET", "jobs/script-job/logs").text
    assert s["model_artifact"] == "train/out/model.txt"
    assert alice.get_file("train/out/model.txt").json()["content"] == "weights"
    n = _wait(alice, "nb-job")
    assert n["status"] == "Succeeded", n
    assert "lr is 0.5" in alice.api("GET", "jobs/nb-job/logs").text
    listed = {j["name"]: j for j in alice.ok("GET", "jobs")["jobs"]}
    assert {"script-job", "nb-job"} <= set(listed)
    for name in ("script-job", "nb-job"):
        alice.ok("DELETE", f"jobs/{name}", 204)


@pytest.mark.parametrize("body, code, message", [
    ({"name": "bad", "script": "a.py", "code": "print(1)"}, 400, "exactly one"),
    ({"name": "bad", "script": "nope/missing.py"}, 400, "not found"),
    ({"name": "bad", "script": "../../etc/passwd"}, 400, "outside your home"),
    ({"name": "bad", "code": "print(1)", "workers": 0}, 400, "workers"),
    ({"name": "bad", "code": "print(1)", "resource_group": "gpu-a100", "gpus": 3}, 400, "GPUs"),
    ({"name": "bad", "code": "print(1)", "resource_group": "no-such-group"}, 403, "resource group"),
    ({"name": "UPPER", "code": "print(1)"}, 400, "invalid"),
    ({"name": "bad", "code": "print(1)", "env": {"1X": "y"}}, 400, "environment variable"),
])
def test_bad_jobs_are_refused_and_nothing_is_created(alice, kubectl, body, code, message):
    r = alice.api("POST", "jobs", json=body)
    assert r.status_code == code, r.text
    assert message in r.json()["message"], r.json()
    assert "bad" not in kubectl("get", "jobs", "-n", alice.namespace, "-o", "name")


def test_a_user_outside_the_gpu_group_cannot_submit_to_it(bob):
    r = bob.api("POST", "jobs", json={"name": "sneaky", "code": "print(1)", "resource_group": "gpu-a100"})
    assert r.status_code == 403 and "gpu-a100" in r.json()["message"], r.text


def test_logs_follow_streams_lines_while_the_job_runs(alice):
    import time

    _fresh(alice, "ticker")
    alice.ok("POST", "jobs", 201, json={"name": "ticker", "command": [
        "python", "-c", "import time\nfor i in range(10):\n    print('tick', i, flush=True); time.sleep(1)"]})
    _wait(alice, "ticker", ("Running",))
    seen, t0 = [], time.monotonic()
    with alice.api("GET", "jobs/ticker/logs", params={"follow": "true"}, stream=True, timeout=120) as r:
        assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain")
        for line in r.iter_lines():
            if line.startswith(b"tick"):
                seen.append((line.decode(), time.monotonic() - t0))
    assert [s for s, _ in seen] == [f"tick {i}" for i in range(10)]
    assert seen[-1][1] - seen[0][1] > 2  # lines arrived as they were printed, not all at the end
    alice.ok("DELETE", "jobs/ticker", 204)


def test_a_job_submitted_again_under_its_old_name_shows_only_its_own_events(alice):
    _fresh(alice, "again")
    body = {"name": "again", "command": ["python", "-c", "print('once')"]}
    alice.ok("POST", "jobs", 201, json=body)
    assert _wait(alice, "again")["status"] == "Succeeded"
    alice.ok("DELETE", "jobs/again", 204)
    _fresh(alice, "again")
    time.sleep(1.5)  # the second Job's creationTimestamp falls in a later second than the first's events
    alice.ok("POST", "jobs", 201, json=body)
    assert _wait(alice, "again")["status"] == "Succeeded"
    events = alice.ok("GET", "jobs/again/events")["events"]
    completed = [e for e in events if e["object"] == "Job/again" and e["reason"] == "Completed"]
    assert len(completed) == 1, events  # not the first job's as well
    alice.ok("DELETE", "jobs/again", 204)
