"""The %kubelab magics end to end: real IPython kernels in a user's server
spawned by the hub on devcluster, real CronJobs, Jobs and papermill runs.

Each ``execute`` starts a fresh kernel, so the extension is whatever the
server's environment auto-loads; polling happens inside one execution.
Everything made here is named ``mg-*`` and deleted at the end of its test.
"""
from __future__ import annotations

import json

import pytest

from tests.server_extension.conftest import notebook
from tests.waiting import eventually

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


# -- datasets --------------------------------------------------------------------------------------
MG_DATA = "datasets/mgtest/"


@pytest.fixture(scope="module")
def mg_datasets(s3_env) -> str:
    """A few shared files under datasets/mgtest/, written with the platform's S3 credentials."""
    import io

    import boto3
    import pandas as pd

    client = boto3.client("s3", endpoint_url=s3_env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                          aws_access_key_id=s3_env["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=s3_env["AWS_SECRET_ACCESS_KEY"])
    bucket = s3_env["KUBELAB_S3_BUCKET"]
    df = pd.DataFrame({"id": range(100), "score": [i / 4 for i in range(100)],
                       "team": [["red", "blue"][i % 2] for i in range(100)]})
    buf = io.BytesIO()
    df.to_parquet(buf, index=False, row_group_size=25)
    client.put_object(Bucket=bucket, Key=MG_DATA + "scores.parquet", Body=buf.getvalue())
    client.put_object(Bucket=bucket, Key=MG_DATA + "scores.csv", Body=df.to_csv(index=False).encode())
    return bucket


def test_datasets_ls_preview_and_snippet(alice, mg_datasets):
    out = alice.execute(f"""
page = %kubelab datasets ls {MG_DATA} --page-size 1
print("PAGE", [o["name"] for o in page["objects"]], page["s3_requests"], bool(page["next_token"]))
nxt = %kubelab datasets ls {MG_DATA} --page-size 1 --token {{page["next_token"]}}
print("NEXT", [o["name"] for o in nxt["objects"]], nxt["next_token"])
roots = %kubelab datasets ls
print("ROOTS", [f["prefix"] for f in roots["folders"]])
p = %kubelab datasets preview {MG_DATA}scores.parquet --rows 3
print("PREVIEW", p["row_count"], p["total_rows"], [c["name"] for c in p["columns"]], p["rows"][2])
print("STATS", p["file_stats"]["score"], p["stats"]["id"]["max"])
c = %kubelab datasets preview s3://{mg_datasets}/{MG_DATA}scores.csv
print("CSV", c["row_count"], c["columns"][2])
o = %kubelab datasets show {MG_DATA}scores.csv
print("SHOW", o["path"], o["writable"])
sn = %kubelab datasets snippet {MG_DATA}scores.csv
exec(sn["code"]["path"])
print("SNIPPET", sn["uri"], df.shape, df["score"].sum())
""")
    assert "PAGE ['scores.csv'] 1 True" in out, out
    assert "NEXT ['scores.parquet'] None" in out, out
    assert f"ROOTS ['users/{alice.name}/', 'datasets/']" in out, out
    assert ("PREVIEW 3 100 ['id', 'score', 'team'] {'id': 2, 'score': 0.5, 'team': 'red'}") in out, out
    assert "STATS {'nulls': 0, 'min': 0.0, 'max': 24.75} 2" in out, out
    assert "CSV 20 {'name': 'team', 'type': 'string', 'nullable': True}" in out, out
    assert f"SHOW /home/jovyan/{MG_DATA}scores.csv False" in out, out
    assert f"SNIPPET s3://{mg_datasets}/{MG_DATA}scores.csv (100, 3) 1237.5" in out, out
    assert not kubelab_lines(out), out


def test_datasets_register_upload_and_download(alice, mg_datasets, kubectl):
    name, me = "mg-scores", f"users/{alice.name}/mg/"
    out = alice.execute(f"""
import hashlib, os
%kubelab datasets unregister {name}
os.makedirs("/home/jovyan/mg", exist_ok=True)
data = os.urandom(3 * 1024 * 1024 + 7)
with open("/home/jovyan/mg/blob.bin", "wb") as f:
    f.write(data)
d = %kubelab datasets register {name} --uri s3://{mg_datasets}/{MG_DATA}scores.parquet --description "magic scores" --tag mg --tag demo
print("REGISTERED", d["name"], d["tags"], bool(d["etag"]), [c["name"] for c in d["schema"]])
found = %kubelab datasets registered magic scores
print("FOUND", [x["name"] for x in found])
up = %kubelab datasets upload mg/blob.bin {me} --overwrite
print("UP", up["status"], up["percent"], up["key"], up["bytes_done"] == len(data))
down = %kubelab datasets download {me}blob.bin mg/back.bin --overwrite
print("DOWN", down["status"], down["percent"], down["path"])
print("SAME", hashlib.md5(open("/home/jovyan/mg/back.bin", "rb").read()).hexdigest() == hashlib.md5(data).hexdigest())
ts = %kubelab datasets transfers
print("TRANSFERS", [t["direction"] for t in ts][:2])
""", timeout=300)
    try:
        assert f"REGISTERED {name} ['mg', 'demo'] True ['id', 'score', 'team']" in out, out
        assert f"FOUND ['{name}']" in out, out
        assert f"UP succeeded 100.0 {me}blob.bin True" in out, out
        assert "DOWN succeeded 100.0 mg/back.bin" in out, out
        assert "SAME True" in out and "TRANSFERS ['download', 'upload']" in out, out
        cr = kubectl.json("-n", alice.namespace, "get", "dataset", name)
        assert cr["spec"]["location"]["uri"] == f"s3://{mg_datasets}/{MG_DATA}scores.parquet"
    finally:
        out = alice.execute(f"r = %kubelab datasets unregister {name}\nprint('GONE', r['deleted'])\n"
                            "import os\nfor f in ('blob.bin', 'back.bin'):\n"
                            "    if os.path.exists('/home/jovyan/mg/' + f): os.remove('/home/jovyan/mg/' + f)\n")
        assert "GONE True" in out, out


def test_datasets_mistakes_are_one_line(alice, mg_datasets):
    alice.put_file("mg/ok.ipynb", notebook("print(1)"))
    out = alice.execute(f"""
%kubelab datasets ls users/someone-else/
%kubelab datasets preview {MG_DATA}nope.csv
%kubelab datasets register Bad_Name --uri s3://{mg_datasets}/{MG_DATA}scores.csv
%kubelab datasets frobnicate
%kubelab datasets preview {MG_DATA}scores.csv --rows 100000
r = %kubelab datasets upload nothing-here.bin users/{alice.name}/x.bin
%kubelab datasets upload /home/jovyan/mg/ok.ipynb {MG_DATA}evil.ipynb
print("RESULT", r)
""")
    lines = kubelab_lines(out)
    assert len(lines) == 7, out
    assert "outside what you may see" in lines[0], lines[0]
    assert "does not exist" in lines[1], lines[1]
    assert "dataset name 'Bad_Name' is invalid" in lines[2], lines[2]
    assert lines[3].startswith("kubelab: unknown datasets command 'frobnicate'"), lines[3]
    assert "at most" in lines[4] and "rows" in lines[4], lines[4]
    assert "not a file in your home" in lines[5], lines[5]
    assert "read-only" in lines[6], lines[6]
    assert "RESULT None" in out and "Traceback" not in out, out


# -- models, serving and predict -------------------------------------------------------------------
MG_MODEL = "mg-iris"


def test_register_serve_predict_and_clean_up(alice):
    """One kernel: train and convert to ONNX, register, show, serve (live status), wait until
    Ready, predict from a numpy slice, then delete the service and the model."""
    name = MG_MODEL
    alice.api("DELETE", f"services/{name}")
    try:
        out = alice.execute(f"""
import json, os, time
import numpy as np
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from skl2onnx import to_onnx
X, y = load_iris(return_X_y=True)
order = np.random.RandomState(0).permutation(len(X))  # so that X[:3] holds more than one class
X, y = X[order].astype(np.float32), y[order]
lr = LogisticRegression(max_iter=500).fit(X, y)
os.makedirs("models/mg", exist_ok=True)
open("models/mg/model.onnx", "wb").write(to_onnx(lr, X[:1], options={{"zipmap": False}}).SerializeToString())
kubelab = lambda line: get_ipython().run_line_magic("kubelab", line)
for _ in range(60):  # a service of an earlier, failed run may still be going
    if "{name}" not in [s["name"] for s in kubelab("serve list")]:
        break
    time.sleep(1)
if "{name}" in [m["name"] for m in kubelab("models list")]:
    kubelab("models delete {name}")

v = %kubelab models register {name} --path models/mg/ --alias staging --metric accuracy=0.97 --tag mg --lineage notebook=mg.ipynb
print("REGISTERED", v["version"], v["format"], v["validation"]["status"], v["metrics"], v["lineage"])
m = %kubelab models show {name}
print("SHOWN", m["aliases"], [x["version"] for x in m["versions"]], m["served_by"])
s = %kubelab serve {name} --model {name} --version staging
print("DEPLOYED", s["name"], s["model"], s["version"], s["alias"])
state, deadline = None, time.time() + 300
while time.time() < deadline:
    st = %kubelab serve status {name}
    state = st["state"]
    if state in ("Ready", "Failing"):
        break
    time.sleep(2)
print("STATE", state, st["ready_replicas"], st["problems"])
out = %kubelab predict {name} X[:3]
print("PREDICTED", json.dumps({{"served": list(out.values())[0], "local": lr.predict(X[:3]).tolist()}}))
print("PROBABILITIES", np.allclose(out["probabilities"], lr.predict_proba(X[:3]), atol=1e-4))
import pandas as pd
df_out = %kubelab predict {name} pd.DataFrame(X[3:5], columns=list("abcd"))
print("FRAME", json.dumps(list(df_out.values())[0]) == json.dumps(lr.predict(X[3:5]).tolist()))
watcher = get_ipython().magics_manager.registry["KubelabMagics"].watchers[-1]
watcher.join(60)
print("WATCHER", watcher.done, watcher.view.get("state"), watcher.view.get("ready_replicas"))
m = %kubelab models show {name}
print("SERVED BY", m["served_by"])
listed = %kubelab serve list
print("LISTED", [x["name"] for x in listed if x["name"] == "{name}"])

d = %kubelab serve delete {name}
print("SERVICE DELETED", d["deleted"])
deadline = time.time() + 120
while time.time() < deadline and "{name}" in [x["name"] for x in kubelab("serve list")]:
    time.sleep(1)
print("SERVICE GONE", "{name}" not in [x["name"] for x in kubelab("serve list")])
d = %kubelab models delete {name}
print("MODEL DELETED", d["deleted"])
""", timeout=480)
        assert "REGISTERED 1 onnx valid {'accuracy': 0.97} {'notebook': 'mg.ipynb'}" in out, out
        assert "SHOWN {'staging': 1} [1] []" in out, out
        assert f"DEPLOYED {name} {name} 1 staging" in out, out
        assert "STATE Ready 1 []" in out, out
        predicted = json.loads(next(line for line in out.splitlines() if line.startswith("PREDICTED ")).split(" ", 1)[1])
        assert predicted["served"] == predicted["local"] and len(set(predicted["local"])) > 1, out
        assert "PROBABILITIES True" in out and "FRAME True" in out, out
        assert "WATCHER True Ready 1" in out, out  # the live status widget followed the deployment
        assert f"SERVED BY [{{'service': '{name}', 'version': 1, 'alias': 'staging'}}]" in out, out
        assert f"LISTED ['{name}']" in out, out
        assert "SERVICE DELETED True" in out and "SERVICE GONE True" in out and "MODEL DELETED True" in out, out
        assert not kubelab_lines(out), out
    finally:
        alice.api("DELETE", f"services/{name}")
        eventually(lambda: alice.api("GET", f"services/{name}").status_code == 404, 120, 1, what="service gone")
        alice.api("DELETE", f"models/{name}")
    assert alice.api("GET", f"models/{name}").status_code == 404


def test_models_serving_and_predict_mistakes_are_one_line(alice):
    out = alice.execute("""
%kubelab models register mg-bad --path models/mg-none/
%kubelab models register Bad_Name --path models/mg-none/
%kubelab models show mg-no-such-model
%kubelab models frobnicate
%kubelab serve mg-x --model mg-no-such-model
%kubelab serve status mg-no-such-service
%kubelab serve update mg-no-such-service --replicas 2
%kubelab predict mg-no-such-service [[5.1, 3.5, 1.4, 0.2]]
r = %kubelab predict mg-no-such-service undefined_rows[:3]
print("RESULT", r)
""")
    lines = kubelab_lines(out)
    assert len(lines) == 9, out
    assert lines[0] == "kubelab: path 'models/mg-none' was not found in your home", lines[0]
    assert "model name 'Bad_Name' is invalid" in lines[1], lines[1]
    assert lines[2] == "kubelab: model 'mg-no-such-model' not found", lines[2]
    assert lines[3].startswith("kubelab: unknown models command 'frobnicate'"), lines[3]
    assert lines[4] == "kubelab: model 'mg-no-such-model' not found", lines[4]
    assert lines[5] == "kubelab: inference service 'mg-no-such-service' not found", lines[5]
    assert lines[6] == "kubelab: inference service 'mg-no-such-service' not found", lines[6]
    assert lines[7] == "kubelab: inference service 'mg-no-such-service' not found", lines[7]
    assert lines[8] == ("kubelab: predict: cannot evaluate undefined_rows[:3]: NameError: "
                        "name 'undefined_rows' is not defined"), lines[8]
    assert "RESULT None" in out and "Traceback" not in out, out
