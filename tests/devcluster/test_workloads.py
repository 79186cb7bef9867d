"""The Kubernetes workloads every kubelab feature relies on, on the real devcluster."""
from __future__ import annotations

import json
import textwrap

from tests.waiting import eventually

IMAGE = "python:3.11"


def job(name: str, code: str, backoff: int = 0) -> str:
    return textwrap.dedent(f"""
        apiVersion: batch/v1
        kind: Job
        metadata: {{name: {name}}}
        spec:
          backoffLimit: {backoff}
          template:
            spec:
              restartPolicy: Never
              containers:
              - name: main
                image: {IMAGE}
                command: ["python", "-c", {json.dumps(code)}]
    """)


def job_condition(kubectl, ns: str, name: str) -> str | None:
    conds = kubectl.json("-n", ns, "get", "job", name).get("status", {}).get("conditions", [])
    for c in conds:
        if c["type"] in ("Complete", "Failed") and c["status"] == "True":
            return c["type"]
    return None


def test_all_nodes_ready_through_the_official_client(kube):
    client, api_client = kube
    nodes = client.CoreV1Api(api_client).list_node().items
    names = {n.metadata.name for n in nodes}
    assert {"kubelab-cpu-0", "kubelab-gpu-0"} <= names
    for n in nodes:
        ready = [c for c in n.status.conditions if c.type == "Ready"]
        assert ready and ready[0].status == "True", f"{n.metadata.name} not Ready"
    gpu = next(n for n in nodes if n.metadata.name == "kubelab-gpu-0")
    assert gpu.status.allocatable["nvidia.com/gpu"] == "4"
    assert gpu.metadata.labels["kubelab.io/resource-group"] == "gpu-a100"
    assert any(t.key == "nvidia.com/gpu" and t.effect == "NoSchedule" for t in gpu.spec.taints)


def test_job_completes_and_kubectl_logs_shows_its_output(kubectl, namespace):
    kubectl.apply(job("hello", "import sys; print('hello from', sys.version_info[:2])"), namespace)
    assert eventually(lambda: job_condition(kubectl, namespace, "hello"), 120, what="job end") == "Complete"
    logs = kubectl("-n", namespace, "logs", "job/hello")
    assert "hello from (3," in logs


def test_failing_job_ends_failed_honouring_backoff_limit(kubectl, namespace):
    kubectl.apply(job("boom", "import sys; print('going down'); sys.exit(3)", backoff=1), namespace)
    assert eventually(lambda: job_condition(kubectl, namespace, "boom"), 180, what="job end") == "Failed"
    pods = kubectl.json("-n", namespace, "get", "pods", "-l", "job-name=boom")["items"]
    assert len(pods) == 2, "backoffLimit 1 means one retry: two pods"
    for p in pods:
        term = p["status"]["containerStatuses"][0]["state"]["terminated"]
        assert term["exitCode"] == 3 and p["status"]["phase"] == "Failed"
    status = kubectl.json("-n", namespace, "get", "job", "boom")["status"]
    assert status.get("failed") == 2


def test_pod_over_quota_is_rejected_by_admission(kubectl, namespace):
    kubectl.apply(textwrap.dedent("""
        apiVersion: v1
        kind: ResourceQuota
        metadata: {name: small}
        spec:
          hard: {requests.cpu: 500m, requests.memory: 256Mi, limits.cpu: "1", limits.memory: 512Mi}
    """), namespace)
    eventually(lambda: kubectl.json("-n", namespace, "get", "resourcequota", "small").get("status", {}).get("hard"),
               60, what="quota status")
    out = kubectl("-n", namespace, "run", "greedy", f"--image={IMAGE}", "--restart=Never",
                  "--overrides", json.dumps({"spec": {"containers": [{
                      "name": "greedy", "image": IMAGE, "command": ["python", "-c", "pass"],
                      "resources": {"requests": {"cpu": "2", "memory": "128Mi"},
                                    "limits": {"cpu": "2", "memory": "128Mi"}}}]}}),
                  check=False)
    assert "exceeded quota: small" in out and "requested: " in out, out
    assert "greedy" not in kubectl("-n", namespace, "get", "pods", "-o", "name")


def test_cronjob_fires_and_its_job_completes(kubectl, namespace):
    kubectl.apply(textwrap.dedent(f"""
        apiVersion: batch/v1
        kind: CronJob
        metadata: {{name: tick}}
        spec:
          schedule: "* * * * *"
          concurrencyPolicy: Forbid
          jobTemplate:
            spec:
              backoffLimit: 0
              template:
                spec:
                  restartPolicy: Never
                  containers:
                  - name: main
                    image: {IMAGE}
                    command: ["python", "-c", "print('tick')"]
    """), namespace)

    def completed_job():
        for j in kubectl.json("-n", namespace, "get", "jobs")["items"]:
            owners = j["metadata"].get("ownerReferences", [])
            if owners and owners[0]["name"] == "tick" and j.get("status", {}).get("succeeded"):
                return j["metadata"]["name"]
        return None

    name = eventually(completed_job, 180, 3, what="a completed job from the CronJob")
    assert "tick" in kubectl("-n", namespace, "logs", f"job/{name}")
    last = kubectl.json("-n", namespace, "get", "cronjob", "tick")["status"]
    assert last.get("lastSuccessfulTime")


WEB = textwrap.dedent("""
    import http.server, os, socketserver
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = ("pod=" + os.environ["POD_NAME"]).encode()
            self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
            self.wfile.write(body)
        def log_message(self, *a): pass
    socketserver.TCPServer.allow_reuse_address = True
    http.server.ThreadingHTTPServer(("0.0.0.0", 8080), H).serve_forever()
""")


def test_deployment_available_and_service_reachable_by_clusterip_and_dns(kubectl, namespace):
    kubectl.apply(textwrap.dedent(f"""
        apiVersion: apps/v1
        kind: Deployment
        metadata: {{name: web}}
        spec:
          replicas: 2
          selector: {{matchLabels: {{app: web}}}}
          template:
            metadata: {{labels: {{app: web}}}}
            spec:
              containers:
              - name: web
                image: {IMAGE}
                command: ["python", "-c", {json.dumps(WEB)}]
                env:
                - name: POD_NAME
                  valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}
                ports: [{{containerPort: 8080}}]
                readinessProbe:
                  httpGet: {{path: /, port: 8080}}
                  periodSeconds: 2
        ---
        apiVersion: v1
        kind: Service
        metadata: {{name: web}}
        spec:
          selector: {{app: web}}
          ports: [{{port: 80, targetPort: 8080}}]
    """), namespace)

    def available():
        st = kubectl.json("-n", namespace, "get", "deployment", "web").get("status", {})
        return st.get("availableReplicas") == 2
    eventually(available, 180, 2, what="2 available replicas")
    pods = kubectl.json("-n", namespace, "get", "pods", "-l", "app=web")["items"]
    ips = {p["status"]["podIP"] for p in pods}
    assert len(ips) == 2 and all(ip.startswith("10.244.") for ip in ips)

    cluster_ip = kubectl.json("-n", namespace, "get", "service", "web")["spec"]["clusterIP"]
    import urllib.request

    seen = set()

    def both_pods_answer_on_cluster_ip():
        # kube-proxy programs the Service rules shortly after the endpoints
        # become ready (as on any cluster), so a refused connection is retried.
        try:
            with urllib.request.urlopen(f"http://{cluster_ip}/", timeout=5) as r:
                seen.add(r.read().decode())
        except OSError as e:
            raise AssertionError(f"GET http://{cluster_ip}/: {e}") from e
        return len(seen) == 2
    eventually(both_pods_answer_on_cluster_ip, 60, 0.2, what="both replicas behind the ClusterIP")

    client_code = (f"import urllib.request; print(urllib.request.urlopen("
                   f"'http://web.{namespace}.svc.cluster.local/', timeout=10).read().decode())")
    kubectl.apply(job("client", client_code), namespace)
    assert eventually(lambda: job_condition(kubectl, namespace, "client"), 120, what="client job") == "Complete"
    assert "pod=web-" in kubectl("-n", namespace, "logs", "job/client")


def test_daemonset_runs_one_pod_per_node(kubectl, namespace):
    kubectl.apply(textwrap.dedent(f"""
        apiVersion: apps/v1
        kind: DaemonSet
        metadata: {{name: everywhere}}
        spec:
          selector: {{matchLabels: {{app: everywhere}}}}
          template:
            metadata: {{labels: {{app: everywhere}}}}
            spec:
              tolerations: [{{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}}]
              containers:
              - name: main
                image: {IMAGE}
                command: ["python", "-c", "import time; time.sleep(3600)"]
    """), namespace)
    nodes = {n["metadata"]["name"] for n in kubectl.json("get", "nodes")["items"]}

    def one_per_node():
        pods = kubectl.json("-n", namespace, "get", "pods", "-l", "app=everywhere")["items"]
        running = [p for p in pods if p["status"].get("phase") == "Running"]
        return sorted(p["spec"]["nodeName"] for p in running) == sorted(nodes)
    eventually(one_per_node, 120, 2, what="one running pod per node")
    ds = kubectl.json("-n", namespace, "get", "daemonset", "everywhere")["status"]
    assert ds["numberReady"] == len(nodes) == ds["desiredNumberScheduled"]


def test_hostpath_subpath_mount_shows_only_its_subdirectory(kubectl, namespace, tmp_path):
    root = tmp_path / "share"
    (root / "users" / "alice").mkdir(parents=True)
    (root / "users" / "bob").mkdir(parents=True)
    (root / "users" / "alice" / "notes.txt").write_text("alice's notes")
    (root / "users" / "bob" / "secret.txt").write_text("bob's secret")
    root.chmod(0o755)
    code = ("import os; print(sorted(os.listdir('/home/me'))); print(open('/home/me/notes.txt').read()); "
            "open('/home/me/out.txt', 'w').write('written in pod')")
    kubectl.apply(textwrap.dedent(f"""
        apiVersion: v1
        kind: Pod
        metadata: {{name: sub}}
        spec:
          restartPolicy: Never
          containers:
          - name: main
            image: {IMAGE}
            command: ["python", "-c", {json.dumps(code)}]
            volumeMounts: [{{name: share, mountPath: /home/me, subPath: users/alice}}]
          volumes:
          - name: share
            hostPath: {{path: {root}, type: Directory}}
    """), namespace)
    eventually(lambda: kubectl.json("-n", namespace, "get", "pod", "sub")["status"].get("phase") == "Succeeded",
               120, what="pod to succeed")
    out = kubectl("-n", namespace, "logs", "sub")
    assert "['notes.txt']" in out and "alice's notes" in out
    assert "secret" not in out
    assert (root / "users" / "alice" / "out.txt").read_text() == "written in pod"
