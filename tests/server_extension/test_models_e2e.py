"""Model registry and serving end to end: models trained in a user's server,
registered (validated in a sandbox), deployed on devcluster, used from the
notebook, switched under load, and kept from other users."""
from __future__ import annotations

import json

import pytest

from tests.waiting import eventually

pytestmark = pytest.mark.e2e

TRAIN = """
import os, joblib, numpy as np
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier
from skl2onnx import to_onnx
X, y = load_iris(return_X_y=True)
X = X.astype(np.float32)
os.makedirs("models/v1", exist_ok=True); os.makedirs("models/v2", exist_ok=True); os.makedirs("models/skl", exist_ok=True)
lr = LogisticRegression(max_iter=500).fit(X, y)
stump = DecisionTreeClassifier(max_depth=1, random_state=0).fit(X, y)
open("models/v1/model.onnx", "wb").write(to_onnx(lr, X[:1], options={"zipmap": False}).SerializeToString())
open("models/v2/model.onnx", "wb").write(to_onnx(stump, X[:1], options={"zipmap": False}).SerializeToString())
joblib.dump(lr, "models/skl/model.joblib")
rows = X[[0, 60, 120]].tolist()
print(json.dumps({"rows": rows, "v1": lr.predict(X[[0, 60, 120]]).tolist(),
                  "v2": stump.predict(X[[0, 60, 120]]).tolist()}))
"""

MALICIOUS = """
import os, pickle
class Payload:
    def __reduce__(self):
        return (os.system, ("touch /home/jovyan/PWNED",))
os.makedirs("models/evil", exist_ok=True)
pickle.dump(Payload(), open("models/evil/model.pkl", "wb"))
print("written")
"""


@pytest.fixture(scope="module")
def trained(alice):
    for svc in ("iris",):
        alice.api("DELETE", f"services/{svc}")
    for m in ("iris", "iris-skl", "evil"):
        alice.api("DELETE", f"models/{m}")
    out = alice.execute("import json\n" + TRAIN, timeout=300)
    return json.loads(out.strip().splitlines()[-1])


def test_register_validates_and_refuses_a_malicious_pickle(alice, trained):
    v1 = alice.ok("POST", "models", 201, json={
        "name": "iris", "path": "models/v1", "description": "iris classifier", "metrics": {"accuracy": 0.97},
        "lineage": {"dataset": "iris", "notebook": "train.ipynb"}, "aliases": ["production"]})
    assert v1["version"] == 1 and v1["format"] == "onnx" and v1["validation"]["status"] == "valid"
    assert v1["signature"]["inputs"][0]["shape"][-1] == 4 and v1["artifact"]["uri"].endswith("/.kubelab/models/iris/1/")
    assert alice.ok("GET", "models/iris/versions/production")["version"] == 1
    assert alice.ok("GET", "models/iris/versions/v1")["validation"]["status"] == "valid"
    assert alice.api("GET", "models/iris/versions/7").status_code == 404
    assert alice.ok("PUT", "models/iris/aliases/staging", json={"version": 1})["aliases"] == {
        "production": 1, "staging": 1}
    assert alice.ok("DELETE", "models/iris/aliases/staging")["aliases"] == {"production": 1}
    assert alice.api("DELETE", "models/iris/aliases/staging").status_code == 404
    assert alice.api("PUT", "models/iris/aliases/v2", json={"version": 1}).status_code == 400
    assert alice.api("PUT", "models/iris/aliases/canary", json={"version": 9}).status_code == 404
    assert "iris" in [m["name"] for m in alice.ok("GET", "models")["models"]]
    skl = alice.ok("POST", "models", 201, json={"name": "iris-skl", "path": "models/skl/model.joblib"})
    assert skl["format"] == "sklearn" and skl["validation"]["status"] == "valid"
    assert skl["framework_versions"].get("scikit-learn")

    alice.execute(MALICIOUS)
    r = alice.api("POST", "models", json={"name": "evil", "path": "models/evil/model.pkl", "format": "sklearn"})
    assert r.status_code == 400, r.text
    assert "refused" in r.json()["message"] and "system" in r.json()["message"], r.json()
    assert alice.get_file("PWNED").status_code == 404  # nothing ran
    assert alice.api("GET", "models/evil").status_code == 404  # nothing stored

    for body, code, msg in [
        ({"name": "Bad Name", "path": "models/v1"}, 400, "invalid"),
        ({"name": "nofile", "path": "models/none.onnx"}, 400, "not found"),
        ({"name": "wrongfmt", "path": "models/v1", "format": "xgboost"}, 400, "onnx"),
        ({"name": "outside", "path": "../wl-bob/x"}, 400, "outside your home"),
        ({"name": "both", "path": "models/v1", "uri": "s3://x/y"}, 400, "exactly one"),
    ]:
        r = alice.api("POST", "models", json=body)
        assert r.status_code == code and msg in r.json()["message"], (body, r.text)


def test_deploy_predict_switch_under_load_and_rollback(alice, bob, trained):
    alice.ok("POST", "models", 201, json={"name": "iris", "path": "models/v2", "description": "a stump"})
    deployed = alice.ok("POST", "services", 201, json={"name": "iris", "model": "iris", "version": "production"})
    assert deployed["version"] == 1 and deployed["alias"] == "production"

    def ready():
        st = alice.ok("GET", "services/iris")
        assert st["state"] != "Failing", st
        return st if st["state"] == "Ready" else None
    eventually(ready, 300, 2, what="iris served")

    pred = alice.ok("POST", "services/iris/predict", json={"data": trained["rows"]})
    assert pred["version"] == 1
    log = alice.api("GET", "services/iris/logs?tail=50")
    assert log.status_code == 200 and "model 'iris' (onnx" in log.text and "loaded" in log.text, log.text[-500:]
    assert list(pred["outputs"].values())[0] == trained["v1"], pred

    # both directions: the model says who serves it, the service says what it serves
    model = alice.ok("GET", "models/iris")
    assert model["served_by"] == [{"service": "iris", "version": 1, "alias": "production"}]
    assert [v["served_by"] for v in model["versions"]] == [["iris"], []]
    assert alice.api("DELETE", "models/iris").status_code == 409

    # from the notebook: kserve's own REST client, and a switch to version 2 under continuous requests
    out = alice.execute(f"""
import json, threading, time
import numpy as np
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
from kubelab.server_extension.services import Services
rows = {trained["rows"]!r}
url = "http://iris.{alice.namespace}.svc"
async def kserve_client():
    client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=30))
    inp = InferInput("X", [3, 4], "FP32"); inp.set_data_from_numpy(np.array(rows, dtype=np.float32))
    res = await client.infer(url, InferRequest(model_name="iris", infer_inputs=[inp]), model_name="iris")
    await client.close()
    return res.outputs[0].as_numpy().tolist()
kserve_out = await kserve_client()  # the kernel runs top-level await
print("KSERVE", json.dumps(kserve_out))
import requests
stats, stop = {{"ok": 0, "failed": 0, "labels": set()}}, threading.Event()
def load():
    body = {{"inputs": [{{"name": "X", "datatype": "FP32", "shape": [3, 4], "data": sum(rows, [])}}]}}
    while not stop.is_set():
        try:
            r = requests.post(url + "/v2/models/iris/infer", json=body, timeout=10)
            r.raise_for_status()
            stats["ok"] += 1; stats["labels"].add(tuple(r.json()["outputs"][0]["data"]))
        except Exception as e:
            stats["failed"] += 1; print("FAILED", repr(e)[:200])
threads = [threading.Thread(target=load) for _ in range(2)]
[t.start() for t in threads]
time.sleep(2)
svc = Services.create()
svc.serving.update("iris", {{"version": 2}})
deadline = time.time() + 300
while time.time() < deadline:
    st = svc.serving.status("iris")
    if st["state"] == "Ready" and all(p["version"] == "2" for p in st["pods"]) and st["version"] == 2:
        break
    time.sleep(1)
time.sleep(3)
stop.set(); [t.join() for t in threads]
print("ROLLOUT", st["state"], st["version"], json.dumps({{"ok": stats["ok"], "failed": stats["failed"],
      "labels": sorted(map(list, stats["labels"]))}}))
""", timeout=420)
    kserve_line = next(line for line in out.splitlines() if line.startswith("KSERVE"))
    assert json.loads(kserve_line.split(" ", 1)[1]) == trained["v1"], out
    rollout = next(line for line in out.splitlines() if line.startswith("ROLLOUT"))
    state, version, stats = rollout.split(" ", 3)[1:]
    stats = json.loads(stats)
    assert (state, version) == ("Ready", "2"), out
    assert stats["failed"] == 0 and stats["ok"] > 10, out
    assert trained["v2"] in stats["labels"], out  # version 2 answered by the end

    after = alice.ok("GET", "services/iris")
    assert after["version"] == 2 and after["previous_version"] == 1
    pred = alice.ok("POST", "services/iris/predict", json={"data": trained["rows"]})
    assert list(pred["outputs"].values())[0] == trained["v2"]
    back = alice.ok("POST", "services/iris/rollback")
    assert back["version"] == 1

    # user B: cannot see or deploy A's models, nor read A's artifacts
    assert bob.api("GET", "models/iris").status_code == 404
    assert "iris" not in [m["name"] for m in bob.ok("GET", "models")["models"]]
    assert bob.api("POST", "services", json={"name": "steal", "model": "iris"}).status_code == 404
    alices_v1 = alice.ok("GET", "models/iris")["versions"][0]["artifact"]["uri"]  # where the bytes really are
    r = bob.api("POST", "models", json={"name": "steal", "uri": alices_v1})
    assert r.status_code == 403, r.text
    assert bob.api("GET", "services/iris").status_code == 404
    assert bob.api("GET", "services/iris/logs").status_code == 404  # alice's model server's log

    alice.ok("DELETE", "services/iris", 204)
    eventually(lambda: alice.api("GET", "services/iris").status_code == 404, 60, 1, what="service gone")
    alice.ok("DELETE", "models/iris", 204)
    alice.ok("DELETE", "models/iris-skl", 204)


def test_deleting_a_model_keeps_the_users_own_folder_of_that_name(alice, trained):
    # the user keeps their own work in ~/models/<name>; the registry's copies live apart
    alice.api("DELETE", "models/v1")
    alice.ok("POST", "models", 201, json={"name": "v1", "path": "models/v1"})
    alice.ok("DELETE", "models/v1", 204)
    out = alice.execute("import os; print(sorted(os.listdir(os.path.expanduser('~/models/v1'))))")
    assert "'model.onnx'" in out, out


def test_deploy_refusals_are_4xx(alice):
    assert alice.api("POST", "services", json={"name": "x", "model": "no-such-model"}).status_code == 404
    assert alice.api("POST", "services", json={"name": "Bad", "model": "iris"}).status_code == 400
    assert alice.api("GET", "services/none").status_code == 404
    assert alice.api("POST", "services/none/predict", json={"data": [[1]]}).status_code == 404
    assert alice.api("POST", "services/none/rollback").status_code == 404


def test_status_explains_a_failing_service_and_scale_changes_replicas(alice, s3_env, trained):
    import boto3

    alice.api("DELETE", "services/broken")
    alice.api("DELETE", "models/broken")
    v = alice.ok("POST", "models", 201, json={"name": "broken", "path": "models/v1"})
    # the artifacts disappear behind the registry's back: the fetch must fail, and say so
    s3 = boto3.client("s3", endpoint_url=s3_env["AWS_ENDPOINT_URL"], aws_access_key_id=s3_env["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=s3_env["AWS_SECRET_ACCESS_KEY"], region_name="us-east-1")
    bucket, prefix = v["artifact"]["uri"][len("s3://"):].split("/", 1)
    for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []):
        s3.delete_object(Bucket=bucket, Key=o["Key"])
    alice.ok("POST", "services", 201, json={"name": "broken", "model": "broken"})

    def failing():
        st = alice.ok("GET", "services/broken")
        return st if st["state"] == "Failing" else None
    st = eventually(failing, 180, 2, what="the broken service reported as Failing")
    assert any("fetch-model failed" in p and "holds no files" in p for p in st["problems"]), st["problems"]
    alice.ok("DELETE", "services/broken", 204)
    alice.ok("DELETE", "models/broken", 204)

    # a registered version's files changed behind the registry's back: no replica serves them
    alice.api("DELETE", "services/tampered")
    alice.api("DELETE", "models/tampered")
    v = alice.ok("POST", "models", 201, json={"name": "tampered", "path": "models/v1"})
    bucket, prefix = v["artifact"]["uri"][len("s3://"):].split("/", 1)
    s3.put_object(Bucket=bucket, Key=prefix + v["artifact"]["files"][0], Body=b"not the registered model")
    alice.ok("POST", "services", 201, json={"name": "tampered", "model": "tampered"})

    states = []

    def refused():
        st = alice.ok("GET", "services/tampered")
        states.append(st["state"])
        if any("do not match the registered digest" in p for p in st["problems"]):
            return st
        raise AssertionError(st["problems"])  # the last problems seen, if it never says why
    st = eventually(refused, 180, 2, what="the tampered version refused, saying why")
    assert st["state"] == "Failing" and "Ready" not in states, states
    alice.ok("DELETE", "services/tampered", 204)
    alice.ok("DELETE", "models/tampered", 204)

    # scale: a healthy service goes to two ready replicas
    alice.api("DELETE", "services/scaled")
    alice.api("DELETE", "models/scaled")
    alice.ok("POST", "models", 201, json={"name": "scaled", "path": "models/v1"})
    alice.ok("POST", "services", 201, json={"name": "scaled", "model": "scaled"})
    eventually(lambda: alice.ok("GET", "services/scaled")["state"] == "Ready" or None, 300, 2, what="scaled ready")
    assert alice.ok("PATCH", "services/scaled", json={"replicas": 2})["replicas"] == 2
    st = eventually(lambda: (s := alice.ok("GET", "services/scaled"))["ready_replicas"] == 2 and s or None,
                    300, 2, what="two ready replicas")
    assert st["state"] == "Ready" and len(st["pods"]) == 2
    assert alice.api("PATCH", "services/scaled", json={"replicas": 99}).status_code == 400
    alice.ok("DELETE", "services/scaled", 204)
    eventually(lambda: alice.api("GET", "services/scaled").status_code == 404, 60, 1, what="scaled gone")
    alice.ok("DELETE", "models/scaled", 204)
