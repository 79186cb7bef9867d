"""What the node agent does for a pod, seen through the real apiserver."""
from __future__ import annotations

import json
import subprocess
import textwrap
import time

from tests.waiting import eventually

IMAGE = "python:3.11"


def pod(name: str, code: str | None = None, *, command: list[str] | None = None, extra: str = "",
        container_extra: str = "", restart: str = "Never", image: str = IMAGE) -> str:
    """A Pod manifest (JSON); ``extra``/``container_extra`` are YAML merged into spec / the container."""
    import yaml

    container = {"name": "main", "image": image, "command": command or ["python", "-c", code or "pass"]}
    container.update(yaml.safe_load(textwrap.dedent(container_extra)) or {})
    spec = {"restartPolicy": restart, "containers": [container]}
    spec.update(yaml.safe_load(textwrap.dedent(extra)) or {})
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec})


def get_pod(kubectl, ns, name) -> dict:
    return kubectl.json("-n", ns, "get", "pod", name)


def phase(kubectl, ns, name) -> str:
    return get_pod(kubectl, ns, name)["status"].get("phase", "")


def main_state(kubectl, ns, name) -> dict:
    st = get_pod(kubectl, ns, name)["status"].get("containerStatuses") or [{}]
    return st[0].get("state", {})


def events(kubectl, ns, name) -> list[dict]:
    return kubectl.json("-n", ns, "get", "events", "--field-selector", f"involvedObject.name={name}")["items"]


GPU_TOLERATION = "tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]"


def gpu_pod(name: str, gpus: int) -> str:
    code = "import os, time; print('gpus=' + os.environ.get('NVIDIA_VISIBLE_DEVICES', '')); time.sleep(3600)"
    return pod(name, code, extra=GPU_TOLERATION,
               container_extra=f"resources: {{limits: {{nvidia.com/gpu: {gpus}}}}}")


def test_gpu_pods_get_exclusive_devices_and_too_many_stay_pending(kubectl, namespace):
    for name, n in (("g1", 1), ("g2", 2), ("g5", 5)):
        kubectl.apply(gpu_pod(name, n), namespace)
    for name in ("g1", "g2"):
        eventually(lambda n=name: phase(kubectl, namespace, n) == "Running", 120, what=f"{name} running")
    devices = {}
    for name in ("g1", "g2"):
        assert get_pod(kubectl, namespace, name)["spec"]["nodeName"] == "kubelab-gpu-0"
        line = eventually(lambda n=name: [ln for ln in kubectl("-n", namespace, "logs", n).splitlines()
                                          if ln.startswith("gpus=")], 30, what="gpu line")[0]
        devices[name] = set(line.removeprefix("gpus=").split(","))
    assert len(devices["g1"]) == 1 and len(devices["g2"]) == 2
    assert not devices["g1"] & devices["g2"], f"GPU indices shared: {devices}"
    assert devices["g1"] | devices["g2"] <= {"0", "1", "2", "3"}

    assert phase(kubectl, namespace, "g5") == "Pending"
    reasons = eventually(lambda: [e for e in events(kubectl, namespace, "g5") if e["reason"] == "FailedScheduling"],
                         60, what="FailedScheduling event")
    assert "nvidia.com/gpu" in reasons[0]["message"]


def test_pod_without_gpu_request_sees_no_gpu(kubectl, namespace):
    kubectl.apply(pod("nogpu", "import os; print('gpus=' + os.environ.get('NVIDIA_VISIBLE_DEVICES', 'unset'))"),
                  namespace)
    eventually(lambda: phase(kubectl, namespace, "nogpu") == "Succeeded", 120, what="pod done")
    assert get_pod(kubectl, namespace, "nogpu")["spec"]["nodeName"] == "kubelab-cpu-0"
    assert "gpus=unset" in kubectl("-n", namespace, "logs", "nogpu") or \
        "gpus=void" in kubectl("-n", namespace, "logs", "nogpu")


def test_unknown_image_shows_err_image_pull(kubectl, namespace):
    kubectl.apply(pod("noimg", image="registry.example/nope:1"), namespace)
    st = eventually(lambda: main_state(kubectl, namespace, "noimg").get("waiting"), 60, what="waiting state")
    assert st["reason"] in ("ErrImagePull", "ImagePullBackOff")
    assert "registry.example/nope:1" in st.get("message", "")


def test_missing_configmap_in_env_shows_create_container_config_error(kubectl, namespace):
    kubectl.apply(pod("nocm", "pass", container_extra=textwrap.dedent("""
        env:
        - name: X
          valueFrom: {configMapKeyRef: {name: absent, key: k}}
    """)), namespace)
    st = eventually(lambda: main_state(kubectl, namespace, "nocm").get("waiting"), 60, what="waiting state")
    assert st["reason"] == "CreateContainerConfigError"
    assert 'configmap "absent" not found' in st["message"]


def test_command_that_does_not_exist_exits_127(kubectl, namespace):
    kubectl.apply(pod("nocmd", command=["definitely-not-a-command-xyz"]), namespace)
    term = eventually(lambda: main_state(kubectl, namespace, "nocmd").get("terminated"), 60, what="terminated")
    assert term["exitCode"] == 127
    assert phase(kubectl, namespace, "nocmd") == "Failed"


def test_configmap_secret_and_downward_api_volumes(kubectl, namespace):
    kubectl("-n", namespace, "create", "configmap", "cfg", "--from-literal=greeting=hello")
    kubectl("-n", namespace, "create", "secret", "generic", "sec", "--from-literal=password=s3cr3t")
    code = ("print(open('/etc/cfg/greeting').read()); print(open('/etc/sec/password').read()); "
            "print(open('/etc/info/ns').read()); import os; print('env=' + os.environ['GREETING'])")
    kubectl.apply(pod("vols", code, extra=textwrap.dedent("""
        volumes:
        - {name: cfg, configMap: {name: cfg}}
        - {name: sec, secret: {secretName: sec}}
        - name: info
          downwardAPI: {items: [{path: ns, fieldRef: {fieldPath: metadata.namespace}}]}
    """), container_extra=textwrap.dedent("""
        env:
        - name: GREETING
          valueFrom: {configMapKeyRef: {name: cfg, key: greeting}}
        volumeMounts:
        - {name: cfg, mountPath: /etc/cfg}
        - {name: sec, mountPath: /etc/sec}
        - {name: info, mountPath: /etc/info}
    """)), namespace)
    eventually(lambda: phase(kubectl, namespace, "vols") in ("Succeeded", "Failed"), 120, what="pod done")
    out = kubectl("-n", namespace, "logs", "vols")
    assert phase(kubectl, namespace, "vols") == "Succeeded", out
    assert "hello" in out and "s3cr3t" in out and namespace in out and "env=hello" in out


def test_service_account_token_gives_working_in_cluster_credentials(kubectl, namespace):
    kubectl("-n", namespace, "create", "rolebinding", "view", "--clusterrole=view", f"--serviceaccount={namespace}:default")
    code = textwrap.dedent("""
        from kubernetes import client, config
        config.load_incluster_config()
        v1 = client.CoreV1Api()
        ns = open('/var/run/secrets/kubernetes.io/serviceaccount/namespace').read()
        print('pods:', sorted(p.metadata.name for p in v1.list_namespaced_pod(ns).items))
        try:
            v1.list_namespaced_pod('kube-system')
            print('kube-system: allowed')
        except client.ApiException as e:
            print('kube-system:', e.status)
    """)
    kubectl.apply(pod("incluster", code), namespace)
    eventually(lambda: phase(kubectl, namespace, "incluster") in ("Succeeded", "Failed"), 120, what="pod done")
    out = kubectl("-n", namespace, "logs", "incluster")
    assert "pods: ['incluster']" in out, out
    assert "kube-system: 403" in out, out


def test_pvc_binds_and_keeps_data_across_pods(kubectl, namespace):
    kubectl.apply(textwrap.dedent("""
        apiVersion: v1
        kind: PersistentVolumeClaim
        metadata: {name: data}
        spec:
          accessModes: [ReadWriteOnce]
          resources: {requests: {storage: 1Gi}}
    """), namespace)
    eventually(lambda: kubectl.json("-n", namespace, "get", "pvc", "data")["status"].get("phase") == "Bound",
               60, what="PVC bound")
    vol = textwrap.dedent("""
        volumes: [{name: data, persistentVolumeClaim: {claimName: data}}]
    """)
    mount = "volumeMounts: [{name: data, mountPath: /data}]"
    kubectl.apply(pod("writer", "open('/data/x', 'w').write('kept')", extra=vol, container_extra=mount), namespace)
    eventually(lambda: phase(kubectl, namespace, "writer") == "Succeeded", 120, what="writer done")
    kubectl.apply(pod("reader", "print(open('/data/x').read())", extra=vol, container_extra=mount), namespace)
    eventually(lambda: phase(kubectl, namespace, "reader") == "Succeeded", 120, what="reader done")
    assert "kept" in kubectl("-n", namespace, "logs", "reader")


def test_readiness_and_liveness_probes(kubectl, namespace):
    # Ready only once /tmp/ready-<pod> exists; liveness fails forever -> restarts.
    code = textwrap.dedent("""
        import http.server, os, threading, time
        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200 if os.path.exists('/tmp/ready-' + os.environ['POD_UID']) else 503)
                self.end_headers()
            def log_message(self, *a): pass
        http.server.HTTPServer(('0.0.0.0', 8080), H).serve_forever()
    """)
    kubectl.apply(pod("probed", code, restart="Always", container_extra=textwrap.dedent("""
        env:
        - name: POD_UID
          valueFrom: {fieldRef: {fieldPath: metadata.uid}}
        readinessProbe:
          httpGet: {path: /, port: 8080}
          periodSeconds: 1
        livenessProbe:
          exec: {command: [python, -c, "import sys; sys.exit(1)"]}
          initialDelaySeconds: 5
          periodSeconds: 2
          failureThreshold: 2
    """)), namespace)
    eventually(lambda: phase(kubectl, namespace, "probed") == "Running", 120, what="running")
    uid = get_pod(kubectl, namespace, "probed")["metadata"]["uid"]
    cs = get_pod(kubectl, namespace, "probed")["status"]["containerStatuses"][0]
    assert cs["ready"] is False
    open(f"/tmp/ready-{uid}", "w").close()
    try:
        eventually(lambda: get_pod(kubectl, namespace, "probed")["status"]["containerStatuses"][0]["ready"], 60,
                   what="ready after the probe passes")
        eventually(lambda: get_pod(kubectl, namespace, "probed")["status"]["containerStatuses"][0]["restartCount"] >= 1,
                   120, what="liveness restart")
        assert any(e["reason"] == "Unhealthy" for e in events(kubectl, namespace, "probed"))
    finally:
        subprocess.run(["rm", "-f", f"/tmp/ready-{uid}"])


def test_memory_limit_kills_with_oomkilled(kubectl, namespace):
    kubectl.apply(pod("hog", "x = bytearray(400 * 1024 * 1024); print(len(x))",
                      container_extra="resources: {limits: {memory: 64Mi}}"), namespace)
    term = eventually(lambda: main_state(kubectl, namespace, "hog").get("terminated"), 120, what="terminated")
    assert term["reason"] == "OOMKilled" and term["exitCode"] == 137


def test_logs_follow_streams_new_lines(kubectl, namespace):
    code = "import time\nfor i in range(6):\n    print('line', i, flush=True); time.sleep(1)"
    kubectl.apply(pod("talker", code), namespace)
    eventually(lambda: phase(kubectl, namespace, "talker") in ("Running", "Succeeded"), 120, what="running")
    out = kubectl("-n", namespace, "logs", "-f", "talker", timeout=60)
    assert [ln for ln in out.splitlines() if ln.startswith("line")] == [f"line {i}" for i in range(6)]
    ts = kubectl("-n", namespace, "logs", "--timestamps", "--tail=1", "talker")
    assert ts.split()[0].startswith("20") and ts.strip().endswith("line 5")


def test_namespace_with_running_pods_deletes_within_60s(kubectl):
    ns = f"doomed-{int(time.time())}"
    kubectl("create", "namespace", ns)
    for i in range(3):
        kubectl.apply(pod(f"sleeper{i}", "import time; time.sleep(3600)", restart="Always"), ns)
    eventually(lambda: all(phase(kubectl, ns, f"sleeper{i}") == "Running" for i in range(3)), 120, what="running")
    kubectl("delete", "namespace", ns, "--wait=false")
    start = time.monotonic()
    eventually(lambda: ns not in kubectl("get", "namespaces", "-o", "name"), 60, 1, what="namespace gone")
    assert time.monotonic() - start <= 60


def test_restarted_agent_adopts_running_pods(kubectl, namespace, devcluster):
    from devcluster import cluster, procs

    kubectl.apply(pod("steady", "import time\nwhile True:\n    print('tick', flush=True); time.sleep(1)",
                      restart="Always"), namespace)
    eventually(lambda: phase(kubectl, namespace, "steady") == "Running", 120, what="running")
    before = get_pod(kubectl, namespace, "steady")["status"]["containerStatuses"][0]
    procs.stop(devcluster, "node-agent")
    assert phase(kubectl, namespace, "steady") == "Running"
    cluster.start_node_side(devcluster, cluster.clusterbin())
    time.sleep(5)
    eventually(lambda: procs.running_pid(devcluster, "node-agent"), 30, what="agent back")
    after = eventually(lambda: get_pod(kubectl, namespace, "steady")["status"]["containerStatuses"][0], 30)
    assert after["containerID"] == before["containerID"]
    assert after["restartCount"] == before["restartCount"] == 0
    assert after["state"]["running"]["startedAt"] == before["state"]["running"]["startedAt"]
    n1 = len(kubectl("-n", namespace, "logs", "steady").splitlines())
    time.sleep(3)
    assert len(kubectl("-n", namespace, "logs", "steady").splitlines()) > n1, "the pod kept running and logging"
