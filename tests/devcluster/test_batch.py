"""Batch workloads as kubelab's scheduled notebooks and training jobs create them, on the real devcluster.

CronJobs, Jobs created from them, deadlines, back-off, termination messages,
Indexed Jobs with a headless Service (the torchrun rendezvous pattern), GPU Jobs,
Job deletion and what a Job that cannot run reports. Every namespace here is
``batchcheck-*`` and is deleted afterwards.
"""
from __future__ import annotations

import json
import os
import textwrap
import uuid
from pathlib import Path

import pytest

from tests.waiting import eventually

IMAGE = "python:3.12"
GPU_NODE = "kubelab-gpu-0"


# -- helpers ---------------------------------------------------------------------------------
def make_namespace(kubectl, purpose: str) -> str:
    name = f"batchcheck-{purpose}-{uuid.uuid4().hex[:5]}"
    kubectl("create", "namespace", name)
    return name


@pytest.fixture
def ns(kubectl, request):
    """A fresh ``batchcheck-*`` namespace for one test, deleted afterwards (without waiting)."""
    name = make_namespace(kubectl, request.node.name[5:20].replace("_", "-").strip("-"))
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


def py(code: str) -> str:
    """A container command running ``code`` with the image's python (as a YAML flow list)."""
    return json.dumps(["python", "-c", textwrap.dedent(code)])


def job_status(kubectl, ns: str, name: str) -> dict:
    return kubectl.json("-n", ns, "get", "job", name).get("status") or {}


def finished(kubectl, ns: str, name: str) -> dict | None:
    """The Job's Complete or Failed condition once it has one."""
    for c in job_status(kubectl, ns, name).get("conditions") or []:
        if c["type"] in ("Complete", "Failed") and c["status"] == "True":
            return c
    return None


def job_pods(kubectl, ns: str, job: str) -> list[dict]:
    return kubectl.json("-n", ns, "get", "pods", "-l", f"batch.kubernetes.io/job-name={job}")["items"]


def events_for(kubectl, ns: str, name: str) -> list[dict]:
    return kubectl.json("-n", ns, "get", "events", "--field-selector", f"involvedObject.name={name}")["items"]


def processes_with(marker: str) -> list[int]:
    """Pids of this machine's processes whose command line contains ``marker`` (pods run here)."""
    pids = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit() or int(p.name) == os.getpid():
            continue
        try:
            cmdline = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline:
            pids.append(int(p.name))
    return pids


def sleeper(name: str, marker: str, extra: str = "") -> str:
    """A Job whose one pod sleeps 600 s; ``marker`` ends up in the process's command line."""
    return textwrap.dedent(f"""
        apiVersion: batch/v1
        kind: Job
        metadata: {{name: {name}}}
        spec:
          backoffLimit: 0
          {extra}
          template:
            spec:
              restartPolicy: Never
              containers:
              - name: main
                image: {IMAGE}
                command: ["python", "-c", "import time; time.sleep(600)", "{marker}"]
    """)


# -- CronJobs: created when the module starts, checked by its last test -------------------------
CRON = textwrap.dedent(f"""
    apiVersion: batch/v1
    kind: CronJob
    metadata: {{name: tick}}
    spec:
      schedule: "* * * * *"
      timeZone: Etc/UTC
      concurrencyPolicy: Forbid
      successfulJobsHistoryLimit: 1
      jobTemplate:
        spec:
          backoffLimit: 0
          template:
            spec:
              restartPolicy: Never
              containers:
              - name: main
                image: {IMAGE}
                command: ["python", "-c", "print('tick at', __import__('datetime').datetime.now())"]
    ---
    apiVersion: batch/v1
    kind: CronJob
    metadata: {{name: tock}}
    spec:
      schedule: "* * * * *"
      timeZone: Etc/UTC
      concurrencyPolicy: Forbid
      successfulJobsHistoryLimit: 0
      jobTemplate:
        spec:
          template:
            spec:
              restartPolicy: Never
              containers:
              - {{name: main, image: {IMAGE}, command: ["python", "-c", "print('tock')"]}}
    ---
    apiVersion: batch/v1
    kind: CronJob
    metadata: {{name: paused}}
    spec:
      schedule: "* * * * *"
      timeZone: Etc/UTC
      suspend: true
      jobTemplate:
        spec:
          template:
            spec:
              restartPolicy: Never
              containers:
              - {{name: main, image: {IMAGE}, command: ["python", "-c", "print('run by hand')"]}}
""")


@pytest.fixture(scope="module", autouse=True)
def cron_ns(kubectl):
    """The CronJobs wait for the next minute, so they start before everything else in this module."""
    name = make_namespace(kubectl, "cron")
    kubectl.apply(CRON, name)
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


# -- tests -------------------------------------------------------------------------------------
def test_deadline_and_backoff_limit_fail_the_job_with_reason_and_termination_messages(kubectl, ns):
    marker = f"deadline-{ns}"
    kubectl.apply(sleeper("slow", marker, extra="activeDeadlineSeconds: 5"), ns)
    kubectl.apply(textwrap.dedent(f"""
        apiVersion: batch/v1
        kind: Job
        metadata: {{name: broken}}
        spec:
          backoffLimit: 0
          template:
            spec:
              restartPolicy: Never
              containers:
              - name: writes-message
                image: {IMAGE}
                command: {py('''
                    import sys
                    open("/dev/termination-log", "w").write("x" * 5000 + "checkpoint 7 is corrupt")
                    sys.exit(2)''')}
              - name: falls-back-to-logs
                image: busybox
                command: ["sh", "-c", "echo loading data; echo 'no such table: runs' >&2; exit 3"]
                terminationMessagePolicy: FallbackToLogsOnError
    """), ns)
    eventually(lambda: processes_with(marker), 60, 0.5, what="the sleeping job's process")

    slow = eventually(lambda: finished(kubectl, ns, "slow"), 90, what="deadline job end")
    assert (slow["type"], slow["reason"]) == ("Failed", "DeadlineExceeded"), slow
    eventually(lambda: not processes_with(marker), 60, 0.5, what="the sleeping process to stop")
    eventually(lambda: all(p["status"].get("phase") in ("Succeeded", "Failed") or p["metadata"].get("deletionTimestamp")
                           for p in job_pods(kubectl, ns, "slow")), 60, what="the deadline job's pod to go")

    broken = eventually(lambda: finished(kubectl, ns, "broken"), 90, what="failing job end")
    assert (broken["type"], broken["reason"]) == ("Failed", "BackoffLimitExceeded"), broken
    [pod] = job_pods(kubectl, ns, "broken")
    assert pod["status"]["phase"] == "Failed"
    term = {s["name"]: s["state"]["terminated"] for s in pod["status"]["containerStatuses"]}
    assert term["writes-message"]["exitCode"] == 2
    # The kubelet keeps the end of a long message (4096 bytes), and falls back to the log's tail.
    assert term["writes-message"]["message"] == ("x" * 5000 + "checkpoint 7 is corrupt")[-4096:]
    assert term["falls-back-to-logs"]["exitCode"] == 3
    assert term["falls-back-to-logs"]["message"] == "loading data\nno such table: runs\n"


INDEXED = """
    import os, socket, sys, time
    index = int(os.environ["JOB_COMPLETION_INDEX"])
    print(f"index={index} annotation={os.environ['INDEX_ANNOTATION']} job={os.environ['JOB_NAME']} "
          f"host={socket.gethostname()} fqdn={socket.getfqdn()}", flush=True)
    master = os.environ["MASTER_ADDR"]
    if index == 0:
        server = socket.create_server(("", 29500))
        server.settimeout(120)
        conn, peer = server.accept()
        print(f"rank 0 got rank {conn.recv(16).decode()} from {peer[0]}", flush=True)
        sys.exit(0)
    # <job>-0.<svc>, <job>-0.<svc>.<ns>.svc (kubelab's MASTER_ADDR) and the FQDN
    names = [master, f"{master}.{os.environ['POD_NAMESPACE']}.svc",
             f"{master}.{os.environ['POD_NAMESPACE']}.svc.cluster.local"]
    deadline = time.time() + 60
    while True:
        try:
            ips = " ".join(socket.gethostbyname(name) for name in names)
            conn = socket.create_connection((master, 29500), timeout=5)
            break
        except OSError as e:
            if time.time() > deadline:
                raise
            print("waiting for rank 0:", e, flush=True)
            time.sleep(1)
    conn.sendall(str(index).encode())
    conn.close()
    print(f"rank {index} resolved {ips} and connected", flush=True)
"""


def test_indexed_job_pods_find_each_other_through_headless_service(kubectl, ns):
    kubectl.apply(textwrap.dedent(f"""
        apiVersion: v1
        kind: Service
        metadata: {{name: workers}}
        spec:
          clusterIP: None
          publishNotReadyAddresses: true
          selector: {{batch.kubernetes.io/job-name: train}}
          ports: [{{name: rdzv, port: 29500}}]
        ---
        apiVersion: batch/v1
        kind: Job
        metadata: {{name: train}}
        spec:
          completionMode: Indexed
          completions: 2
          parallelism: 2
          backoffLimit: 0
          template:
            spec:
              subdomain: workers
              restartPolicy: Never
              containers:
              - name: main
                image: {IMAGE}
                command: {py(INDEXED)}
                ports: [{{containerPort: 29500}}]
                env:
                - name: JOB_NAME
                  valueFrom: {{fieldRef: {{fieldPath: "metadata.labels['batch.kubernetes.io/job-name']"}}}}
                - name: INDEX_ANNOTATION
                  valueFrom:
                    fieldRef: {{fieldPath: "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}
                - name: POD_NAMESPACE
                  valueFrom: {{fieldRef: {{fieldPath: metadata.namespace}}}}
                - {{name: MASTER_ADDR, value: "$(JOB_NAME)-0.workers"}}
    """), ns)
    done = eventually(lambda: finished(kubectl, ns, "train"), 150, what="indexed job end")
    pods = {int(p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]): p
            for p in job_pods(kubectl, ns, "train")}
    logs = {i: kubectl("-n", ns, "logs", p["metadata"]["name"]) for i, p in pods.items()}
    assert done["type"] == "Complete", (done, logs)
    assert sorted(pods) == [0, 1]
    for i, p in pods.items():
        assert p["status"]["phase"] == "Succeeded"
        assert p["spec"]["hostname"] == f"train-{i}" and p["spec"]["subdomain"] == "workers"
        fqdn = f"train-{i}.workers.{ns}.svc.cluster.local"
        assert f"index={i} annotation={i} job=train host=train-{i} fqdn={fqdn}" in logs[i], logs[i]
    ip0, ip1 = pods[0]["status"]["podIP"], pods[1]["status"]["podIP"]
    assert f"rank 0 got rank 1 from {ip1}" in logs[0], logs[0]
    assert f"rank 1 resolved {ip0} {ip0} {ip0} and connected" in logs[1], logs[1]
    assert job_status(kubectl, ns, "train").get("completedIndexes") == "0,1"


def test_gpu_job_pods_land_on_the_gpu_node_with_their_own_devices(kubectl, ns):
    kubectl.apply(textwrap.dedent(f"""
        apiVersion: batch/v1
        kind: Job
        metadata: {{name: gpus}}
        spec:
          completions: 2
          parallelism: 2
          backoffLimit: 0
          template:
            spec:
              restartPolicy: Never
              nodeSelector: {{kubelab.io/resource-group: gpu-a100}}
              tolerations: [{{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}}]
              containers:
              - name: main
                image: {IMAGE}
                command: {py('''
                    import os, time
                    print("nvidia=" + os.environ.get("NVIDIA_VISIBLE_DEVICES", "unset"),
                          "cuda=" + os.environ.get("CUDA_VISIBLE_DEVICES", "unset"), flush=True)
                    time.sleep(8)''')}
                resources: {{limits: {{nvidia.com/gpu: 1}}}}
    """), ns)
    done = eventually(lambda: finished(kubectl, ns, "gpus"), 120, what="GPU job end")
    assert done["type"] == "Complete", done
    pods = job_pods(kubectl, ns, "gpus")
    assert len(pods) == 2
    devices, spans = [], []
    for p in pods:
        assert p["spec"]["nodeName"] == GPU_NODE
        line = kubectl("-n", ns, "logs", p["metadata"]["name"]).strip()
        nvidia, cuda = (part.split("=", 1)[1] for part in line.split())
        assert nvidia == cuda and nvidia in {"0", "1", "2", "3"}, line
        devices.append(nvidia)
        term = p["status"]["containerStatuses"][0]["state"]["terminated"]
        spans.append((term["startedAt"], term["finishedAt"]))
    (s0, f0), (s1, f1) = spans
    if s0 < f1 and s1 < f0:  # they ran together (other users' pods may hold all but one GPU)
        assert devices[0] != devices[1], f"two pods running together share a GPU: {devices} {spans}"


def test_deleting_a_job_stops_its_running_pods(kubectl, ns):
    markers = {policy: f"{policy.lower()}-{ns}" for policy in ("Foreground", "Background")}
    for policy, marker in markers.items():
        kubectl.apply(sleeper(policy.lower(), marker), ns)
    for policy, marker in markers.items():
        eventually(lambda m=marker: processes_with(m), 60, 0.5, what=f"{policy} job's process")
    kubectl("-n", ns, "delete", "job", "foreground", "--cascade=foreground", "--wait=false")
    kubectl("-n", ns, "delete", "job", "background", "--cascade=background", "--wait=false")
    for policy, marker in markers.items():
        eventually(lambda m=marker: not processes_with(m), 60, 0.5, what=f"{policy} job's process to stop")
    eventually(lambda: not kubectl("-n", ns, "get", "pods", "-o", "name").strip(), 60, what="all pods gone")
    eventually(lambda: not kubectl("-n", ns, "get", "jobs", "-o", "name").strip(), 60, what="both jobs gone")


def test_job_over_quota_and_unschedulable_pod_report_why(kubectl, ns):
    kubectl.apply(textwrap.dedent("""
        apiVersion: v1
        kind: ResourceQuota
        metadata: {name: no-gpus}
        spec:
          hard: {requests.nvidia.com/gpu: "0"}
    """), ns)
    eventually(lambda: (kubectl.json("-n", ns, "get", "resourcequota", "no-gpus").get("status") or {}).get("hard"),
               60, what="quota status")
    kubectl.apply(textwrap.dedent(f"""
        apiVersion: batch/v1
        kind: Job
        metadata: {{name: wants-gpu}}
        spec:
          backoffLimit: 0
          template:
            spec:
              restartPolicy: Never
              tolerations: [{{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}}]
              containers:
              - name: main
                image: {IMAGE}
                command: ["python", "-c", "pass"]
                resources: {{limits: {{nvidia.com/gpu: 1}}}}
        ---
        apiVersion: batch/v1
        kind: Job
        metadata: {{name: huge}}
        spec:
          backoffLimit: 0
          template:
            spec:
              restartPolicy: Never
              containers:
              - name: main
                image: {IMAGE}
                command: ["python", "-c", "pass"]
                resources: {{requests: {{cpu: "1000"}}}}
    """), ns)

    def quota_event():
        return [e for e in events_for(kubectl, ns, "wants-gpu") if e["reason"] == "FailedCreate"]
    event = eventually(quota_event, 60, what="FailedCreate event on the Job")[0]
    message = event["message"]
    assert event["type"] == "Warning" and event["involvedObject"]["kind"] == "Job"
    assert "exceeded quota: no-gpus" in message and "requests.nvidia.com/gpu=1" in message, message
    assert not job_pods(kubectl, ns, "wants-gpu")

    def unscheduled():
        for p in job_pods(kubectl, ns, "huge"):
            for c in p["status"].get("conditions") or []:
                if c["type"] == "PodScheduled" and c["status"] == "False":
                    return c
        return None
    cond = eventually(unscheduled, 60, what="PodScheduled=False on the huge pod")
    assert cond["reason"] == "Unschedulable", cond
    assert "0/" in cond["message"] and "Insufficient cpu" in cond["message"], cond
    [pod] = job_pods(kubectl, ns, "huge")
    assert pod["status"]["phase"] == "Pending" and not pod["spec"].get("nodeName")
    scheduling = eventually(lambda: [e for e in events_for(kubectl, ns, pod["metadata"]["name"])
                                     if e["reason"] == "FailedScheduling"], 30, what="FailedScheduling event")
    assert scheduling[0]["type"] == "Warning" and "Insufficient cpu" in scheduling[0]["message"]


def test_cronjob_fires_suspend_and_history_limit_hold_and_manual_job_runs(kubectl, cron_ns):
    """Last in the module: the CronJobs were created when the module started."""
    ns = cron_ns
    kubectl("-n", ns, "create", "job", "by-hand", "--from=cronjob/paused")

    def jobs_of(cronjob: str) -> list[dict]:
        return [j for j in kubectl.json("-n", ns, "get", "jobs")["items"]
                if any(o["kind"] == "CronJob" and o["name"] == cronjob
                       for o in j["metadata"].get("ownerReferences") or [])]

    def tick_completed():
        return [j for j in jobs_of("tick") if any(
            c["type"] == "Complete" and c["status"] == "True" for c in (j.get("status") or {}).get("conditions") or [])]
    tick_job = eventually(tick_completed, 150, 2, what="a completed Job from CronJob tick")[-1]
    [pod] = job_pods(kubectl, ns, tick_job["metadata"]["name"])
    assert pod["status"]["phase"] == "Succeeded"
    assert "tick at" in kubectl("-n", ns, "logs", pod["metadata"]["name"])

    tock = eventually(lambda: kubectl.json("-n", ns, "get", "cronjob", "tock").get("status", {}).get(
        "lastSuccessfulTime"), 60, what="a successful Job from CronJob tock")
    assert tock
    eventually(lambda: not jobs_of("tock"), 60, what="tock's job removed (successfulJobsHistoryLimit 0)")

    by_hand = eventually(lambda: finished(kubectl, ns, "by-hand"), 60, what="manual job end")
    assert by_hand["type"] == "Complete", by_hand
    [owner] = kubectl.json("-n", ns, "get", "job", "by-hand")["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"]) == ("CronJob", "paused")
    assert "run by hand" in kubectl("-n", ns, "logs", "job/by-hand")
    assert [j["metadata"]["name"] for j in jobs_of("paused")] == ["by-hand"], "a suspended CronJob fires nothing"
    assert not kubectl.json("-n", ns, "get", "cronjob", "paused").get("status", {}).get("lastScheduleTime")
