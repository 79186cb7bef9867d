"""devcluster's NetworkPolicy agent: Ingress policies enforced with iptables.

Run as ``python -m devcluster.netpol --state-dir DIR`` (daemon ``netpol``,
identity ``system:devcluster:netpol``, ``state.component_kubeconfig("netpol")``).
It lists and watches NetworkPolicies, Pods and Namespaces and keeps the
host's iptables filter table in line with them, like a CNI's policy agent:

- Every pod runs in its own network namespace with a veth on bridge
  ``kubelab0``; with br_netfilter on, pod-to-pod packets (bridged or routed,
  ClusterIPs already DNAT-ed by kube-proxy) traverse the host's FORWARD chain
  with in and out device ``kubelab0``. The first rule of FORWARD jumps from
  there to ``KUBELAB-NETPOL``.
- ``KUBELAB-NETPOL`` accepts established/related traffic, then sends packets
  for each *isolated* pod (one selected by at least one Ingress policy of its
  namespace) to that pod's chain ``KUBELAB-NP-<hash>``: ACCEPT for each
  allowed (source, protocol, port) and DROP at the end. Packets to pods no
  policy selects fall through (the rest of FORWARD decides, i.e. accept).
- Traffic from the node itself (the hub, the proxy, probes, tests) goes
  through OUTPUT, never FORWARD, so it is always allowed, as real CNIs allow
  the kubelet's probes.

Semantics follow networking.k8s.io/v1 for Ingress: ``from`` peers with
podSelector (policy's namespace), namespaceSelector (+ podSelector), ipBlock
(cidr minus except); ``ports`` with a number (optionally ``endPort``) or a
named containerPort of the destination pod, protocol TCP (default), UDP or
SCTP; a missing/empty ``from`` or ``ports`` means all; an empty ``ingress``
list denies everything. **Egress policies are ignored** (policyTypes Egress and
``egress`` rules have no effect): kubelab only uses Ingress isolation. Only
IPv4 is handled (the pod network is IPv4-only).

The chains are rebuilt as a whole with one atomic ``iptables-restore
--noflush`` after every change (debounced) and every ``RESYNC`` seconds; no
packet ever reaches Python. On start the rules are rebuilt from the
apiserver's state (stale pod chains are removed); on SIGTERM they stay in
place, like a CNI's. ``cleanup()`` removes the chains and the jump
(``cluster.down()`` calls it).

The policy part is pure: ``compute()`` turns policies, pods and namespaces
into ``PodRules``, ``render()`` turns those into iptables-restore text and
``allowed()`` evaluates them for one packet; unit-tested in
tests/devcluster/test_netpol_unit.py.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import ipaddress
import logging
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from .kube import cluster_role_for_user
from .paths import BRIDGE, BRIDGE_IP, State

log = logging.getLogger("devcluster.netpol")

CHAIN = "KUBELAB-NETPOL"
POD_CHAIN_PREFIX = "KUBELAB-NP-"
CHAIN_PREFIX = "KUBELAB-"
JUMP_ARGS = ["-i", BRIDGE, "-o", BRIDGE, "-m", "comment", "--comment", "kubelab network policies", "-j", CHAIN]
PROTOCOLS = ("TCP", "UDP", "SCTP")
DEBOUNCE = 0.3      # seconds of quiet before a rebuild
MAX_DELAY = 2.0     # rebuild at the latest this long after the first change
RESYNC = 30.0       # rebuild (and re-check the FORWARD jump) at least this often


# -- RBAC ----------------------------------------------------------------------------
def rbac_manifests(user: str = "system:devcluster:netpol") -> list[dict]:
    """ClusterRole + binding for the policy agent's identity (read-only)."""
    return cluster_role_for_user("kubelab:devcluster-netpol", user, [
        {"apiGroups": [""], "resources": ["pods", "namespaces"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": ["get", "list", "watch"]},
    ])


# -- the pure part -------------------------------------------------------------------
@dataclass(frozen=True, order=True)
class Allow:
    """One allowed (source, protocol, port range) to an isolated pod; None means any."""

    src: str | None = None        # IPv4 CIDR ("10.244.1.5/32"), None: any source
    proto: str | None = None      # TCP/UDP/SCTP, None: any protocol (and port)
    port: int | None = None       # None: any port of ``proto``
    end_port: int | None = None   # inclusive range end, None: just ``port``


@dataclass(frozen=True)
class PodRules:
    """An isolated pod and everything that may connect to it."""

    namespace: str
    name: str
    ip: str
    allows: tuple[Allow, ...]
    policies: tuple[str, ...] = ()

    @property
    def chain(self) -> str:
        return pod_chain(self.namespace, self.name)


def pod_chain(namespace: str, name: str) -> str:
    """``KUBELAB-NP-`` + 16 base32 characters of a hash (27 of iptables' 28 characters)."""
    digest = hashlib.sha256(f"{namespace}/{name}".encode()).digest()
    return POD_CHAIN_PREFIX + base64.b32encode(digest).decode()[:16]


def selector_matches(selector: dict | None, labels: dict | None) -> bool:
    """A metav1.LabelSelector against labels; ``{}`` matches everything, None nothing."""
    if selector is None:
        return False
    labels = labels or {}
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In":
            ok = key in labels and labels[key] in values
        elif op == "NotIn":
            ok = key not in labels or labels[key] not in values
        elif op == "Exists":
            ok = key in labels
        elif op == "DoesNotExist":
            ok = key not in labels
        else:  # unknown operator: match nothing, like the apiserver would reject it
            ok = False
        if not ok:
            return False
    return True


@dataclass(frozen=True)
class _Pod:
    namespace: str
    name: str
    ip: str | None
    labels: dict
    named_ports: tuple[tuple[str, str, int], ...]   # (name, protocol, containerPort)


def _pod_ip(pod: dict) -> str | None:
    st = pod.get("status") or {}
    ips = [p.get("ip") for p in st.get("podIPs") or []] or [st.get("podIP")]
    for ip in ips:
        if not ip:
            continue
        try:
            if ipaddress.ip_address(ip).version == 4:
                return ip
        except ValueError:
            continue
    return None


def _parse_pod(pod: dict) -> _Pod | None:
    """The parts of a pod that matter; None for host-network and finished pods."""
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    if spec.get("hostNetwork") or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return None
    ports = []
    for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        for p in c.get("ports") or []:
            if p.get("name") and p.get("containerPort"):
                ports.append((p["name"], p.get("protocol") or "TCP", int(p["containerPort"])))
    return _Pod(namespace=meta.get("namespace", ""), name=meta.get("name", ""), ip=_pod_ip(pod),
                labels=dict(meta.get("labels") or {}), named_ports=tuple(ports))


def _applies_to_ingress(policy: dict) -> bool:
    types = (policy.get("spec") or {}).get("policyTypes")
    return not types or "Ingress" in types   # no policyTypes: Ingress is always implied


def _ipblock_cidrs(block: dict) -> list[str]:
    """``cidr`` minus every ``except``, as a list of IPv4 CIDRs."""
    try:
        net = ipaddress.ip_network(block.get("cidr", ""), strict=False)
    except ValueError:
        return []
    if net.version != 4:
        return []
    nets = [net]
    for ex in block.get("except") or []:
        try:
            exn = ipaddress.ip_network(ex, strict=False)
        except ValueError:
            continue
        out = []
        for n in nets:
            if exn.version != 4 or not n.overlaps(exn):
                out.append(n)
            elif exn.supernet_of(n):
                continue
            else:
                out.extend(n.address_exclude(exn))
        nets = out
    return [str(n) for n in sorted(nets)]


def _peer_sources(peer: dict, policy_ns: str, pods: list[_Pod], ns_labels: dict[str, dict]) -> list[str] | None:
    """Source CIDRs of one ``from`` peer (None for an invalid, empty peer)."""
    if "ipBlock" in peer and peer["ipBlock"] is not None:
        return _ipblock_cidrs(peer["ipBlock"])
    pod_sel, ns_sel = peer.get("podSelector"), peer.get("namespaceSelector")
    if pod_sel is None and ns_sel is None:
        return None
    if ns_sel is None:
        namespaces = {policy_ns}
    else:
        namespaces = {ns for ns, labels in ns_labels.items() if selector_matches(ns_sel, labels)}
    if pod_sel is None:
        pod_sel = {}
    return sorted({f"{p.ip}/32" for p in pods
                   if p.ip and p.namespace in namespaces and selector_matches(pod_sel, p.labels)},
                  key=lambda c: ipaddress.ip_network(c))


def _rule_ports(ports: list[dict] | None, pod: _Pod) -> list[tuple[str | None, int | None, int | None]] | None:
    """(proto, port, end_port) for a rule's ``ports`` on destination ``pod``;
    [(None, None, None)] for all; [] if nothing resolves (named port missing)."""
    if not ports:
        return [(None, None, None)]
    out = []
    for p in ports:
        proto = (p.get("protocol") or "TCP").upper()
        port = p.get("port")
        if port is None:
            out.append((proto, None, None))
        elif isinstance(port, int) or (isinstance(port, str) and port.isdigit()):
            end = p.get("endPort")
            out.append((proto, int(port), int(end) if end and int(end) > int(port) else None))
        else:  # a named port: the destination pod's containerPort of that name and protocol
            for name, pproto, number in pod.named_ports:
                if name == port and pproto.upper() == proto:
                    out.append((proto, number, None))
    return out


def compute(policies: Iterable[dict], pods: Iterable[dict], namespaces: Iterable[dict]) -> list[PodRules]:
    """The isolated pods and what may connect to each, from API objects (pure)."""
    parsed = [p for p in (_parse_pod(o) for o in pods) if p is not None]
    ns_labels = {(n.get("metadata") or {}).get("name", ""): dict((n.get("metadata") or {}).get("labels") or {})
                 for n in namespaces}
    # the apiserver labels every namespace with its name; be right before the Namespace is listed too
    for name, labels in ns_labels.items():
        labels.setdefault("kubernetes.io/metadata.name", name)
    ingress = sorted((p for p in policies if _applies_to_ingress(p)),
                     key=lambda p: (p["metadata"].get("namespace", ""), p["metadata"].get("name", "")))
    out = []
    for pod in sorted(parsed, key=lambda p: (p.namespace, p.name)):
        if not pod.ip:
            continue
        selecting = [pol for pol in ingress if pol["metadata"].get("namespace") == pod.namespace
                     and selector_matches((pol.get("spec") or {}).get("podSelector") or {}, pod.labels)]
        if not selecting:
            continue
        allows: set[Allow] = set()
        for pol in selecting:
            for rule in (pol.get("spec") or {}).get("ingress") or []:
                peers = rule.get("from")
                if not peers:
                    sources: list[str | None] = [None]
                else:
                    sources = []
                    for peer in peers:
                        srcs = _peer_sources(peer, pod.namespace, parsed, ns_labels)
                        sources.extend(srcs or [])
                for proto, port, end in _rule_ports(rule.get("ports"), pod) or []:
                    for src in sources:
                        allows.add(Allow(src, proto, port, end))
        out.append(PodRules(pod.namespace, pod.name, pod.ip, _minimise(allows),
                            tuple(pol["metadata"]["name"] for pol in selecting)))
    return out


def _minimise(allows: set[Allow]) -> tuple[Allow, ...]:
    """Drop rules another rule already covers (any source / any port), sorted."""
    def key(a: Allow):
        return (a.src is not None, a.src and ipaddress.ip_network(a.src), a.proto or "", a.port or 0, a.end_port or 0)

    any_src_ports = {(a.proto, a.port, a.end_port) for a in allows if a.src is None}
    all_ports_srcs = {a.src for a in allows if a.proto is None}
    if None in all_ports_srcs:
        return (Allow(),)
    keep = set()
    for a in allows:
        if a.proto is not None and a.src in all_ports_srcs:
            continue
        if a.src is not None and (a.proto, a.port, a.end_port) in any_src_ports:
            continue
        keep.add(a)
    return tuple(sorted(keep, key=key))


def allowed(rules: Iterable[PodRules], src: str, dst: str, port: int, proto: str = "TCP") -> bool:
    """Whether a new pod-to-pod connection ``src -> dst:port/proto`` passes (evaluates ``rules``)."""
    proto = proto.upper()
    if src == BRIDGE_IP:
        return True
    for pr in rules:
        if pr.ip != dst:
            continue
        for a in pr.allows:
            if a.src and ipaddress.ip_address(src) not in ipaddress.ip_network(a.src):
                continue
            if a.proto and a.proto != proto:
                continue
            if a.port is not None and not (a.port <= port <= (a.end_port or a.port)):
                continue
            return True
        return False
    return True


def _comment(text: str) -> list[str]:
    return ["-m", "comment", "--comment", '"' + text.replace('"', "'")[:250] + '"']


def _allow_args(a: Allow) -> list[str]:
    args = []
    if a.src:
        args += ["-s", a.src]
    if a.proto:
        p = a.proto.lower()
        args += ["-p", p]
        if a.port is not None:
            args += ["-m", p, "--dport", f"{a.port}:{a.end_port}" if a.end_port else str(a.port)]
    return args


def render(rules: Iterable[PodRules], existing_chains: Iterable[str] = ()) -> str:
    """iptables-restore --noflush input for the filter table: our chains, rebuilt whole.

    ``existing_chains``: KUBELAB-NP-* chains now in the kernel; the ones no
    longer needed are flushed and deleted in the same transaction.
    """
    rules = sorted(rules, key=lambda r: (r.namespace, r.name))
    chains = [r.chain for r in rules]
    stale = sorted(set(c for c in existing_chains if c.startswith(POD_CHAIN_PREFIX)) - set(chains))
    lines = ["*filter", f":{CHAIN} - [0:0]"]
    lines += [f":{c} - [0:0]" for c in chains + stale]
    lines.append(" ".join([f"-A {CHAIN}", "-m conntrack --ctstate RELATED,ESTABLISHED", "-j ACCEPT"]))
    lines.append(" ".join([f"-A {CHAIN}", "-s", f"{BRIDGE_IP}/32", *_comment("the node"), "-j ACCEPT"]))
    for r in rules:
        lines.append(" ".join([f"-A {CHAIN}", "-d", f"{r.ip}/32", *_comment(f"{r.namespace}/{r.name}"),
                               "-j", r.chain]))
    for r in rules:
        for a in r.allows:
            lines.append(" ".join([f"-A {r.chain}", *_allow_args(a), "-j ACCEPT"]))
        lines.append(" ".join([f"-A {r.chain}", *_comment(f"{r.namespace}/{r.name} isolated by "
                                                          + ",".join(r.policies)), "-j DROP"]))
    lines += [f"-X {c}" for c in stale]
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


# -- iptables ----------------------------------------------------------------------
def _run(*argv: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), input=input, capture_output=True, text=True, check=check)


def existing_chains() -> list[str]:
    """Our chains (KUBELAB-*) in the filter table now."""
    out = _run("iptables-save", "-t", "filter").stdout
    return [line[1:].split()[0] for line in out.splitlines()
            if line.startswith(":" + CHAIN_PREFIX)]


def ensure_jump() -> None:
    """The FORWARD jump to KUBELAB-NETPOL, as FORWARD's first rule (exactly once)."""
    rules = _run("iptables", "-w", "5", "-S", "FORWARD").stdout.splitlines()
    ours = [i for i, line in enumerate(rules) if line.endswith(f"-j {CHAIN}")]
    # rules[0] is "-P FORWARD ACCEPT"; the first real rule is rules[1]
    if ours == [1]:
        return
    while _run("iptables", "-w", "5", "-D", "FORWARD", *JUMP_ARGS, check=False).returncode == 0:
        pass
    _run("iptables", "-w", "5", "-I", "FORWARD", "1", *JUMP_ARGS)


def apply(rules: list[PodRules]) -> str:
    """Rebuild our chains atomically, then make sure FORWARD jumps to them; returns the text."""
    text = render(rules, existing_chains())
    r = _run("iptables-restore", "-w", "5", "--noflush", input=text, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"iptables-restore failed ({r.returncode}): {r.stderr.strip()}")
    ensure_jump()
    return text


def cleanup(state: State | None = None) -> None:
    """Remove the FORWARD jump and every KUBELAB-* chain (the daemon leaves them on exit)."""
    while _run("iptables", "-w", "5", "-D", "FORWARD", *JUMP_ARGS, check=False).returncode == 0:
        pass
    # any other rule that still jumps to our chain (e.g. different arguments)
    for line in _run("iptables", "-w", "5", "-S", "FORWARD", check=False).stdout.splitlines():
        if line.startswith("-A FORWARD") and f"-j {CHAIN_PREFIX}" in line:
            _run("iptables", "-w", "5", "-D", *shlex.split(line)[1:], check=False)
    chains = existing_chains()
    if not chains:
        return
    # one transaction: flush every chain of ours, then delete them all
    text = "\n".join(["*filter", *(f":{c} - [0:0]" for c in chains), *(f"-X {c}" for c in chains), "COMMIT", ""])
    if _run("iptables-restore", "-w", "5", "--noflush", input=text, check=False).returncode != 0:
        for c in chains:
            _run("iptables", "-w", "5", "-F", c, check=False)
        for c in chains:
            _run("iptables", "-w", "5", "-X", c, check=False)


# -- watching the apiserver ------------------------------------------------------
WATCHED = {
    "networkpolicies": "/apis/networking.k8s.io/v1/networkpolicies",
    "pods": "/api/v1/pods",
    "namespaces": "/api/v1/namespaces",
}


def _trim(kind: str, obj: dict) -> dict:
    """Keep only what compute() reads (pods are big)."""
    meta = obj.get("metadata") or {}
    m = {"name": meta.get("name"), "namespace": meta.get("namespace"), "labels": meta.get("labels") or {}}
    if kind == "pods":
        spec, st = obj.get("spec") or {}, obj.get("status") or {}
        return {"metadata": m,
                "spec": {"hostNetwork": spec.get("hostNetwork", False),
                         "containers": [{"ports": c.get("ports") or []} for c in spec.get("containers") or []],
                         "initContainers": [{"ports": c.get("ports") or []}
                                            for c in spec.get("initContainers") or []]},
                "status": {"phase": st.get("phase"), "podIP": st.get("podIP"), "podIPs": st.get("podIPs") or []}}
    if kind == "namespaces":
        return {"metadata": m}
    return {"metadata": m, "spec": obj.get("spec") or {}}


class Store:
    """The watched objects in memory; ``changed`` is set on every change."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._objs: dict[str, dict[tuple[str, str], dict]] = {k: {} for k in WATCHED}
        self.synced: set[str] = set()
        self.changed = threading.Event()

    @staticmethod
    def _key(obj: dict) -> tuple[str, str]:
        meta = obj.get("metadata") or {}
        return meta.get("namespace") or "", meta.get("name") or ""

    def set(self, kind: str, obj: dict) -> None:
        t = _trim(kind, obj)
        with self._lock:
            if self._objs[kind].get(self._key(t)) == t:
                return   # e.g. a pod's status heartbeat that changes nothing we use
            self._objs[kind][self._key(t)] = t
        self.changed.set()

    def delete(self, kind: str, obj: dict) -> None:
        with self._lock:
            self._objs[kind].pop(self._key(obj), None)
        self.changed.set()

    def replace_all(self, kind: str, objs: Iterable[dict]) -> None:
        with self._lock:
            self._objs[kind] = {self._key(t): t for t in (_trim(kind, o) for o in objs)}
            self.synced.add(kind)
        self.changed.set()

    def snapshot(self) -> tuple[list[dict], list[dict], list[dict]]:
        with self._lock:
            return (list(self._objs["networkpolicies"].values()), list(self._objs["pods"].values()),
                    list(self._objs["namespaces"].values()))


def watch_forever(client, store: Store, kind: str, stop: threading.Event) -> None:
    """List, then watch ``kind`` into ``store``; re-list on 410 Gone or any failure."""
    from .kube import list_watch

    list_watch(client, WATCHED[kind], stop, lambda items: store.replace_all(kind, items),
               lambda obj: store.set(kind, obj), lambda obj: store.delete(kind, obj), kind)


def sync_loop(store: Store, stop: threading.Event) -> None:
    """Rebuild the rules after changes (debounced) and every RESYNC seconds, once all kinds are listed."""
    last_text = None
    last_sync = 0.0
    while not stop.is_set():
        store.changed.wait(timeout=max(0.5, RESYNC - (time.monotonic() - last_sync)))
        if stop.is_set():
            return
        if store.changed.is_set():
            first = time.monotonic()
            store.changed.clear()
            # debounce: wait for DEBOUNCE seconds of quiet, at most MAX_DELAY in all
            while time.monotonic() - first < MAX_DELAY and store.changed.wait(DEBOUNCE):
                store.changed.clear()
        elif time.monotonic() - last_sync < RESYNC:
            continue
        if not store.synced.issuperset(WATCHED):
            continue   # never rebuild from a partial view (the old rules stay meanwhile)
        try:
            rules = compute(*store.snapshot())
            text = apply(rules)
            if text != last_text:
                log.info("rules rebuilt: %d isolated pod(s), %d allow rule(s)",
                         len(rules), sum(len(r.allows) for r in rules))
            last_text = text
        except Exception as e:
            log.error("could not apply the rules: %s", e)
            store.changed.set()
            stop.wait(2.0)
            continue
        last_sync = time.monotonic()


# -- main ----------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m devcluster.netpol", description="devcluster NetworkPolicy agent")
    p.add_argument("--state-dir", type=Path, default=None)
    p.add_argument("--kubeconfig", type=Path, default=None,
                   help="default: the state's kubeconfigs/netpol.kubeconfig")
    p.add_argument("--cleanup", action="store_true", help="remove the rules and exit")
    p.add_argument("-v", "--verbose", action="store_true")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if a.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    if a.cleanup:
        cleanup()
        return 0
    state = State(a.state_dir.resolve()) if a.state_dir else State.default()
    from .kube import Client

    client = Client.from_kubeconfig(a.kubeconfig or state.component_kubeconfig("netpol"))
    store = Store()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())   # the rules stay, like a CNI's
    threads = [threading.Thread(target=watch_forever, args=(client, store, kind, stop), daemon=True,
                                name=f"watch-{kind}") for kind in WATCHED]
    for t in threads:
        t.start()
    log.info("enforcing Ingress NetworkPolicies on %s (FORWARD -> %s)", BRIDGE, CHAIN)
    try:
        sync_loop(store, stop)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
