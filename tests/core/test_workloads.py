"""Pure builders and checks for schedules and training jobs (no cluster)."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from kubelab.core import resource_groups as rg
from kubelab.core import workloads as W
from kubelab.core.settings import SettingsError, WorkspaceSettings

GROUPS = tuple(rg.parse([
    {"name": "cpu", "sizes": [{"name": "small", "cpu": "1", "memory": "2Gi"}]},
    {"name": "gpu", "max_gpus": 2, "node_selector": {"kubelab.io/gpu": "a100"},
     "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
     "sizes": [{"name": "big", "cpu": "8", "memory": "32Gi"}]},
]))
S = WorkspaceSettings(user="Alice.Smith", namespace="kubelab-alice", image="quay.io/jupyter/base-notebook:x",
                      resource_groups=GROUPS, default_group="cpu")
D = W.ScheduleDefaults()


def sched(**kw):
    req = {"name": "nightly", "notebook": "work/a.ipynb", "schedule": "0 6 * * *", **kw}
    return W.parse_schedule(req, S, D)


def test_settings_round_trip_through_the_env_var():
    again = WorkspaceSettings.from_env({"KUBELAB_SETTINGS": S.to_json()})
    assert again.to_dict() == S.to_dict()
    assert again.home_subpath == f"users/{again.user_slug}" and again.group("gpu").max_gpus == 2
    with pytest.raises(SettingsError, match="not started by KubelabSpawner"):
        WorkspaceSettings.from_env({})
    with pytest.raises(SettingsError, match="invalid"):
        WorkspaceSettings.from_json('{"user": "x"}')
    with pytest.raises(KeyError, match="your groups: cpu, gpu"):
        S.group("tpu")


def test_cronjob_has_safe_defaults_and_runs_the_snapshot_with_papermill():
    spec = sched(timezone="Europe/Berlin", parameters={"alpha": 0.5}, retries=2, timeout_seconds=600)
    cj = W.schedule_cronjob(S, spec, D)
    s = cj["spec"]
    assert s["timeZone"] == "Europe/Berlin" and s["concurrencyPolicy"] == "Forbid"
    assert s["startingDeadlineSeconds"] == 300 and s["successfulJobsHistoryLimit"] == 5
    job = s["jobTemplate"]["spec"]
    assert job["backoffLimit"] == 2 and job["activeDeadlineSeconds"] == 600
    pod = job["template"]["spec"]
    c = pod["containers"][0]
    assert c["command"][:3] == ["python", "-m", W.RUNNER_MODULE]
    assert f"/home/jovyan/{W.STATE_DIR}/schedules/nightly/a.ipynb" in c["command"]
    assert "$(KUBELAB_PARAMETERS)" in c["command"]
    env = {e["name"]: e for e in c["env"]}
    assert json.loads(env["KUBELAB_PARAMETERS"]["value"]) == {"alpha": 0.5}
    assert "batch.kubernetes.io/job-name" in env["KUBELAB_RUN_ID"]["valueFrom"]["fieldRef"]["fieldPath"]
    # home and datasets like the user's server; no API token in run pods
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert mounts["/home/jovyan"]["subPath"] == S.home_subpath
    assert mounts["/home/jovyan/datasets"]["readOnly"] is True
    assert pod["automountServiceAccountToken"] is False and pod["restartPolicy"] == "Never"
    assert cj["metadata"]["labels"][W.SCHEDULE_LABEL] == "nightly"
    assert job["template"]["metadata"]["labels"][W.SCHEDULE_LABEL] == "nightly"
    assert W.spec_of(cj)["parameters"] == {"alpha": 0.5}


def test_backoff_limit_is_zero_unless_retries_are_asked_for():
    assert W.schedule_cronjob(S, sched(), D)["spec"]["jobTemplate"]["spec"]["backoffLimit"] == 0


@pytest.mark.parametrize("kw, message", [
    ({"schedule": "* * * *"}, "found 4 fields"),
    ({"schedule": "0 25 * * *"}, "hour"),
    ({"timezone": "Nowhere/City"}, "time zone"),
    ({"name": "x" * 53}, "too long"),
    ({"name": "has_underscore"}, "invalid"),
    ({"notebook": "../other/a.ipynb"}, "outside your home"),
    ({"notebook": "/etc/x.ipynb"}, "outside your home"),
    ({"notebook": "work/a.py"}, ".ipynb"),
    ({"concurrency_policy": "Sometimes"}, "concurrency_policy"),
    ({"timeout_seconds": 5}, "timeout_seconds"),
    ({"parameters": {"not valid": 1}}, "parameter"),
    ({"webhook": "ftp://x"}, "webhook"),
    ({"suspend": "yes"}, "suspend"),
])
def test_bad_schedule_requests_name_the_problem(kw, message):
    with pytest.raises(W.WorkloadError, match=message):
        sched(**kw)


def test_home_relative_accepts_paths_inside_the_home_only():
    assert W.home_relative("/home/jovyan/a/b.ipynb", "/home/jovyan") == "a/b.ipynb"
    assert W.home_relative("./a/../b.ipynb", "/home/jovyan") == "b.ipynb"
    for bad in ("/home/jovyanX/a", "..", "a/../../b", "/", ""):
        with pytest.raises(W.WorkloadError):
            W.home_relative(bad, "/home/jovyan")


def test_run_now_is_a_job_from_the_template_owned_by_the_cronjob():
    cj = W.schedule_cronjob(S, sched(parameters={"alpha": 1, "beta": 2}), D)
    cj["metadata"]["uid"] = "uid-1"
    job = W.run_job_from_cronjob(cj, W.manual_run_name("nightly", datetime(2026, 1, 1, tzinfo=timezone.utc)),
                                 "external", {"beta": 3})
    assert job["metadata"]["name"] == "nightly-1767225600" and len(job["metadata"]["name"]) <= 63
    assert job["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert job["metadata"]["annotations"][W.TRIGGER_ANNOTATION] == "external"
    env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert json.loads(env["KUBELAB_PARAMETERS"]) == {"alpha": 1, "beta": 3}
    with pytest.raises(W.WorkloadError):
        W.run_job_from_cronjob(cj, "x", parameters=["not", "an", "object"])


def test_gpu_training_job_targets_the_groups_nodes_and_requests_gpus():
    spec = W.parse_training({"name": "train", "code": "print(1)", "resource_group": "gpu", "gpus": 2},
                            S, W.TrainingDefaults())
    job = W.training_job(S, spec)
    pod = job["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert pod["nodeSelector"] == {"kubelab.io/gpu": "a100"} and pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert c["command"] == ["python", f"/home/jovyan/{W.STATE_DIR}/jobs/train/main.py"]
    assert "subdomain" not in pod and job["spec"]["completions"] == 1


def test_distributed_job_is_indexed_with_torchrun_env_and_a_headless_service():
    spec = W.parse_training({"name": "ddp", "script": "t.py", "workers": 3, "args": ["--lr", "1"]},
                            S, W.TrainingDefaults())
    job = W.training_job(S, spec)
    assert job["spec"]["completionMode"] == "Indexed" and job["spec"]["parallelism"] == 3
    pod = job["spec"]["template"]["spec"]
    assert pod["subdomain"] == "ddp"
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["MASTER_ADDR"]["value"] == "ddp-0.ddp.kubelab-alice.svc"
    assert env["WORLD_SIZE"]["value"] == "3" and env["MASTER_PORT"]["value"] == "29500"
    assert "job-completion-index" in env["RANK"]["valueFrom"]["fieldRef"]["fieldPath"]
    svc = W.rendezvous_service(S, spec, {"name": "ddp", "uid": "u"})
    assert svc["spec"]["clusterIP"] == "None" and svc["spec"]["publishNotReadyAddresses"] is True
    assert svc["spec"]["selector"] == {W.JOB_NAME_LABEL: "ddp"}
    assert svc["metadata"]["ownerReferences"][0]["kind"] == "Job"


def test_pytorchjob_and_kueue_when_the_cluster_has_them():
    spec = W.parse_training({"name": "ddp", "code": "x", "workers": 2, "queue": "team-a"}, S, W.TrainingDefaults())
    pj = W.pytorchjob(S, spec, kueue=True)
    assert pj["kind"] == "PyTorchJob" and pj["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] == 1
    assert pj["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    names = {e["name"] for e in pj["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["env"]}
    assert "RANK" not in names  # the operator sets them
    assert "kueue.x-k8s.io/queue-name" not in W.training_job(S, spec, kueue=False)["metadata"]["labels"]


@pytest.mark.parametrize("req, message", [
    ({"name": "a"}, "exactly one"),
    ({"name": "a", "code": "x", "script": "y.py"}, "exactly one"),
    ({"name": "a", "code": "x", "workers": 99}, "workers"),
    ({"name": "a", "code": "x", "gpus": 1}, "GPUs"),
    ({"name": "a", "code": "x", "image": "bad image"}, "image"),
    ({"name": "a", "code": "x", "env": {"A": {"nested": 1}}}, "env"),
    ({"name": "a", "code": "x", "color": "red"}, "unknown"),
])
def test_bad_training_requests_name_the_problem(req, message):
    with pytest.raises(W.WorkloadError, match=message):
        W.parse_training(req, S, W.TrainingDefaults())


def test_forbidden_group_is_a_permission_error():
    with pytest.raises(PermissionError, match="tpu"):
        W.parse_training({"name": "a", "code": "x", "resource_group": "tpu"}, S, W.TrainingDefaults())


def test_status_views_explain_pending_and_failure():
    job = {"metadata": {"name": "r1", "labels": {W.SCHEDULE_LABEL: "s"}, "annotations": {}},
           "spec": {}, "status": {"active": 1}}
    pending_pod = {"metadata": {"name": "p"}, "status": {"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/2 nodes: Insufficient cpu"}]}}
    v = W.run_view(job, [pending_pod])
    assert v["status"] == "Pending" and "Insufficient cpu" in v["message"]
    quota = [{"type": "Warning", "reason": "FailedCreate", "message": "pods \"x\" is forbidden: exceeded quota"}]
    assert "exceeded quota" in W.job_status({"metadata": {"name": "j"}, "spec": {}, "status": {}}, [], quota)["message"]
    failed = {**job, "status": {"startTime": "2026-01-01T00:00:00Z", "conditions": [
        {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
         "lastTransitionTime": "2026-01-01T00:00:09Z"}]}}
    rec = {"error": {"cell": 3, "ename": "ZeroDivisionError", "evalue": "division by zero"},
           "output_notebook": ".kubelab/runs/s/x/a.ipynb"}
    v = W.run_view(failed, [], [], rec)
    assert v["status"] == "Failed" and v["duration_seconds"] == 9.0
    assert v["message"] == "cell 3 failed: ZeroDivisionError: division by zero"
    assert v["output_notebook"].endswith("a.ipynb")


def test_schedule_view_previews_next_runs_unless_suspended():
    cj = W.schedule_cronjob(S, sched(), D)
    cj["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    v = W.schedule_view(cj, now=datetime(2026, 1, 1, 7, 0, tzinfo=timezone.utc))
    assert v["next_runs"][:2] == ["2026-01-02T06:00:00Z", "2026-01-03T06:00:00Z"]
    assert v["notebook"] == "work/a.ipynb" and v["concurrency_policy"] == "Forbid"
    cj["spec"]["suspend"] = True
    assert W.schedule_view(cj)["next_runs"] == []
