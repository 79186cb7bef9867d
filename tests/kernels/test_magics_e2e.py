"""The %kubelab magics end to end: real IPython kernels in a user's server
spawned by the hub on devcluster, real CronJobs, Jobs and papermill runs.

Each ``execute`` starts a fresh kernel, so the extension is whatever the
server's environment auto-loads; polling happens inside one execution.
Everything made here is named ``mg-*`` and deleted at the end of its test.
"""
from __future__ import annotations

import pytest

from tests.server_extension.conftest import notebook

pytestmark = pytest.mark.e2e


def kubelab_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("kubelab: ")]


def test_autoloaded_in_a_fresh_kernel(alice):
    out = alice.execute(
        "ip = get_ipython()\n"
        "print('LOADED', 'kubelab.kernels' in ip.extension_manager.loaded, 'kubelab' in ip.magics_manager.magics['line'])\n"
        "r = %kubelab info\n"
        "print('NS', r['namespace'], 'USER', r['user'])\n"
        "print('GROUPS', ' '.join(g['name'] for g in r['resource_groups']))\n")
    assert "LOADED True True" in out, out
    assert f"NS {alice.namespace} USER {alice.name}" in out, out
    assert "cpu" in out.split("GROUPS", 1)[1].split(), out
    assert not kubelab_lines(out), out


def test_mistakes_are_one_line_and_do_not_raise(alice):
    alice.put_file("mg/ok.ipynb", notebook("print(1)"))
    out = alice.execute(
        "%kubelab schedule create mg-badcron --notebook mg/ok.ipynb --cron '61 * * * *'\n"
        "%kubelab schedule show mg-does-not-exist\n"
        "%kubelab schedule frobnicate\n"
        "%kubelab jobs submit mg-x --script mg/ok.py --param oops\n"
        "r = %kubelab logs mg-nothing-1\n"
        "print('RESULT', r)\n")
    lines = kubelab_lines(out)
    assert len(lines) == 5, out
    assert lines[0].startswith("kubelab: ") and "61" in lines[0] and "minute" in lines[0], lines[0]
    assert lines[1] == "kubelab: schedule 'mg-does-not-exist' not found", lines[1]
    assert lines[2].startswith("kubelab: unknown schedule command 'frobnicate'"), lines[2]
    assert lines[3] == "kubelab: --param 'oops' must be KEY=VALUE, e.g. --param alpha=0.5", lines[3]
    assert lines[4].startswith("kubelab: no schedule run or training job named 'mg-nothing-1'"), lines[4]
    assert "RESULT None" in out and "Traceback" not in out, out
    assert alice.api("GET", "schedules/mg-badcron").status_code == 404


REPORT_NB = notebook("print(f'mg-report alpha={alpha} beta={beta}')", parameters="alpha = 1\nbeta = 'x'")


def test_schedule_create_list_run_and_logs(alice):
    name = "mg-nightly"
    alice.put_file("mg/report.ipynb", REPORT_NB)
    alice.api("DELETE", f"schedules/{name}")
    try:
        out = alice.execute(f"""
import time
s = %kubelab schedule create {name} --notebook mg/report.ipynb --cron "0 6 * * *" --tz Europe/Berlin --param alpha=0.5
print("CREATED", s["name"], s["timezone"], s["parameters"], len(s["next_runs"]))
listed = %kubelab schedule list
print("LISTED", [x["name"] for x in listed if x["name"] == "{name}"])
shown = %kubelab schedule show {name}
print("SHOWN", shown["schedule"], shown["notebook"])
run = %kubelab schedule run {name} --param beta='"manual"'
rid = run["id"]
print("RUN", rid)
status, deadline = None, time.time() + 300
while time.time() < deadline:
    runs = %kubelab schedule runs {name}
    status = [r["status"] for r in runs if r["id"] == rid][0]
    if status in ("Succeeded", "Failed"):
        break
    time.sleep(2)
print("STATUS", status)
print("--- logs")
%kubelab logs $rid
print("--- end")
from kubelab.kernels.magics import KubelabMagics
watcher = get_ipython().magics_manager.registry["KubelabMagics"].watchers[-1]
watcher.join(60)
print("WATCHER", watcher.done, watcher.view.get("status"), "mg-report" in watcher.log_text)
""", timeout=420)
        assert f"CREATED {name} Europe/Berlin {{'alpha': 0.5}} 5" in out, out
        assert f"LISTED ['{name}']" in out, out
        assert "SHOWN 0 6 * * * mg/report.ipynb" in out, out
        assert "STATUS Succeeded" in out, out
        logs = out.split("--- logs", 1)[1].split("--- end", 1)[0]
        assert "mg-report alpha=0.5 beta=manual" in logs, out
        assert "WATCHER True Succeeded True" in out, out  # the live status widget followed the run
        assert not kubelab_lines(out.replace(logs, "")), out  # (the runner's own log lines start so too)
    finally:
        out = alice.execute(f"%kubelab schedule delete {name}\n")
        assert not kubelab_lines(out), out
    assert alice.api("GET", f"schedules/{name}").status_code == 404


def test_train_cell_runs_and_its_logs_show(alice):
    name = "mg-train"
    alice.api("DELETE", f"jobs/{name}")
    try:
        out = alice.execute(f"""%%kubelab train {name} --timeout 10m --env MG_GREETING=hello --param lr=0.01
import json, os
print("mg-train says", os.environ["MG_GREETING"], json.loads(os.environ["KUBELAB_PARAMETERS"])["lr"] * 100)
""")
        assert not kubelab_lines(out), out
        out = alice.execute(f"""
import time
status, deadline = None, time.time() + 300
while time.time() < deadline:
    job = %kubelab jobs show {name}
    status = job["status"]
    if status in ("Succeeded", "Failed", "Cancelled"):
        break
    time.sleep(2)
print("STATUS", status, job["source"])
jobs = %kubelab jobs list
print("LISTED", [j["name"] for j in jobs if j["name"] == "{name}"])
print("--- logs")
%kubelab logs {name}
print("--- end")
""", timeout=420)
        assert "STATUS Succeeded code" in out, out
        assert f"LISTED ['{name}']" in out, out
        logs = out.split("--- logs", 1)[1].split("--- end", 1)[0]
        assert "mg-train says hello 1.0" in logs, out
        assert not kubelab_lines(out.replace(logs, "")), out
    finally:
        out = alice.execute(f"%kubelab jobs delete {name}\n")
        assert not kubelab_lines(out), out
    assert alice.api("GET", f"jobs/{name}").status_code == 404


def test_logs_follow_streams_until_the_job_ends(alice):
    name = "mg-follow"
    alice.api("DELETE", f"jobs/{name}")
    try:
        out = alice.execute(f"""
%kubelab jobs submit {name} --command python -c "import time; [print('tick', i, flush=True) or time.sleep(1) for i in range(3)]"
%kubelab logs {name} -f
""", timeout=300)
        ticks = [line for line in out.splitlines() if line.startswith("tick ")]
        assert ticks == ["tick 0", "tick 1", "tick 2"], out
        assert f"kubelab: job {name}: Succeeded" in out, out
    finally:
        alice.api("DELETE", f"jobs/{name}")


def test_suspend_resume_pending_cancel(alice):
    alice.put_file("mg/ok.ipynb", notebook("print(1)"))
    for path in ("schedules/mg-yearly", "jobs/mg-sleep"):
        alice.api("DELETE", path)
    try:
        out = alice.execute("""
s = %kubelab schedule create mg-yearly --notebook mg/ok.ipynb --cron "0 3 1 1 *" --suspend
print("CREATED suspend", s["suspend"], s["next_runs"])
s = %kubelab schedule resume mg-yearly
print("RESUMED suspend", s["suspend"], len(s["next_runs"]))
s = %kubelab schedule suspend mg-yearly
print("SUSPENDED suspend", s["suspend"])
j = %kubelab jobs submit mg-sleep --timeout 5m --command python -c "import time; time.sleep(300)"
p = %kubelab jobs pending mg-sleep
print("PENDING", p["name"], p["status"] in ("Pending", "Running"), isinstance(p["reasons"], list))
c = %kubelab jobs cancel mg-sleep
print("CANCELLED", c["status"])
d = %kubelab jobs delete mg-sleep
print("DELETED", d["deleted"])
d = %kubelab schedule delete mg-yearly
print("DELETED", d["deleted"])
""")
        assert "CREATED suspend True []" in out, out
        assert "RESUMED suspend False 5" in out, out
        assert "SUSPENDED suspend True" in out, out
        assert "PENDING mg-sleep True True" in out, out
        assert "CANCELLED Cancelled" in out, out
        assert out.count("DELETED True") == 2, out
        assert not kubelab_lines(out), out
    finally:
        for path in ("schedules/mg-yearly", "jobs/mg-sleep"):
            alice.api("DELETE", path)
