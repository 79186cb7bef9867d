"""Pure parts of the admin service: the views joined from cluster-wide lists,
the audit log file, run names for idempotency keys, and the config helper."""
from __future__ import annotations

import json

from traitlets.config import Config

from kubelab.core import resource_groups as rg
from kubelab.core import workloads as W
from kubelab.core.names import safe_slug
from kubelab.hub import admin_views as V
from kubelab.hub.audit import AuditLog
from kubelab.hub.config import TRIGGER_SCOPE, admin_service

GROUPS = rg.parse(rg.DEFAULT_GROUPS)


def ns(name, user, phase="Active"):
    return {"metadata": {"name": name, "labels": {"kubelab.io/user": user, "kubelab.io/user-namespace": "true"}},
            "status": {"phase": phase}}


def quota(namespace, hard, used):
    return {"metadata": {"name": "kubelab-quota", "namespace": namespace}, "spec": {"hard": hard},
            "status": {"hard": hard, "used": used}}


def pod(name, namespace, node=None, gpus=0, phase="Running", labels=None, cond=None, cpu="500m"):
    limits = {"cpu": cpu, "memory": "1Gi", **({"nvidia.com/gpu": str(gpus)} if gpus else {})}
    p = {"metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
         "spec": {"nodeName": node, "containers": [{"name": "c", "resources": {"limits": limits}}],
                  "nodeSelector": {"kubelab.io/resource-group": "gpu-a100"} if gpus else {}},
         "status": {"phase": phase, "conditions": [cond] if cond else []}}
    return p


NODES = [{"metadata": {"name": "gpu-0", "labels": {"kubelab.io/resource-group": "gpu-a100"}},
          "status": {"allocatable": {"cpu": "8", "memory": "16Gi", "nvidia.com/gpu": "4"},
                     "conditions": [{"type": "Ready", "status": "True"}]}},
         {"metadata": {"name": "cpu-0", "labels": {"kubelab.io/resource-group": "cpu"}},
          "status": {"allocatable": {"cpu": "32", "memory": "64Gi"}, "conditions": [{"type": "Ready", "status": "True"}]}}]


def test_user_rows_join_hub_users_namespaces_quotas_and_workload_counts():
    users = [{"name": "alice", "admin": False, "groups": ["gpu-users"], "servers": {"": {"ready": True}}},
             {"name": "bob", "admin": True, "groups": [], "servers": {}},
             {"name": "Carol@x.org", "groups": [], "servers": {"": {"ready": False, "pending": "spawn"}}}]
    namespaces = [ns("kubelab-alice", "alice"), ns("kubelab-gone", "gone", "Terminating"),
                  ns("kubelab-carol", safe_slug("Carol@x.org"))]
    quotas = [quota("kubelab-alice", {"requests.cpu": "4", "requests.nvidia.com/gpu": "2", "requests.memory": "8Gi"},
                    {"requests.cpu": "1500m", "requests.nvidia.com/gpu": "1", "requests.memory": "2Gi"})]
    jobs = [{"metadata": {"name": "j1", "namespace": "kubelab-alice"}, "spec": {}, "status": {"active": 1}},
            {"metadata": {"name": "j2", "namespace": "kubelab-alice"}, "spec": {},
             "status": {"conditions": [{"type": "Complete", "status": "True"}]}}]
    cronjobs = [{"metadata": {"name": "s", "namespace": "kubelab-alice"}}]
    rows = {r["user"]: r for r in V.user_rows(users, namespaces, quotas, cronjobs, jobs, [])}
    a = rows["alice"]
    assert a["namespace"] == "kubelab-alice" and a["server"] == "running"
    assert a["quota"]["requests.cpu"] == {"used": "1.5", "hard": "4", "fraction": 0.375}
    assert a["quota"]["requests.memory"]["used"] == "2.0Gi" and a["quota"]["requests.nvidia.com/gpu"]["used"] == "1"
    assert a["counts"] == {"servers": 1, "jobs": 2, "jobs_running": 1, "schedules": 1, "services": 0}
    assert rows["bob"]["namespace"] is None and rows["bob"]["admin"] and rows["bob"]["server"] == "stopped"
    assert rows["Carol@x.org"]["namespace"] == "kubelab-carol" and rows["Carol@x.org"]["server"] == "pending"
    # a namespace whose hub user is gone is listed, marked as such
    assert rows["gone"]["hub_user"] is False and rows["gone"]["namespace_phase"] == "Terminating"


def test_group_view_names_gpu_holders_and_why_pods_wait():
    unsched = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
               "message": "0/2 nodes are available: 2 Insufficient nvidia.com/gpu."}
    pods = [pod("jupyter-alice", "kubelab-alice", "gpu-0", 1, labels={"component": "singleuser-server",
                                                                      "kubelab.io/user": "alice"}),
            pod("train-0-x", "kubelab-bob", "gpu-0", 2, labels={"kubelab.io/component": "training-job"}),
            pod("cpu-pod", "kubelab-bob", "cpu-0"),
            pod("waiting", "kubelab-carol", None, 4, phase="Pending", cond=unsched)]
    gpu = V.group_view(rg.find(GROUPS, "gpu-a100"), NODES, pods, {"kubelab-bob": "bob", "kubelab-carol": "carol"})
    assert (gpu["gpus_allocatable"], gpu["gpus_allocated"], gpu["gpus_free"]) == (4, 3, 1)
    assert [(h["user"], h["kind"], h["gpus"], h["node"]) for h in gpu["gpu_holders"]] == [
        ("alice", "server", 1, "gpu-0"), ("bob", "job", 2, "gpu-0")]
    assert gpu["pending"] == [{"user": "carol", "namespace": "kubelab-carol", "pod": "waiting", "kind": "pod",
                               "gpus": 4, "reason": "Unschedulable: " + unsched["message"], "since": None}]
    assert gpu["nodes"][0]["gpus_allocated"] == 3 and gpu["nodes"][0]["cpu_allocated"] == 1.0
    cap = V.capacity_summary([gpu])
    assert cap == {"groups": [{"name": "gpu-a100", "gpus_allocatable": 4, "gpus_allocated": 3, "gpus_free": 1,
                               "cpu_free": 7.0, "memory_free": 16 * 2**30 - 2 * 2**30}]}
    assert "alice" not in json.dumps(cap) and "bob" not in json.dumps(cap)


def test_workload_rows_statuses_cancelled_and_filters():
    running = {"metadata": {"name": "train", "namespace": "kubelab-bob", "labels": {"kubelab.io/user": "bob"},
                            "creationTimestamp": "2026-11-23T10:00:00Z"}, "spec": {}, "status": {"active": 1}}
    cancelled = {"metadata": {"name": "run-1", "namespace": "kubelab-alice", "creationTimestamp": "2026-11-23T11:00:00Z",
                              "labels": {"kubelab.io/user": "alice", W.SCHEDULE_LABEL: "nightly"},
                              "annotations": W.cancel_patch("admin")["metadata"]["annotations"]},
                 "spec": {"suspend": True}, "status": {}}
    rows = V.workload_rows([], [running, cancelled], [], [pod("train-0", "kubelab-bob", "cpu-0",
                                                             labels={W.JOB_NAME_LABEL: "train"})], {})
    by = {r["name"]: r for r in rows}
    assert by["train"]["status"] == "Running" and by["train"]["stoppable"] and by["train"]["kind"] == "job"
    assert by["run-1"]["status"] == "Cancelled" and by["run-1"]["detail"] == "cancelled by admin"
    assert by["run-1"]["kind"] == "run" and not by["run-1"]["stoppable"]
    assert [r["name"] for r in rows] == ["run-1", "train"], "newest first"
    assert [r["name"] for r in V.filter_workloads(rows, user="bob")] == ["train"]
    assert [r["name"] for r in V.filter_workloads(rows, status="cancelled")] == ["run-1"]
    assert V.filter_workloads(rows, kind="service") == []


def test_events_newest_first_and_limited():
    evs = [{"metadata": {"namespace": "kubelab-a"}, "involvedObject": {"kind": "Pod", "name": f"p{i}"},
            "reason": "FailedScheduling", "message": " no room \n", "lastTimestamp": f"2026-11-23T10:0{i}:00Z"}
           for i in range(5)]
    rows = V.event_rows(evs, {"kubelab-a": "alice"}, 3)
    assert [r["object"] for r in rows] == ["Pod/p4", "Pod/p3", "Pod/p2"]
    assert rows[0]["user"] == "alice" and rows[0]["message"] == "no room"


def test_audit_log_is_durable_json_lines_read_newest_first(tmp_path):
    path = tmp_path / "state" / "audit.jsonl"
    log = AuditLog(path)
    for i in range(1500):
        log.record("admin", "reconcile" if i % 2 else "job.stop", f"user:u{i}", n=i)
    with open(path, "a") as f:
        f.write('{"time": "cut short')  # a crash mid-write
    again = AuditLog(path)  # as after a restart
    newest = again.tail(3)
    assert [e["target"] for e in newest] == ["user:u1499", "user:u1498", "user:u1497"]
    assert [e["details"]["n"] for e in again.tail(2, "job.stop")] == [1498, 1496]
    assert len(again.tail(5000)) == 1500
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert AuditLog(tmp_path / "none.jsonl").tail() == []


def test_trigger_run_names_are_stable_per_key_and_valid():
    a = W.triggered_run_name("s" * 52, "key-1")
    assert a == W.triggered_run_name("s" * 52, "key-1") and len(a) == 63
    assert a != W.triggered_run_name("s" * 52, "key-2") != W.triggered_run_name("other", "key-1")
    cj = {"metadata": {"name": "nightly", "namespace": "ns", "uid": "u1"},
          "spec": {"jobTemplate": {"metadata": {"labels": {W.SCHEDULE_LABEL: "nightly"}}, "spec": {"template": {
              "spec": {"containers": [{"name": "nb", "env": [{"name": W.PARAMETERS_ENV, "value": '{"a": 1, "b": 2}'}]}]}}}}}}
    job = W.run_job_from_cronjob(cj, "nightly-x", "external", {"b": 3}, {W.IDEMPOTENCY_ANNOTATION: "k"})
    assert W.run_parameters(job) == {"a": 1, "b": 3}
    assert job["metadata"]["annotations"][W.IDEMPOTENCY_ANNOTATION] == "k"
    assert W.parameters_digest({"x": 1, "y": 2}) == W.parameters_digest({"y": 2, "x": 1})


def test_admin_service_helper_hands_the_spawner_settings_and_defines_the_scope(monkeypatch):
    monkeypatch.setenv("KUBECONFIG", "/k/config")
    monkeypatch.setenv("KUBELAB_PROXY_TOKEN", "secret")
    c = Config()
    c.KubelabSpawner.resource_groups = rg.DEFAULT_GROUPS
    c.KubelabSpawner.modify_pod_hook = lambda spawner, pod: pod  # not JSON: left out
    c.KubelabAdmin.events_limit = 50
    c.JupyterHub.extra_user_scopes = ["read:groups"]
    service, roles = admin_service(c, url="http://10.0.0.1:10101")
    env = service["environment"]
    cfg = json.loads(env["KUBELAB_ADMIN_CONFIG"])
    assert cfg["KubelabSpawner"]["resource_groups"][1]["name"] == "gpu-a100"
    assert "modify_pod_hook" not in cfg["KubelabSpawner"] and cfg["KubelabAdmin"] == {"events_limit": 50}
    assert env["KUBECONFIG"] == "/k/config" and "KUBELAB_PROXY_TOKEN" not in env
    assert service["url"] == "http://10.0.0.1:10101" and service["oauth_client_allowed_scopes"] == ["admin-ui"]
    assert TRIGGER_SCOPE in c.JupyterHub.custom_scopes
    assert c.JupyterHub.extra_user_scopes == ["read:groups", "access:services!service=kubelab-admin",
                                              f"{TRIGGER_SCOPE}!user"]
    server = [r for r in roles if r["name"] == "server"][0]
    assert "access:services!service=kubelab-admin" in server["scopes"] and "access:servers!server" in server["scopes"]
