"""devcluster's cluster DNS: a small authoritative server for ``cluster.local``.

Run as ``python -m devcluster.dns --state-dir DIR --listen 10.244.0.1:53``
(daemon ``dns``). It lists and watches Services and EndpointSlices with its own
identity (``state.component_kubeconfig("dns")``) and answers over UDP and TCP,
following the Kubernetes DNS specification:

- ``<svc>.<ns>.svc.cluster.local`` A: the ClusterIP; for a headless Service
  the ready endpoint addresses (all of them with publishNotReadyAddresses);
  CNAME for ExternalName Services.
- ``<host>.<svc>.<ns>.svc.cluster.local`` A: a headless Service's endpoint
  whose hostname is ``<host>`` (pods with spec.hostname + spec.subdomain, e.g.
  Indexed Jobs), or whose address is ``<host>`` written with dashes.
- ``_<port>._<proto>.<svc>.<ns>.svc.cluster.local`` SRV for named ports (and
  SRV for all named ports on ``<svc>.<ns>.svc.cluster.local``).
- ``a-b-c-d.<ns>.pod.cluster.local`` A (CoreDNS "pods insecure" mode).
- PTR for ClusterIPs and endpoint addresses.
- NXDOMAIN for unknown names under cluster.local (with the SOA for negative
  caching); other names are forwarded to the host's resolver with a short
  timeout (SERVFAIL if it does not answer), or REFUSED with ``--upstream none``.

``Index`` holds the cluster state in memory and resolves names without any
network, so it is unit-tested directly (tests/devcluster/test_dns_unit.py).
"""
from __future__ import annotations

import argparse
import ipaddress
import logging
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from .kube import MANAGED_BY, cluster_role_for_user
from .paths import BRIDGE_IP, CLUSTER_DOMAIN, DNS_SERVICE_IP, State

log = logging.getLogger("devcluster.dns")

TTL = 5
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
REVERSE_ZONES = ("96.10.in-addr.arpa", "244.10.in-addr.arpa")  # service and pod CIDRs


# -- RBAC and Service objects ---------------------------------------------------
def rbac_manifests(user: str = "system:devcluster:dns") -> list[dict]:
    """ClusterRole + binding for the DNS server's identity (read-only, like CoreDNS')."""
    return cluster_role_for_user("kubelab:devcluster-dns", user, [
        {"apiGroups": [""], "resources": ["services", "endpoints", "pods", "namespaces"],
         "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]},
    ])


def dns_service_manifests(address: str = BRIDGE_IP, cluster_ip: str = DNS_SERVICE_IP) -> list[dict]:
    """Selector-less Service kube-dns (10.96.0.10) and the EndpointSlice to the daemon."""
    labels = {"k8s-app": "kube-dns", "kubernetes.io/name": "devcluster-dns",
              "app.kubernetes.io/managed-by": MANAGED_BY}
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": labels},
            "spec": {
                "clusterIP": cluster_ip,
                "clusterIPs": [cluster_ip],
                "ports": [
                    {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                ],
            },
        },
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": "kube-dns-devcluster",
                "namespace": "kube-system",
                "labels": {
                    SERVICE_NAME_LABEL: "kube-dns",
                    "endpointslice.kubernetes.io/managed-by": MANAGED_BY,
                    "k8s-app": "kube-dns",
                },
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": [address], "conditions": {"ready": True, "serving": True,
                                                                  "terminating": False}}],
            "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP"},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
            ],
        },
    ]


# -- the in-memory index ------------------------------------------------------------
@dataclass(frozen=True)
class Record:
    name: str          # fully qualified, lower case, no trailing dot
    rtype: str         # A, SRV, PTR, CNAME, SOA, NS
    value: Any         # str for A/PTR/CNAME/NS; (priority, weight, port, target) for SRV
    ttl: int = TTL


@dataclass
class Answer:
    rcode: str                       # NOERROR, NXDOMAIN, SERVFAIL, REFUSED
    answers: list[Record] = field(default_factory=list)
    additional: list[Record] = field(default_factory=list)
    authority: list[Record] = field(default_factory=list)
    authoritative: bool = True


@dataclass
class _Svc:
    namespace: str
    name: str
    type: str
    cluster_ips: list[str]
    headless: bool
    external_name: str
    ports: list[dict]
    publish_not_ready: bool


@dataclass
class _Endpoint:
    ip: str
    hostname: str
    ready: bool


@dataclass
class _Slice:
    namespace: str
    service: str
    endpoints: list[_Endpoint]
    ports: list[dict]


def _dashed(ip: str) -> str:
    return ip.replace(".", "-")


def _undashed(label: str) -> str | None:
    try:
        return str(ipaddress.IPv4Address(label.replace("-", ".")))
    except ValueError:
        return None


class Index:
    """Services and EndpointSlices in memory; resolves DNS questions (pure)."""

    def __init__(self, domain: str = CLUSTER_DOMAIN):
        self.domain = domain.lower().strip(".")
        self._lock = threading.RLock()
        self._services: dict[tuple[str, str], _Svc] = {}
        self._slices: dict[tuple[str, str], _Slice] = {}
        self.synced: set[str] = set()

    # -- updates (objects as the apiserver sends them) --------------------------
    def set_service(self, obj: dict) -> None:
        meta, spec = obj.get("metadata", {}), obj.get("spec", {})
        ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
        headless = spec.get("clusterIP") == "None"
        svc = _Svc(
            namespace=meta["namespace"],
            name=meta["name"],
            type=spec.get("type", "ClusterIP"),
            cluster_ips=[] if headless else [ip for ip in ips if _is_v4(ip)],
            headless=headless,
            external_name=(spec.get("externalName") or "").strip(".").lower(),
            ports=[{"name": p.get("name", ""), "port": p["port"], "protocol": p.get("protocol", "TCP")}
                   for p in spec.get("ports") or []],
            publish_not_ready=bool(spec.get("publishNotReadyAddresses")),
        )
        with self._lock:
            self._services[(svc.namespace, svc.name)] = svc

    def delete_service(self, obj: dict) -> None:
        meta = obj.get("metadata", {})
        with self._lock:
            self._services.pop((meta.get("namespace"), meta.get("name")), None)

    def set_slice(self, obj: dict) -> None:
        meta = obj.get("metadata", {})
        key = (meta["namespace"], meta["name"])
        service = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
        if obj.get("addressType", "IPv4") != "IPv4" or not service:
            with self._lock:
                self._slices.pop(key, None)
            return
        eps = []
        for ep in obj.get("endpoints") or []:
            ready = (ep.get("conditions") or {}).get("ready")
            for ip in ep.get("addresses") or []:
                eps.append(_Endpoint(ip=ip, hostname=(ep.get("hostname") or "").lower(),
                                     ready=ready is None or bool(ready)))
        ports = [{"name": p.get("name") or "", "port": p.get("port"), "protocol": p.get("protocol", "TCP")}
                 for p in obj.get("ports") or [] if p.get("port")]
        with self._lock:
            self._slices[key] = _Slice(namespace=key[0], service=service, endpoints=eps, ports=ports)

    def delete_slice(self, obj: dict) -> None:
        meta = obj.get("metadata", {})
        with self._lock:
            self._slices.pop((meta.get("namespace"), meta.get("name")), None)

    def replace_all(self, kind: str, objs: Iterable[dict]) -> None:
        """Replace every Service (``kind="services"``) or EndpointSlice after a (re)list."""
        with self._lock:
            if kind == "services":
                self._services.clear()
                for o in objs:
                    self.set_service(o)
            else:
                self._slices.clear()
                for o in objs:
                    self.set_slice(o)
            self.synced.add(kind)

    # -- lookups ---------------------------------------------------------------------
    def _endpoints(self, svc: _Svc) -> list[tuple[_Endpoint, list[dict]]]:
        """(endpoint, slice ports) for a service's usable endpoints, deduplicated by IP."""
        out, seen = [], set()
        for sl in self._slices.values():
            if sl.namespace != svc.namespace or sl.service != svc.name:
                continue
            for ep in sl.endpoints:
                if (ep.ready or svc.publish_not_ready) and ep.ip not in seen:
                    seen.add(ep.ip)
                    out.append((ep, sl.ports))
        out.sort(key=lambda e: ipaddress.IPv4Address(e[0].ip))
        return out

    def soa(self, zone: str | None = None) -> Record:
        zone = zone or self.domain
        return Record(zone, "SOA", (f"ns.dns.{self.domain}", f"hostmaster.{self.domain}",
                                    int(time.time()) // 60, 7200, 1800, 86400, TTL))

    def in_zone(self, name: str) -> str | None:
        name = name.lower().rstrip(".")
        for zone in (self.domain, *REVERSE_ZONES):
            if name == zone or name.endswith("." + zone):
                return zone
        return None

    def resolve(self, qname: str, qtype: str) -> Answer | None:
        """Answer ``qtype`` for ``qname``, or None if the name is not in our zones."""
        name = qname.lower().rstrip(".")
        zone = self.in_zone(name)
        if zone is None:
            return None
        with self._lock:
            if zone != self.domain:
                return self._reverse(name, qtype, zone)
            labels = name[: -len(zone)].rstrip(".").split(".") if name != zone else []
            records, extra, exists = self._forward(name, labels, qtype)
        if not exists:
            return Answer("NXDOMAIN", authority=[self.soa()])
        if not records:
            if qtype == "SOA" and not labels:
                return Answer("NOERROR", answers=[self.soa()])
            if qtype == "NS" and not labels:
                return Answer("NOERROR", answers=[Record(name, "NS", f"ns.dns.{self.domain}")])
            return Answer("NOERROR", authority=[self.soa()])
        return Answer("NOERROR", answers=records, additional=extra)

    def _forward(self, name: str, labels: list[str], qtype: str) -> tuple[list[Record], list[Record], bool]:
        """(answers, additional, name exists) for a name under the cluster domain."""
        if not labels or labels == ["svc"] or labels == ["pod"]:
            return [], [], True
        if labels[-1] == "pod":
            if len(labels) == 2:  # <ns>.pod: an empty non-terminal
                return [], [], True
            if len(labels) == 3 and (ip := _undashed(labels[0])):
                return ([Record(name, "A", ip)] if qtype in ("A", "ANY") else []), [], True
            return [], [], False
        if labels[-1] != "svc":
            return [], [], False
        ns = labels[-2]
        if len(labels) == 2:
            return [], [], any(k[0] == ns for k in self._services)
        svc = self._services.get((ns, labels[-3]))
        if svc is None:
            return [], [], False
        rest = labels[:-3]
        if not rest:  # <svc>.<ns>.svc
            if svc.type == "ExternalName":
                if svc.external_name and qtype in ("A", "AAAA", "CNAME", "ANY"):
                    return [Record(name, "CNAME", svc.external_name)], [], True
                return [], [], True
            if qtype in ("A", "ANY"):
                if svc.headless:
                    return [Record(name, "A", ep.ip) for ep, _ in self._endpoints(svc)], [], True
                return [Record(name, "A", ip) for ip in svc.cluster_ips], [], True
            if qtype == "SRV":
                return self._srv(svc, name, None, None)
            return [], [], True
        if len(rest) == 1:  # <host>.<svc>.<ns>.svc (headless endpoints)
            host = rest[0]
            if not svc.headless:
                return [], [], False
            ips = [ep.ip for ep, _ in self._endpoints(svc)
                   if ep.hostname == host or (not ep.hostname and _dashed(ep.ip) == host)]
            if not ips:
                return [], [], False
            return ([Record(name, "A", ip) for ip in ips] if qtype in ("A", "ANY") else []), [], True
        if len(rest) == 2 and rest[0].startswith("_") and rest[1].startswith("_"):
            port, proto = rest[0][1:], rest[1][1:]
            ans, extra, ok = self._srv(svc, name, port, proto)
            if not ok:
                return [], [], False
            return (ans if qtype in ("SRV", "ANY") else []), (extra if qtype in ("SRV", "ANY") else []), True
        if len(rest) == 1 and rest[0].startswith("_"):  # _<proto> or _<port> alone: empty non-terminal
            return [], [], True
        return [], [], False

    def _srv(self, svc: _Svc, qname: str, port: str | None, proto: str | None
             ) -> tuple[list[Record], list[Record], bool]:
        """SRV answers for a service's named ports (one port if ``port``/``proto`` given)."""
        d = self.domain
        svc_name = f"{svc.name}.{svc.namespace}.svc.{d}"

        def wanted(p: dict) -> bool:
            return bool(p["name"]) and (port is None or (p["name"].lower() == port
                                                         and p["protocol"].lower() == proto))

        answers: list[Record] = []
        extra: list[Record] = []
        if not svc.headless:
            ports = [p for p in svc.ports if wanted(p)]
            if not ports or svc.type == "ExternalName":
                return [], [], False
            for p in ports:
                answers.append(Record(qname, "SRV", (0, 100, p["port"], svc_name)))
            extra = [Record(svc_name, "A", ip) for ip in svc.cluster_ips]
            return answers, extra, True
        # headless: one SRV per endpoint, with the endpoint's own port
        found = any(wanted(p) for p in svc.ports)
        eps = self._endpoints(svc)
        for ep, ports in eps:
            for p in ports:
                if not wanted(p):
                    continue
                found = True
                target = f"{ep.hostname or _dashed(ep.ip)}.{svc_name}"
                answers.append(Record(qname, "SRV", (0, 100, p["port"], target)))
                extra.append(Record(target, "A", ep.ip))
        if eps and answers:
            weight = max(1, 100 // len({a.value[3] for a in answers}))
            answers = [Record(a.name, "SRV", (0, weight, a.value[2], a.value[3])) for a in answers]
        return answers, extra, found

    def _reverse(self, name: str, qtype: str, zone: str) -> Answer:
        octets = name[: -len(".in-addr.arpa")].split(".") if name.endswith(".in-addr.arpa") else []
        if len(octets) != 4:
            if name == zone and qtype == "SOA":
                return Answer("NOERROR", answers=[self.soa(zone)])
            # an empty non-terminal inside the reverse zone, or a malformed name
            return Answer("NOERROR" if len(octets) < 4 else "NXDOMAIN", authority=[self.soa(zone)])
        ip = ".".join(reversed(octets))
        targets = []
        for svc in self._services.values():
            svc_name = f"{svc.name}.{svc.namespace}.svc.{self.domain}"
            if ip in svc.cluster_ips:
                targets.append(svc_name)
            elif svc.headless:
                for ep, _ in self._endpoints(svc):
                    if ep.ip == ip:
                        targets.append(f"{ep.hostname or _dashed(ip)}.{svc_name}")
        if not targets:
            return Answer("NXDOMAIN", authority=[self.soa(zone)])
        if qtype not in ("PTR", "ANY"):
            return Answer("NOERROR", authority=[self.soa(zone)])
        return Answer("NOERROR", answers=[Record(name, "PTR", t) for t in sorted(set(targets))])


def _is_v4(ip: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(ip), ipaddress.IPv4Address)
    except ValueError:
        return False


# -- the DNS protocol side (dnslib) ---------------------------------------------
class Resolver:
    """dnslib resolver: the index for our zones, an upstream (or REFUSED) for the rest."""

    def __init__(self, index: Index, upstream: list[tuple[str, int]] | None = None,
                 upstream_timeout: float = 2.0):
        self.index = index
        self.upstream = upstream or []
        self.upstream_timeout = upstream_timeout

    def resolve(self, request, handler=None):
        from dnslib import QTYPE, RCODE

        reply = request.reply()
        q = request.q
        qname = str(q.qname)
        qtype = QTYPE.get(q.qtype, str(q.qtype))
        try:
            if self.index.in_zone(qname) and not self.index.synced.issuperset({"services", "endpointslices"}):
                reply.header.rcode = RCODE.SERVFAIL  # not synced with the apiserver yet
                return reply
            ans = self.index.resolve(qname, qtype)
        except Exception:  # never let one bad question kill the server
            log.exception("resolving %s %s", qname, qtype)
            reply.header.rcode = RCODE.SERVFAIL
            return reply
        if ans is None:
            return self._forward(request, handler)
        reply.header.aa = 1
        reply.header.rcode = getattr(RCODE, ans.rcode)
        for r in ans.answers:
            reply.add_answer(_rr(r))
        for r in ans.authority:
            reply.add_auth(_rr(r))
        for r in ans.additional:
            reply.add_ar(_rr(r))
        return reply

    def _forward(self, request, handler):
        from dnslib import RCODE, DNSRecord

        if not self.upstream:
            reply = request.reply()
            reply.header.ra = 0
            reply.header.rcode = RCODE.REFUSED
            return reply
        # Ask upstream over UDP (some resolvers here do not speak TCP); only a
        # truncated answer to a client that came over TCP is retried over TCP.
        tcp_client = getattr(handler, "protocol", "udp") == "tcp"
        for host, port in self.upstream:
            try:
                reply = DNSRecord.parse(request.send(host, port, tcp=False, timeout=self.upstream_timeout))
            except Exception as e:  # timeout, refused, garbage
                log.debug("upstream %s:%s failed for %s: %s", host, port, request.q.qname, e)
                continue
            if reply.header.tc and tcp_client:
                try:
                    reply = DNSRecord.parse(request.send(host, port, tcp=True, timeout=self.upstream_timeout))
                except Exception as e:
                    log.debug("upstream %s:%s (tcp) failed for %s: %s", host, port, request.q.qname, e)
            return reply
        reply = request.reply()
        reply.header.rcode = RCODE.SERVFAIL
        return reply


def _rr(r: Record):
    from dnslib import CNAME, NS, PTR, QTYPE, RR, SOA, SRV, A

    rdata: Any
    if r.rtype == "A":
        rdata = A(r.value)
    elif r.rtype == "SRV":
        prio, weight, port, target = r.value
        rdata = SRV(priority=prio, weight=weight, port=port, target=target + ".")
    elif r.rtype == "PTR":
        rdata = PTR(r.value + ".")
    elif r.rtype == "CNAME":
        rdata = CNAME(r.value + ".")
    elif r.rtype == "NS":
        rdata = NS(r.value + ".")
    elif r.rtype == "SOA":
        mname, rname, serial, refresh, retry, expire, minimum = r.value
        rdata = SOA(mname + ".", rname + ".", (serial, refresh, retry, expire, minimum))
    else:
        raise ValueError(r.rtype)
    return RR(r.name + ".", getattr(QTYPE, r.rtype), rdata=rdata, ttl=r.ttl)


# -- watching the apiserver ------------------------------------------------------
WATCHED = {
    "services": "/api/v1/services",
    "endpointslices": "/apis/discovery.k8s.io/v1/endpointslices",
}


def watch_forever(client, index: Index, kind: str, stop: threading.Event,
                  on_error: Callable[[Exception], None] | None = None) -> None:
    """List, then watch ``kind`` into ``index``; re-list on 410 Gone or any failure."""
    from .kube import list_watch

    services = kind == "services"
    list_watch(client, WATCHED[kind], stop, lambda items: index.replace_all(kind, items),
               index.set_service if services else index.set_slice,
               index.delete_service if services else index.delete_slice, kind, on_error)


# -- main ----------------------------------------------------------------------------
def _parse_hostport(s: str, default_port: int = 53) -> tuple[str, int]:
    if s.startswith("["):
        host, _, port = s[1:].partition("]:")
        return host, int(port or default_port)
    host, sep, port = s.rpartition(":")
    if not sep:
        return s, default_port
    return host, int(port)


def _upstreams(spec: str) -> list[tuple[str, int]]:
    if spec == "none":
        return []
    if spec != "auto":
        return [_parse_hostport(x) for x in spec.split(",") if x]
    out = []
    try:
        for line in Path("/etc/resolv.conf").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "nameserver":
                out.append((parts[1], 53))
    except OSError:
        pass
    return out


EDNS_UDP_SIZE = 1232  # the DNS flag day 2020 recommendation


def _handler_class():
    """dnslib's handler, with UDP size limits done properly.

    dnslib never truncates by default, and its own truncation drops the
    question section (which glibc then ignores). Here: the limit is 512 bytes,
    or the client's EDNS buffer size (at most 1232); an over-long UDP answer is
    replaced by header + question with TC set, so the client retries over TCP.
    """
    from dnslib import EDNS0, QTYPE, DNSRecord
    from dnslib.server import DNSHandler

    class Handler(DNSHandler):
        def get_reply(self, data):
            request = DNSRecord.parse(data)
            reply = self.server.resolver.resolve(request, self)
            if self.protocol != "udp":
                return reply.pack()
            limit = 512
            opt = [r for r in request.ar if r.rtype == QTYPE.OPT]
            if opt:
                limit = max(512, min(int(opt[0].rclass), EDNS_UDP_SIZE))
                if not any(r.rtype == QTYPE.OPT for r in reply.ar):
                    reply.add_ar(EDNS0(udp_len=EDNS_UDP_SIZE))
            rdata = reply.pack()
            if len(rdata) > limit:
                short = DNSRecord(header=reply.header, q=request.q)
                short.header.tc = 1
                rdata = short.pack()
            return rdata

    return Handler


def serve(index: Index, host: str, port: int, upstream: list[tuple[str, int]],
          bind_timeout: float = 60.0) -> list:
    """Start UDP and TCP servers (threads); retries while the address does not exist yet."""
    from dnslib.server import DNSLogger, DNSServer

    resolver = Resolver(index, upstream)
    quiet = DNSLogger("-request,-reply,-truncated,-data,-recv,-send,-error", prefix=False)
    handler = _handler_class()
    deadline = time.monotonic() + bind_timeout
    while True:
        try:
            servers = [DNSServer(resolver, address=host, port=port, tcp=tcp, logger=quiet, handler=handler)
                       for tcp in (False, True)]
            break
        except OSError as e:
            if time.monotonic() > deadline:
                raise
            log.warning("cannot bind %s:%s yet (%s); retrying", host, port, e)
            time.sleep(1.0)
    for s in servers:
        s.start_thread()
    return servers


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m devcluster.dns", description="devcluster cluster DNS")
    p.add_argument("--state-dir", type=Path, default=None)
    p.add_argument("--listen", default=f"{BRIDGE_IP}:53")
    p.add_argument("--kubeconfig", type=Path, default=None,
                   help="default: the state's kubeconfigs/dns.kubeconfig")
    p.add_argument("--domain", default=CLUSTER_DOMAIN)
    p.add_argument("--upstream", default="auto",
                   help="'auto' (the host's /etc/resolv.conf), 'none' (REFUSED), or host[:port],...")
    p.add_argument("-v", "--verbose", action="store_true")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if a.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    state = State(a.state_dir.resolve()) if a.state_dir else State.default()
    from .kube import Client

    client = Client.from_kubeconfig(a.kubeconfig or state.component_kubeconfig("dns"))
    index = Index(a.domain)
    stop = threading.Event()
    threads = [threading.Thread(target=watch_forever, args=(client, index, kind, stop), daemon=True,
                                name=f"watch-{kind}") for kind in WATCHED]
    for t in threads:
        t.start()
    host, port = _parse_hostport(a.listen)
    upstream = [u for u in _upstreams(a.upstream) if u != (host, port)]
    serve(index, host, port, upstream)
    log.info("serving %s on %s:%d (udp+tcp), upstream %s", a.domain, host, port, upstream or "none")
    import signal

    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
