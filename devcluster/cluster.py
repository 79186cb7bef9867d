"""Bring devcluster up, report on it, and take it down.

``python -m devcluster up|down|status`` (the Makefile's cluster-* targets).
Each control-plane component runs as its own process from the one multi-call
binary built by build-clusterbin.sh.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import requests
import yaml

from kubelab.core import kinds

from . import pki, procs
from .kube import ApiError, Client, write_kubeconfig
from .paths import (APISERVER_PORT, BRIDGE, BRIDGE_IP, CLUSTER_DOMAIN, ETCD_CLIENT_PORT, ETCD_PEER_PORT,
                    POD_CIDR, REPO, SERVICE_CIDR, State)

HERE = Path(__file__).resolve().parent
NODES_FILE = Path(os.environ.get("KUBELAB_DEVCLUSTER_NODES", HERE / "nodes.yaml"))
IMAGES_FILE = Path(os.environ.get("KUBELAB_DEVCLUSTER_IMAGES", HERE / "images.yaml"))

# Daemons in start order; down stops them in reverse.
CONTROL_PLANE = ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"]
NODE_SIDE = ["node-agent", "kube-proxy", "dns", "provisioner", "netpol"]


class ClusterError(RuntimeError):
    """devcluster could not do what was asked; the message says why."""


def log(msg: str) -> None:
    print(f"devcluster: {msg}", file=sys.stderr, flush=True)


def node_names() -> list[str]:
    return [n["name"] for n in yaml.safe_load(NODES_FILE.read_text())["nodes"]]


def identities() -> dict[str, tuple[str, list[str]]]:
    ids: dict[str, tuple[str, list[str]]] = {
        "admin": ("kubelab-admin", ["system:masters"]),
        "kube-controller-manager": ("system:kube-controller-manager", []),
        "kube-scheduler": ("system:kube-scheduler", []),
        "kube-proxy": ("system:kube-proxy", []),
        "dns": ("system:devcluster:dns", []),
        "provisioner": ("system:devcluster:provisioner", []),
        "netpol": ("system:devcluster:netpol", []),
    }
    for n in node_names():
        ids[f"node-{n}"] = (f"system:node:{n}", ["system:nodes"])
    return ids


def server_url() -> str:
    return f"https://127.0.0.1:{APISERVER_PORT}"


def clusterbin() -> Path:
    """Build (or find in the cache) the control-plane binary."""
    out = subprocess.run([str(HERE / "build-clusterbin.sh")], check=True, stdout=subprocess.PIPE, text=True)
    return Path(out.stdout.strip().splitlines()[-1])


# -- host network --------------------------------------------------------------

def _sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), check=check, capture_output=True, text=True)


def _sysctl(key: str, value: str) -> None:
    path = Path("/proc/sys") / key.replace(".", "/")
    if path.exists() and path.read_text().strip() != value:
        path.write_text(value)


def ensure_host_network() -> None:
    """The pod bridge (host side 10.244.0.1/16), forwarding and bridge netfilter."""
    if not Path("/proc/sys/net/bridge").exists():
        _sh("modprobe", "br_netfilter", check=False)
    if not Path("/proc/sys/net/bridge").exists():
        raise ClusterError("the br_netfilter kernel module is not available (needed for Service traffic between pods)")
    if _sh("ip", "link", "show", BRIDGE, check=False).returncode != 0:
        _sh("ip", "link", "add", BRIDGE, "type", "bridge")
    addrs = _sh("ip", "-4", "addr", "show", BRIDGE).stdout
    if f"{BRIDGE_IP}/" not in addrs:
        _sh("ip", "addr", "add", f"{BRIDGE_IP}/16", "dev", BRIDGE)
    _sh("ip", "link", "set", BRIDGE, "up")
    _sysctl("net.ipv4.ip_forward", "1")
    _sysctl("net.bridge.bridge-nf-call-iptables", "1")
    _sysctl("net.ipv4.conf.all.route_localnet", "1")


def remove_kube_firewall() -> None:
    """kube-proxy --cleanup leaves the KUBE-FIREWALL chain (a kubelet's, on real nodes): remove it."""
    for tool in ("iptables", "ip6tables"):
        for chain in ("INPUT", "OUTPUT"):
            while _sh(tool, "-t", "filter", "-D", chain, "-j", "KUBE-FIREWALL", check=False).returncode == 0:
                pass
        _sh(tool, "-t", "filter", "-F", "KUBE-FIREWALL", check=False)
        _sh(tool, "-t", "filter", "-X", "KUBE-FIREWALL", check=False)


def remove_host_network() -> None:
    if _sh("ip", "link", "show", BRIDGE, check=False).returncode == 0:
        _sh("ip", "link", "del", BRIDGE, check=False)


# -- waiting -------------------------------------------------------------------

def wait_for(what: str, ok: Callable[[], bool], timeout: float, daemon: str | None, state: State) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if ok():
                return
        except Exception:  # noqa: BLE001 - anything short of ok means "not yet"
            pass
        if daemon and not procs.running_pid(state, daemon):
            raise ClusterError(f"{daemon} exited while waiting for {what}; its log ends:\n{procs.tail(state, daemon)}")
        time.sleep(0.5)
    tail = procs.tail(state, daemon) if daemon else ""
    raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}" + (f"; {daemon} log ends:\n{tail}" if tail else ""))


def _healthy(url: str, verify: str | bool = False) -> bool:
    return requests.get(url, timeout=3, verify=verify).status_code == 200


# -- components ------------------------------------------------------------------

# The hub's requests are audited, so benchmarks can count apiserver requests per spawn.
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1", "kind": "Policy", "omitStages": ["RequestReceived"],
    "rules": [{"level": "Metadata", "users": ["system:serviceaccount:kubelab-system:hub"]}, {"level": "None"}],
}


def start_control_plane(state: State, binary: Path) -> Client:
    p = state.pki
    audit_policy = state.root / "audit-policy.yaml"
    audit_policy.write_text(yaml.safe_dump(AUDIT_POLICY))
    procs.start(state, "etcd", [
        str(binary), "etcd", "--name=devcluster", f"--data-dir={state.root / 'etcd'}",
        f"--listen-client-urls=http://127.0.0.1:{ETCD_CLIENT_PORT}",
        f"--advertise-client-urls=http://127.0.0.1:{ETCD_CLIENT_PORT}",
        f"--listen-peer-urls=http://127.0.0.1:{ETCD_PEER_PORT}",
        f"--initial-advertise-peer-urls=http://127.0.0.1:{ETCD_PEER_PORT}",
        f"--initial-cluster=devcluster=http://127.0.0.1:{ETCD_PEER_PORT}",
        "--listen-metrics-urls=http://127.0.0.1:23810", "--log-level=warn",
        "--quota-backend-bytes=4294967296", "--snapshot-count=10000",
    ])
    wait_for("etcd", lambda: _healthy(f"http://127.0.0.1:{ETCD_CLIENT_PORT}/health"), 60, "etcd", state)

    procs.start(state, "kube-apiserver", [
        str(binary), "kube-apiserver",
        f"--etcd-servers=http://127.0.0.1:{ETCD_CLIENT_PORT}",
        "--bind-address=0.0.0.0", f"--secure-port={APISERVER_PORT}", f"--advertise-address={BRIDGE_IP}",
        f"--tls-cert-file={p / 'apiserver.crt'}", f"--tls-private-key-file={p / 'apiserver.key'}",
        f"--client-ca-file={p / 'ca.crt'}", f"--token-auth-file={state.root / 'tokens.csv'}",
        f"--service-account-issuer=https://kubernetes.default.svc.{CLUSTER_DOMAIN}",
        f"--service-account-key-file={p / 'sa.pub'}", f"--service-account-signing-key-file={p / 'sa.key'}",
        "--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction",
        f"--service-cluster-ip-range={SERVICE_CIDR}", "--allow-privileged=true",
        "--kubelet-preferred-address-types=InternalIP",
        f"--kubelet-client-certificate={p / 'apiserver-kubelet-client.crt'}",
        f"--kubelet-client-key={p / 'apiserver-kubelet-client.key'}",
        f"--audit-policy-file={audit_policy}", f"--audit-log-path={state.logs / 'audit-hub.log'}",
        "--audit-log-maxsize=100", "--audit-log-maxbackup=1",
        "--profiling=false", "--v=1",
    ])
    admin = Client.from_kubeconfig(state.kubeconfig)
    wait_for("kube-apiserver /readyz", lambda: admin.session.get(admin.server + "/readyz", timeout=5).status_code == 200,
             180, "kube-apiserver", state)

    procs.start(state, "kube-controller-manager", [
        str(binary), "kube-controller-manager",
        f"--kubeconfig={state.component_kubeconfig('kube-controller-manager')}",
        f"--authentication-kubeconfig={state.component_kubeconfig('kube-controller-manager')}",
        f"--authorization-kubeconfig={state.component_kubeconfig('kube-controller-manager')}",
        "--use-service-account-credentials=true",
        f"--service-account-private-key-file={p / 'sa.key'}", f"--root-ca-file={p / 'ca.crt'}",
        f"--cluster-signing-cert-file={p / 'ca.crt'}", f"--cluster-signing-key-file={p / 'ca.key'}",
        "--controllers=*,-nodeipam,-cloud-node-lifecycle", "--leader-elect=false",
        "--bind-address=127.0.0.1", "--secure-port=10257", "--profiling=false", "--v=1",
    ])
    procs.start(state, "kube-scheduler", [
        str(binary), "kube-scheduler",
        f"--kubeconfig={state.component_kubeconfig('kube-scheduler')}",
        f"--authentication-kubeconfig={state.component_kubeconfig('kube-scheduler')}",
        f"--authorization-kubeconfig={state.component_kubeconfig('kube-scheduler')}",
        "--leader-elect=false", "--bind-address=127.0.0.1", "--secure-port=10259", "--profiling=false", "--v=1",
    ])
    return admin


def apply_cluster_services(admin: Client) -> None:
    """RBAC for our own components, the DNS Service, the default StorageClass."""
    from . import dns, netpol, provisioner

    objs = dns.rbac_manifests() + dns.dns_service_manifests() + provisioner.rbac_manifests()
    objs += netpol.rbac_manifests()
    objs.append(provisioner.storageclass_manifest())
    for obj in objs:
        apply_object(admin, obj, "devcluster")


def apply_object(client: Client, obj: dict, manager: str) -> dict:
    """Server-side apply one object."""
    return client.apply(kinds.object_path(obj), obj, manager)


def start_node_side(state: State, binary: Path) -> None:
    py = sys.executable
    env = {"PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    procs.start(state, "node-agent", [py, "-m", "devcluster.agent", f"--state-dir={state.root}",
                                      f"--nodes={NODES_FILE}", f"--images={IMAGES_FILE}"], env=env, cwd=REPO)
    procs.start(state, "kube-proxy", [
        str(binary), "kube-proxy", f"--kubeconfig={state.component_kubeconfig('kube-proxy')}",
        f"--hostname-override={node_names()[0]}", "--proxy-mode=iptables", f"--cluster-cidr={POD_CIDR}",
        "--conntrack-max-per-core=0", "--conntrack-tcp-timeout-established=0", "--conntrack-tcp-timeout-close-wait=0",
        "--metrics-bind-address=127.0.0.1:10249", "--healthz-bind-address=127.0.0.1:10256", "--v=1",
    ])
    procs.start(state, "dns", [py, "-m", "devcluster.dns", f"--state-dir={state.root}", f"--listen={BRIDGE_IP}:53"],
                env=env, cwd=REPO)
    procs.start(state, "provisioner", [py, "-m", "devcluster.provisioner", f"--state-dir={state.root}"],
                env=env, cwd=REPO)
    procs.start(state, "netpol", [py, "-m", "devcluster.netpol", f"--state-dir={state.root}"], env=env, cwd=REPO)


def nodes_ready(admin: Client, since: float | None = None) -> dict[str, bool]:
    """Ready per node; with ``since`` (epoch seconds), only a Ready heartbeat after it counts
    (a node object left from an earlier run still says Ready until its lease expires)."""
    import datetime as dt

    items = admin.list("/api/v1/nodes")["items"]
    ready = {}
    for n in items:
        cond = next((c for c in n.get("status", {}).get("conditions", []) if c["type"] == "Ready"), {})
        ok = cond.get("status") == "True"
        if ok and since is not None:
            beat = dt.datetime.fromisoformat(cond.get("lastHeartbeatTime", "1970-01-01T00:00:00Z").replace("Z", "+00:00"))
            ok = beat.timestamp() >= since - 1
        ready[n["metadata"]["name"]] = ok
    return ready


def up(state: State) -> dict:
    """Start everything that is not running yet (idempotent); return status()."""
    t0 = time.monotonic()
    started = time.time()
    for d in (state.root, state.logs, state.run, state.bin):
        d.mkdir(parents=True, exist_ok=True)
    binary = clusterbin()
    for name in ("kubectl", "kubelab-cluster"):
        link = state.bin / name
        if not link.is_symlink() or os.readlink(link) != str(binary):
            link.unlink(missing_ok=True)
            link.symlink_to(binary)
    pki.ensure_pki(state.pki)
    tokens = pki.ensure_tokens(state.root / "tokens.csv", identities())
    for name, (user, _) in identities().items():
        path = state.kubeconfig if name == "admin" else state.component_kubeconfig(name)
        write_kubeconfig(path, server_url(), state.pki / "ca.crt", tokens[name], user)
    ensure_host_network()

    from . import s3

    s3.up(state)
    admin = start_control_plane(state, binary)
    wait_for("the default namespace's ServiceAccount",
             lambda: admin.get("/api/v1/namespaces/default/serviceaccounts/default") is not None,
             120, "kube-controller-manager", state)
    apply_cluster_services(admin)
    names = node_names()
    agent_fresh = procs.running_pid(state, "node-agent") is None
    start_node_side(state, binary)
    since = started if agent_fresh else None
    wait_for("all nodes Ready", lambda: all(nodes_ready(admin, since).get(n) for n in names), 120, "node-agent", state)
    wait_for("kube-proxy", lambda: _healthy("http://127.0.0.1:10256/healthz"), 60, "kube-proxy", state)
    st = status(state)
    st["up_seconds"] = round(time.monotonic() - t0, 1)
    return st


def status(state: State) -> dict:
    daemons = {name: procs.running_pid(state, name) for name in ["s3"] + CONTROL_PLANE + NODE_SIDE}
    hub_pid = procs.running_pid(state, "hub")
    st: dict = {"state_dir": str(state.root), "kubeconfig": str(state.kubeconfig), "daemons": daemons}
    if daemons.get("kube-apiserver") and state.kubeconfig.exists():
        try:
            st["nodes"] = nodes_ready(Client.from_kubeconfig(state.kubeconfig))
        except (ApiError, requests.RequestException) as e:
            st["nodes_error"] = str(e)
    st["running"] = all(daemons.values()) and all(st.get("nodes", {None: False}).values())
    st["hub"] = hub_pid
    return st


def down(state: State) -> None:
    """Stop everything and leave no process, mount, network namespace or rule behind.

    Cluster state (etcd, S3 data, certificates) stays for the next ``up``;
    ``purge`` removes it.
    """
    from . import agent, hub, netpol, s3

    hub.down(state)
    procs.stop(state, "node-agent")
    agent.cleanup(state)
    for name in reversed(NODE_SIDE[1:]):
        procs.stop(state, name)
    if shutil.which("iptables"):
        netpol.cleanup()
    kubeproxy = state.bin / "kubelab-cluster"
    if kubeproxy.exists() and shutil.which("iptables"):
        subprocess.run([str(kubeproxy), "kube-proxy", "--cleanup"], capture_output=True)
        remove_kube_firewall()
    for name in reversed(CONTROL_PLANE):
        procs.stop(state, name)
    s3.down(state)
    remove_host_network()


def purge(state: State) -> None:
    """down, then delete the whole state directory."""
    down(state)
    shutil.rmtree(state.root, ignore_errors=True)


def demo_info(state: State) -> str:
    st = status(state)
    nodes = ", ".join(f"{n} ({'Ready' if r else 'NotReady'})" for n, r in st.get("nodes", {}).items())
    return "\n".join([
        "kubelab devcluster is up." if st["running"] else "kubelab devcluster is NOT fully up: see `make cluster-status`.",
        "  JupyterHub: http://127.0.0.1:8000  (log in as any user, password 'kubelab'; 'admin' is an admin; "
        "'alice' is in group gpu-users)" if st.get("hub") else "  JupyterHub: not running (python -m devcluster hub-up)",
        "  try:        in a notebook, `%kubelab info`, `%kubelab schedule create ...`, `%%kubelab train ...`; "
        "REST API at /user/<you>/kubelab/api/ (spec: .../openapi.yaml)",
        f"  nodes:      {nodes}",
        f"  kubectl:    export KUBECONFIG={state.kubeconfig}; {state.bin / 'kubectl'} get pods -A",
        f"  S3:         source {state.s3_env}   # MinIO on http://127.0.0.1:9000",
        f"  logs:       {state.logs}/<component>.log",
        "  stop:       make cluster-down",
    ])


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m devcluster", description=__doc__)
    ap.add_argument("command", choices=["up", "down", "status", "purge", "build", "hub-up", "hub-down", "demo",
                                        "demo-info"])
    args = ap.parse_args(argv)
    state = State.default()
    try:
        if args.command == "up":
            st = up(state)
            log(f"up in {st['up_seconds']}s; export KUBECONFIG={state.kubeconfig}; kubectl is {state.bin / 'kubectl'}")
            print(json.dumps(st, indent=2))
        elif args.command == "status":
            st = status(state)
            print(json.dumps(st, indent=2))
            return 0 if st["running"] else 1
        elif args.command == "down":
            down(state)
            log("down: no devcluster process, mount or network is left")
        elif args.command == "purge":
            purge(state)
            log(f"purged {state.root}")
        elif args.command == "build":
            print(clusterbin())
        elif args.command in ("hub-up", "demo"):
            from . import hub

            if args.command == "demo" and not status(state)["running"]:
                up(state)
            hub.up(state)
            if args.command == "demo":
                print(demo_info(state))
        elif args.command == "hub-down":
            from . import hub

            hub.down(state)
        elif args.command == "demo-info":
            print(demo_info(state))
    except (ClusterError, subprocess.CalledProcessError, RuntimeError) as e:
        log(f"error: {e}")
        return 1
    return 0
