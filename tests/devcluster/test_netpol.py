"""NetworkPolicy enforcement on the real devcluster (devcluster/netpol.py).

Three namespaces: two labelled like kubelab user namespaces (A and B), and one
standing for the hub's namespace. Every pod runs the same small server: port
8080 answers ``pod=<name>``, port 8081 is a prober (``/probe?url=...``) that
fetches a URL from inside the pod and reports ``ok <body>`` or ``fail <error>``,
so the test (on the host, which may always reach pods) asks a pod to try a
connection instead of starting a Job per check.
"""
from __future__ import annotations

import json
import textwrap
import urllib.parse
import urllib.request
import uuid

import pytest

from kubelab.core import manifests
from tests.waiting import eventually

IMAGE = "python:3.11"
PROBE_TIMEOUT = 3  # seconds a pod waits for a connection; blocked ones time out

SERVER = textwrap.dedent("""
    import http.server, os, socketserver, threading, urllib.parse, urllib.request
    NAME = os.environ["POD_NAME"]
    class Web(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.reply(("pod=" + NAME).encode())
        def reply(self, body):
            self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
            self.wfile.write(body)
        def log_message(self, *a): pass
    class Probe(Web):
        def do_GET(self):
            q = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
            if "url" not in q:
                return Web.do_GET(self)
            try:
                with urllib.request.urlopen(q["url"][0], timeout=float(q["timeout"][0])) as r:
                    out = "ok " + r.read().decode()
            except Exception as e:
                out = "fail " + repr(e)
            self.reply(out.encode())
    socketserver.TCPServer.allow_reuse_address = True
    threading.Thread(target=http.server.ThreadingHTTPServer(("0.0.0.0", 8081), Probe).serve_forever,
                     daemon=True).start()
    http.server.ThreadingHTTPServer(("0.0.0.0", 8080), Web).serve_forever()
""")


def pod_manifest(name: str, app: str) -> str:
    return textwrap.dedent(f"""
        apiVersion: v1
        kind: Pod
        metadata: {{name: {name}, labels: {{app: {app}}}}}
        spec:
          terminationGracePeriodSeconds: 1
          containers:
          - name: main
            image: {IMAGE}
            command: ["python", "-c", {json.dumps(SERVER)}]
            env:
            - name: POD_NAME
              valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}
            ports: [{{name: http, containerPort: 8080}}, {{name: probe, containerPort: 8081}}]
            readinessProbe:
              httpGet: {{path: /, port: 8080}}
              periodSeconds: 1
    """)


SERVICE = textwrap.dedent("""
    apiVersion: v1
    kind: Service
    metadata: {name: web}
    spec:
      selector: {app: web}
      ports: [{port: 80, targetPort: http}]
""")


def http_get(url: str, timeout: float = 10) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


class Net:
    """The pods' addresses, and connections tried from inside a pod."""

    def __init__(self, kubectl):
        self.kubectl = kubectl
        self.ips: dict[tuple[str, str], str] = {}

    def ready_ip(self, ns: str, name: str) -> str | None:
        p = self.kubectl.json("-n", ns, "get", "pod", name)
        conds = {c["type"]: c["status"] for c in p.get("status", {}).get("conditions", [])}
        if conds.get("Ready") != "True":
            return None
        self.ips[(ns, name)] = p["status"]["podIP"]
        return p["status"]["podIP"]

    def probe(self, from_pod: tuple[str, str], target: str) -> str:
        """``ok pod=...`` or ``fail ...``: pod ``from_pod`` fetching http://<target>/."""
        q = urllib.parse.urlencode({"url": f"http://{target}/", "timeout": PROBE_TIMEOUT})
        return http_get(f"http://{self.ips[from_pod]}:8081/probe?{q}", timeout=PROBE_TIMEOUT + 10)

    def reaches(self, from_pod: tuple[str, str], target: str) -> bool:
        out = self.probe(from_pod, target)
        assert out.startswith(("ok ", "fail ")), out
        return out.startswith("ok pod=")


@pytest.fixture
def np_namespaces(kubectl):
    """np-a-*, np-b-* (kubelab user namespaces) and np-hub-* (the hub's), deleted afterwards."""
    suffix = uuid.uuid4().hex[:5]
    a, b, hub = f"np-a-{suffix}", f"np-b-{suffix}", f"np-hub-{suffix}"
    kubectl.apply(json.dumps(manifests.namespace(a, "np-alice")))
    kubectl.apply(json.dumps(manifests.namespace(b, "np-bob")))
    kubectl("create", "namespace", hub)
    yield a, b, hub
    for ns in (a, b, hub):
        kubectl("delete", "namespace", ns, "--wait=false", check=False)


def test_ingress_policy_isolates_a_user_namespace(kubectl, np_namespaces):
    a, b, hub = np_namespaces
    pods = [(a, "web", "web"), (a, "client", "client"), (b, "web", "web"), (b, "client", "client"),
            (hub, "proxy", "client")]
    for ns, name, app in pods:
        # the namespace's default ServiceAccount may not exist yet: retry
        eventually(lambda: kubectl("-n", ns, "apply", "-f", "-", input=pod_manifest(name, app), check=False)
                   .strip().endswith(("created", "unchanged", "configured")), 60, 1, what=f"pod {ns}/{name} created")
    kubectl.apply(SERVICE, a)
    net = Net(kubectl)
    for ns, name, _ in pods:
        eventually(lambda: net.ready_ip(ns, name), 120, 1, what=f"{ns}/{name} ready")
    a_web, b_web = net.ips[(a, "web")], net.ips[(b, "web")]
    a_cli, b_cli, hub_cli = (a, "client"), (b, "client"), (hub, "proxy")
    svc_ip = kubectl.json("-n", a, "get", "service", "web")["spec"]["clusterIP"]
    a_svc = f"{svc_ip}:80"
    eventually(lambda: net.reaches(a_cli, a_svc), 60, 1, what="the Service's endpoints programmed")

    # no policy yet: everything reaches everything
    assert net.reaches(b_cli, f"{a_web}:8080")

    policy = manifests.network_policy(a, "np-alice", hub)
    kubectl.apply(json.dumps(policy))
    eventually(lambda: not net.reaches(b_cli, f"{a_web}:8080"), 30, 0.5, what="B's client blocked from A's web pod")

    # inside A: by pod IP and by ClusterIP
    assert net.probe(a_cli, f"{a_web}:8080") == "ok pod=web"
    assert net.probe(a_cli, a_svc) == "ok pod=web"
    # from B: neither (the connection times out, it is dropped)
    for target in (f"{a_web}:8080", a_svc):
        out = net.probe(b_cli, target)
        assert out.startswith("fail ") and "timed out" in out, out
    assert not net.reaches((b, "web"), f"{a_web}:8080")
    # A's client pod is isolated too (podSelector {} selects every pod of A)
    assert not net.reaches(b_cli, f"{net.ips[a_cli]}:8080")
    # from the allowed "hub" namespace
    assert net.probe(hub_cli, f"{a_web}:8080") == "ok pod=web"
    assert net.probe(hub_cli, a_svc) == "ok pod=web"
    # from the host (the node): always
    assert http_get(f"http://{a_web}:8080/") == "pod=web"
    assert http_get(f"http://{svc_ip}/") == "pod=web"
    # B has no policy: A (and anyone) reaches it
    assert net.probe(a_cli, f"{b_web}:8080") == "ok pod=web"
    assert net.probe(b_cli, f"{b_web}:8080") == "ok pod=web"
    # readiness probes (from the node) keep A's pods Ready
    assert net.ready_ip(a, "web") == a_web

    kubectl("-n", a, "delete", "networkpolicy", policy["metadata"]["name"])
    eventually(lambda: net.reaches(b_cli, f"{a_web}:8080"), 30, 0.5, what="access restored after the policy's deletion")
    assert net.probe(b_cli, a_svc) == "ok pod=web"


def test_policy_follows_pod_labels_and_ports(kubectl, np_namespaces):
    """A narrower policy: only pods labelled role=friend, only the named port http."""
    a, b, _ = np_namespaces
    pods = [(a, "web", "web"), (a, "client", "client"), (b, "client", "client")]
    for ns, name, app in pods:
        eventually(lambda: kubectl("-n", ns, "apply", "-f", "-", input=pod_manifest(name, app), check=False)
                   .strip().endswith(("created", "unchanged", "configured")), 60, 1, what=f"pod {ns}/{name} created")
    net = Net(kubectl)
    for ns, name, _ in pods:
        eventually(lambda: net.ready_ip(ns, name), 120, 1, what=f"{ns}/{name} ready")
    a_web = net.ips[(a, "web")]
    kubectl.apply(json.dumps({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "friends", "namespace": a},
        "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"],
                 "ingress": [{"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"role": "friend"}}}],
                              "ports": [{"port": "http"}]}]}}))
    eventually(lambda: not net.reaches((a, "client"), f"{a_web}:8080"), 30, 0.5, what="A's client blocked")
    assert not net.reaches((b, "client"), f"{a_web}:8080")
    # labelling B's client a friend lets it in (the pod watch rebuilds the rules) on 8080 only
    kubectl("-n", b, "label", "pod", "client", "role=friend")
    eventually(lambda: net.reaches((b, "client"), f"{a_web}:8080"), 30, 0.5, what="B's friend let in")
    assert not net.reaches((b, "client"), f"{a_web}:8081")   # the prober port is not in the policy
    assert not net.reaches((a, "client"), f"{a_web}:8080")
    kubectl("-n", b, "label", "pod", "client", "role-")
    eventually(lambda: not net.reaches((b, "client"), f"{a_web}:8080"), 30, 0.5, what="B's client blocked again")
