"""User B cannot list, read, trigger or delete A's schedules, jobs or logs.

Alice makes a schedule (suspended; run once by hand so it has a run, logs and
outputs in her home) and a training job that has finished with logs. Bob then
tries every way a user has: his own REST API naming her objects, his hub token
on her server, the service layer, the raw apiserver and her server's pod from
his kernel, her home in S3 with his own credentials, and a pod of his own that
mounts the node's S3 mount through a symlink in his home. Each way is refused,
nothing of hers leaks into the answers, and her objects are unchanged afterwards.
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

import pytest
import requests

from tests.server_extension.conftest import notebook
from tests.waiting import eventually

pytestmark = pytest.mark.e2e

JOB_SECRET = "secret-alice-output"
RUN_SECRET = "secret-alice-run"
DONE = ("Succeeded", "Failed")


@dataclass
class AliceObjects:
    schedule: str
    job: str
    run: str
    notebook: str
    output_notebook: str


def _finished(fn, what: str, timeout: float = 300):
    def done():
        view = fn()
        return view if view["status"] in DONE else None
    return eventually(done, timeout, 2, what=what)


@pytest.fixture(scope="module")
def theirs(alice) -> AliceObjects:
    """Alice's schedule (with one finished manual run) and finished training job; deleted afterwards."""
    tag = uuid.uuid4().hex[:6]
    objs = AliceObjects(schedule=f"iso-sched-{tag}", job=f"iso-job-{tag}", run="",
                        notebook=f"iso-{tag}/private.ipynb", output_notebook="")
    alice.put_file(objs.notebook, notebook(f"print('{RUN_SECRET}')"))
    try:
        sched = alice.ok("POST", "schedules", 201, json={
            "name": objs.schedule, "notebook": objs.notebook, "schedule": "0 0 1 1 *", "suspend": True})
        assert sched["suspend"] is True, sched
        alice.ok("POST", "jobs", 201, json={"name": objs.job,
                                              "command": ["python", "-c", f"print('{JOB_SECRET}')"]})
        objs.run = alice.ok("POST", f"schedules/{objs.schedule}/runs", 201, json={})["id"]
        job = _finished(lambda: alice.ok("GET", f"jobs/{objs.job}"), f"alice's job {objs.job} finished")
        assert job["status"] == "Succeeded", job
        run = _finished(lambda: alice.ok("GET", f"schedules/{objs.schedule}/runs/{objs.run}"),
                        f"alice's run {objs.run} finished")
        assert run["status"] == "Succeeded", run
        assert run["output_notebook"], run
        objs.output_notebook = run["output_notebook"]
        assert JOB_SECRET in alice.api("GET", f"jobs/{objs.job}/logs").text
        yield objs
    finally:
        alice.api("DELETE", f"jobs/{objs.job}")
        alice.api("DELETE", f"schedules/{objs.schedule}")
        alice.hub.s.delete(f"{alice.hub.url}/user/{alice.name}/api/contents/{objs.notebook}", timeout=60)
        alice.hub.s.delete(f"{alice.hub.url}/user/{alice.name}/api/contents/{objs.notebook.split('/')[0]}",
                           timeout=60)


def _state(alice, kubectl, o: AliceObjects) -> dict:
    """What alice would notice: her objects (same uid, spec, status), her runs and her logs."""
    ns = alice.namespace
    cj = kubectl.json("-n", ns, "get", "cronjob", o.schedule)
    job = kubectl.json("-n", ns, "get", "job", o.job)
    runs = kubectl.json("-n", ns, "get", "jobs", "-l", f"kubelab.io/schedule={o.schedule}")["items"]
    pods = kubectl.json("-n", ns, "get", "pods", "-l", f"kubelab.io/job={o.job}")["items"]
    sched = alice.ok("GET", f"schedules/{o.schedule}")
    return {
        "cronjob": (cj["metadata"]["uid"], cj["metadata"]["generation"], cj["spec"].get("suspend"),
                    cj["spec"]["schedule"], cj["metadata"].get("annotations")),
        "job": (job["metadata"]["uid"], job["metadata"]["generation"], job["spec"].get("suspend"),
                job["metadata"].get("annotations"), job["status"].get("succeeded")),
        "job_pods": sorted(p["metadata"]["name"] for p in pods),
        "runs": sorted((r["metadata"]["name"], r["metadata"]["uid"]) for r in runs),
        "schedule_view": {k: sched.get(k) for k in ("name", "notebook", "schedule", "suspend", "timezone")},
        "job_status": alice.ok("GET", f"jobs/{o.job}")["status"],
        "job_log_has_secret": JOB_SECRET in alice.api("GET", f"jobs/{o.job}/logs").text,
        "run_log_has_secret": RUN_SECRET in alice.api("GET", f"schedules/{o.schedule}/runs/{o.run}/logs").text,
    }


@pytest.fixture
def unchanged(alice, kubectl, theirs):
    """Asserts, after the test, that alice's objects are exactly as before it."""
    before = _state(alice, kubectl, theirs)
    assert before["job_log_has_secret"] and before["run_log_has_secret"], before
    yield
    assert _state(alice, kubectl, theirs) == before


def _no_leak(text: str) -> None:
    assert JOB_SECRET not in text and RUN_SECRET not in text, text


def test_bobs_api_does_not_find_alices_schedules_or_jobs(bob, theirs, unchanged):
    s, j, r = theirs.schedule, theirs.job, theirs.run
    attempts = [
        ("GET", f"schedules/{s}", None), ("PATCH", f"schedules/{s}", {"suspend": False}),
        ("POST", f"schedules/{s}/runs", {}), ("GET", f"schedules/{s}/runs", None),
        ("GET", f"schedules/{s}/runs/{r}", None), ("GET", f"schedules/{s}/runs/{r}/logs", None),
        ("GET", f"schedules/{s}/runs/{r}/events", None),
        ("GET", f"jobs/{j}", None), ("GET", f"jobs/{j}/logs", None), ("GET", f"jobs/{j}/events", None),
        ("GET", f"jobs/{j}/pending", None), ("POST", f"jobs/{j}/cancel", None),
        ("DELETE", f"jobs/{j}", None), ("DELETE", f"schedules/{s}", None),
    ]
    for method, path, body in attempts:
        resp = bob.api(method, path, json=body)
        assert resp.status_code == 404, f"bob {method} {path}: {resp.status_code} {resp.text}"
        assert resp.headers["Content-Type"].startswith("application/json"), (method, path, resp.headers)
        err = resp.json()
        assert err["code"] == 404 and isinstance(err["message"], str) and err["message"], (method, path, err)
        _no_leak(resp.text)
    # and his own listings never show hers
    assert s not in [x["name"] for x in bob.ok("GET", "schedules")["schedules"]]
    assert j not in [x["name"] for x in bob.ok("GET", "jobs")["jobs"]]


def test_bobs_hub_token_is_refused_by_alices_server(hub, alice, bob, theirs, unchanged):
    r = hub.api("POST", f"/users/{bob.name}/tokens", json={"note": "kubelab isolation test", "expires_in": 600})
    assert r.status_code == 201, f"the kubelab-tests service could not create a token for bob: {r.status_code} {r.text}"
    token, token_id = r.json()["token"], r.json()["id"]
    s = requests.Session()
    s.trust_env = False
    s.headers["Authorization"] = f"token {token}"
    try:
        # the token is bob's and works on his own server...
        mine = s.get(f"{hub.url}/user/{bob.name}/kubelab/api/schedules", timeout=60)
        assert mine.status_code == 200, mine.text
        # ...but alice's server refuses it, whatever the request
        base = f"{hub.url}/user/{alice.name}/kubelab/api"
        sn, jn, rn = theirs.schedule, theirs.job, theirs.run
        for method, path in [("GET", "schedules"), ("GET", "jobs"), ("GET", "resources"), ("GET", f"schedules/{sn}"),
                             ("GET", f"schedules/{sn}/runs"), ("GET", f"schedules/{sn}/runs/{rn}/logs"),
                             ("POST", f"schedules/{sn}/runs"), ("PATCH", f"schedules/{sn}"),
                             ("GET", f"jobs/{jn}"), ("GET", f"jobs/{jn}/logs"), ("POST", f"jobs/{jn}/cancel"),
                             ("DELETE", f"jobs/{jn}"), ("DELETE", f"schedules/{sn}")]:
            body = {"suspend": False} if method == "PATCH" else ({} if method == "POST" else None)
            resp = s.request(method, f"{base}/{path}", json=body, allow_redirects=False, timeout=60)
            refused = resp.status_code == 403 or (
                resp.status_code in (302, 303) and "login" in resp.headers.get("Location", ""))
            assert refused, f"bob's token on alice's server: {method} {path} -> {resp.status_code} {resp.text[:500]}"
            _no_leak(resp.text)
            assert sn not in resp.text and jn not in resp.text, resp.text
        # nor can it read her files through her server
        files = s.get(f"{hub.url}/user/{alice.name}/api/contents/{theirs.output_notebook}",
                      allow_redirects=False, timeout=60)
        assert files.status_code in (302, 303, 403), files.status_code
        _no_leak(files.text)
    finally:
        hub.api("DELETE", f"/users/{bob.name}/tokens/{token_id}")


KERNEL_CLUSTER_PROBE = r'''
import dataclasses, json, os
import requests
from kubelab.core.settings import WorkspaceSettings
from kubelab.server_extension.services import JobService, ScheduleService, ServiceError, Workspace

A = json.loads(%(args)r)
out = {"services": {}, "apiserver": {}}
settings = dataclasses.replace(WorkspaceSettings.from_env(), namespace=A["ns"])
ws = Workspace(settings_json=settings.to_json())
sch, jobs = ScheduleService(workspace=ws), JobService(workspace=ws)
calls = {
    "schedules.list": lambda: sch.list(), "schedules.get": lambda: sch.get(A["schedule"]),
    "schedules.runs": lambda: sch.runs(A["schedule"]), "schedules.run_now": lambda: sch.run_now(A["schedule"]),
    "schedules.update": lambda: sch.update(A["schedule"], {"suspend": False}),
    "schedules.run_logs": lambda: b"".join(sch.run_logs(A["schedule"], A["run"])).decode(),
    "schedules.delete": lambda: sch.delete(A["schedule"]),
    "jobs.list": lambda: jobs.list(), "jobs.get": lambda: jobs.get(A["job"]),
    "jobs.logs": lambda: b"".join(jobs.logs(A["job"])).decode(), "jobs.cancel": lambda: jobs.cancel(A["job"]),
    "jobs.delete": lambda: jobs.delete(A["job"]),
}
for label, fn in calls.items():
    try:
        out["services"][label] = ["ok", str(fn())[:500]]
    except ServiceError as e:
        out["services"][label] = [type(e).__name__, e.code, e.message]
    except Exception as e:
        out["services"][label] = ["unexpected " + type(e).__name__, str(e)[:500]]

sa = "/var/run/secrets/kubernetes.io/serviceaccount"
token = open(sa + "/token").read().strip()
api = "https://%%s:%%s" %% (os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"])
s = requests.Session()
s.trust_env = False
s.verify = sa + "/ca.crt"
s.headers["Authorization"] = "Bearer " + token
ns = A["ns"]
pod = A["pod"]
for label, method, path in [
        ("list cronjobs", "GET", "/apis/batch/v1/namespaces/%%s/cronjobs" %% ns),
        ("get cronjob", "GET", "/apis/batch/v1/namespaces/%%s/cronjobs/%%s" %% (ns, A["schedule"])),
        ("list jobs", "GET", "/apis/batch/v1/namespaces/%%s/jobs" %% ns),
        ("get job", "GET", "/apis/batch/v1/namespaces/%%s/jobs/%%s" %% (ns, A["job"])),
        ("list pods", "GET", "/api/v1/namespaces/%%s/pods" %% ns),
        ("pod log", "GET", "/api/v1/namespaces/%%s/pods/%%s/log" %% (ns, pod)),
        ("get s3 secret", "GET", "/api/v1/namespaces/%%s/secrets/kubelab-s3" %% ns),
        ("delete job", "DELETE", "/apis/batch/v1/namespaces/%%s/jobs/%%s" %% (ns, A["job"])),
        ("delete cronjob", "DELETE", "/apis/batch/v1/namespaces/%%s/cronjobs/%%s" %% (ns, A["schedule"])),
        ("create job", "POST", "/apis/batch/v1/namespaces/%%s/jobs" %% ns)]:
    body = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "bob-was-here"},
            "spec": {"template": {"spec": {"restartPolicy": "Never",
                                           "containers": [{"name": "c", "image": "x"}]}}}} if method == "POST" else None
    r = s.request(method, api + path, json=body, timeout=30)
    out["apiserver"][label] = [r.status_code, r.text[:300]]
# the token works for his own namespace (so the 403s above are about alice's)
r = s.get(api + "/apis/batch/v1/namespaces/%%s/cronjobs" %% A["own_ns"], timeout=30)
out["own"] = r.status_code
# her server's pod, directly (not through the proxy): the NetworkPolicy lets nothing in from his namespace
try:
    r = requests.get("http://%%s:8888/user/%%s/kubelab/api/schedules" %% (A["server_ip"], A["alice"]), timeout=5)
    out["direct"] = [r.status_code, r.text[:300]]
except requests.RequestException as e:
    out["direct"] = [type(e).__name__]
print("RESULT" + json.dumps(out))
'''


def _kernel_json(user, code: str) -> dict:
    stdout = user.execute(code, timeout=240)
    line = [x for x in stdout.splitlines() if x.startswith("RESULT")]
    assert line, stdout
    return json.loads(line[-1][len("RESULT"):])


def test_bobs_kernel_cannot_reach_alices_namespace(alice, bob, kubectl, theirs, unchanged):
    pod = kubectl.json("-n", alice.namespace, "get", "pods", "-l", f"kubelab.io/job={theirs.job}")["items"]
    assert pod, "alice's job has no pod"
    server = kubectl.json("-n", alice.namespace, "get", "pods", "-l", "component=singleuser-server")["items"]
    assert server and server[0]["status"].get("podIP"), "alice's server pod has no IP"
    args = json.dumps({"ns": alice.namespace, "own_ns": bob.namespace, "schedule": theirs.schedule,
                       "job": theirs.job, "run": theirs.run, "pod": pod[0]["metadata"]["name"],
                       "alice": alice.name, "server_ip": server[0]["status"]["podIP"]})
    out = _kernel_json(bob, KERNEL_CLUSTER_PROBE % {"args": args})
    assert out["own"] == 200, out
    assert out["direct"][0] in ("ConnectTimeout", "ConnectionError", 403), \
        f"bob's kernel reached alice's server pod directly: {out['direct']}"
    _no_leak(json.dumps(out["direct"]))
    for label, result in out["services"].items():
        assert result[:2] == ["Forbidden", 403], f"bob's service layer on alice's namespace: {label} -> {result}"
        _no_leak(json.dumps(result))
    for label, (status, text) in out["apiserver"].items():
        assert status == 403, f"bob's ServiceAccount on alice's namespace: {label} -> {status} {text}"
        _no_leak(text)
    assert not kubectl("-n", alice.namespace, "get", "job", "bob-was-here", "--ignore-not-found", "-o", "name")


KERNEL_S3_PROBE = r'''
import json, os
import boto3
from botocore.exceptions import ClientError

A = json.loads(%(args)r)
out = {"home": {}, "s3": {}}
home = "/home/jovyan"
for rel in (A["notebook"], A["output_notebook"], ".kubelab/schedules/" + A["schedule"],
            ".kubelab/runs/" + A["schedule"], "../" + A["alice"]):
    out["home"][rel] = os.path.exists(os.path.join(home, rel))
out["prefix"] = os.environ["KUBELAB_S3_PREFIX"]
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
bucket = os.environ["KUBELAB_S3_BUCKET"]
theirs = "users/%%s/" %% A["alice"]
attempts = {
    "list her home": lambda: s3.list_objects_v2(Bucket=bucket, Prefix=theirs),
    "list all homes": lambda: s3.list_objects_v2(Bucket=bucket, Prefix="users/"),
    "read her notebook": lambda: s3.get_object(Bucket=bucket, Key=theirs + A["notebook"])["Body"].read(),
    "read her run output": lambda: s3.get_object(Bucket=bucket, Key=theirs + A["output_notebook"])["Body"].read(),
    "overwrite her notebook": lambda: s3.put_object(Bucket=bucket, Key=theirs + A["notebook"], Body=b"{}"),
    "delete her run output": lambda: s3.delete_object(Bucket=bucket, Key=theirs + A["output_notebook"]),
}
for label, fn in attempts.items():
    try:
        out["s3"][label] = ["ok", str(fn())[:300]]
    except ClientError as e:
        out["s3"][label] = [e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]]
# his own prefix works with the same credentials
out["own"] = s3.list_objects_v2(Bucket=bucket, Prefix=out["prefix"], MaxKeys=1)["ResponseMetadata"]["HTTPStatusCode"]
print("RESULT" + json.dumps(out))
'''


def test_bobs_kernel_cannot_read_alices_home(alice, bob, theirs, unchanged):
    args = json.dumps({"alice": alice.name, "schedule": theirs.schedule, "notebook": theirs.notebook,
                       "output_notebook": theirs.output_notebook})
    out = _kernel_json(bob, KERNEL_S3_PROBE % {"args": args})
    assert out["prefix"] == f"users/{bob.name}/", out
    assert out["own"] == 200, out
    assert not any(out["home"].values()), f"alice's files seen from bob's home: {out['home']}"
    for label, result in out["s3"].items():
        assert result == ["AccessDenied", 403], f"bob's S3 credentials: {label} -> {result}"
    # her files are still there, as they were
    assert alice.get_file(theirs.notebook).status_code == 200
    run_out = alice.get_file(theirs.output_notebook + "?content=1")
    assert run_out.status_code == 200 and RUN_SECRET in json.dumps(run_out.json()["content"])


KERNEL_SUBPATH_PROBE = r'''
import json, os, time, uuid
import requests

A = json.loads(%(args)r)
out = {}
name = "iso-peek-" + uuid.uuid4().hex[:6]
link = "/home/jovyan/." + name
sa = "/var/run/secrets/kubernetes.io/serviceaccount"
s = requests.Session()
s.trust_env = False
s.verify = sa + "/ca.crt"
s.headers["Authorization"] = "Bearer " + open(sa + "/token").read().strip()
api = "https://%%s:%%s/api/v1/namespaces/%%s/pods" %% (os.environ["KUBERNETES_SERVICE_HOST"],
                                                   os.environ["KUBERNETES_SERVICE_PORT"], A["own_ns"])
settings = json.loads(os.environ["KUBELAB_SETTINGS"])
os.symlink("../" + A["alice"], link)  # a symlink in his own home, to her home next to it in the bucket
pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
       "spec": {"restartPolicy": "Never", "securityContext": {"runAsUser": settings["uid"], "runAsGroup": settings["gid"]},
                "nodeSelector": {"kubelab.io/resource-group": "cpu"}, "automountServiceAccountToken": False,
                "containers": [{"name": "peek", "image": settings["image"], "command": ["ls", "-a", "/mnt/peek"],
                                "resources": {"requests": {"cpu": "50m", "memory": "32Mi"},
                                              "limits": {"cpu": "100m", "memory": "64Mi"}},
                                "volumeMounts": [{"name": "s3", "mountPath": "/mnt/peek", "readOnly": True,
                                                  "subPath": "users/%%s/.%%s" %% (A["bob"], name)}]}],
                "volumes": [{"name": "s3", "hostPath": {"path": settings["s3_mount_host_path"], "type": "Directory"}}]}}
try:
    r = s.post(api, json=pod, timeout=30)
    out["create"] = [r.status_code, r.text[:300]]
    if r.status_code < 300:
        for _ in range(90):
            p = s.get(api + "/" + name, timeout=30).json()
            if p.get("status", {}).get("phase") in ("Succeeded", "Failed"):
                break
            waiting = [((c.get("state") or {}).get("waiting") or {}).get("reason")
                       for c in p.get("status", {}).get("containerStatuses") or []]
            if any(w and w not in ("ContainerCreating", "PodInitializing") for w in waiting):
                break
            time.sleep(1)
        out["phase"] = p.get("status", {}).get("phase")
        out["status"] = json.dumps(p.get("status", {}).get("containerStatuses"))[:500]
        out["log"] = s.get(api + "/" + name + "/log", timeout=30).text[:2000]
finally:
    s.delete(api + "/" + name, timeout=30)
    os.unlink(link)
print("RESULT" + json.dumps(out))
'''


def test_bobs_pod_cannot_mount_alices_home_through_a_symlink(alice, bob, theirs, unchanged):
    """His ServiceAccount may create pods with the node's S3 mount at subPath users/<bob>/...;
    a symlink there to ../<alice> must not give him her home (the kubelet resolves subPath
    symlinks and only checks that the result stays inside the volume, which is the whole bucket)."""
    args = json.dumps({"alice": alice.name, "bob": bob.name, "own_ns": bob.namespace})
    out = _kernel_json(bob, KERNEL_SUBPATH_PROBE % {"args": args})
    leaked = theirs.notebook.split("/")[0] in out.get("log", "")
    assert not leaked, f"bob's pod listed alice's home through a subPath symlink: {out}"
    assert out["create"][0] >= 400 or out.get("phase") != "Succeeded", out
