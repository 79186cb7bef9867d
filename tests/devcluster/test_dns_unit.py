"""devcluster DNS: name resolution against an in-memory index (no cluster needed)."""
from __future__ import annotations

import socket
import time

import pytest
from dnslib import QTYPE, RCODE, DNSRecord

from devcluster import dns


def svc(name, ns="default", cluster_ip="10.96.3.4", ports=(("http", 80, "TCP"),), **spec):
    s = {"clusterIP": cluster_ip, "ports": [{"name": n, "port": p, "protocol": pr} for n, p, pr in ports]}
    if cluster_ip not in (None, "None"):
        s["clusterIPs"] = [cluster_ip]
    s.update(spec)
    return {"metadata": {"name": name, "namespace": ns}, "spec": s}


def eps(name, service, endpoints, ns="default", ports=(("http", 8080, "TCP"),), address_type="IPv4"):
    return {
        "metadata": {"name": name, "namespace": ns, "labels": {dns.SERVICE_NAME_LABEL: service}},
        "addressType": address_type,
        "endpoints": [
            {"addresses": [ip], **({"hostname": host} if host else {}),
             **({"conditions": {"ready": ready}} if ready is not None else {})}
            for ip, host, ready in endpoints
        ],
        "ports": [{"name": n, "port": p, "protocol": pr} for n, p, pr in ports],
    }


@pytest.fixture
def index():
    ix = dns.Index("cluster.local")
    ix.replace_all("services", [
        svc("web", cluster_ip="10.96.3.4", ports=(("http", 80, "TCP"), ("metrics", 9090, "TCP"), ("", 81, "TCP"))),
        svc("train", ns="team-a", cluster_ip="None", ports=(("rdzv", 29500, "TCP"),)),
        svc("late", ns="team-a", cluster_ip="None", publishNotReadyAddresses=True),
        svc("ext", type="ExternalName", cluster_ip=None, externalName="example.org."),
        svc("kube-dns", ns="kube-system", cluster_ip="10.96.0.10", ports=(("dns", 53, "UDP"), ("dns-tcp", 53, "TCP"))),
    ])
    ix.replace_all("endpointslices", [
        eps("web-abc", "web", [("10.244.1.5", None, True)]),
        eps("train-1", "train", [("10.244.1.7", "train-0", True), ("10.244.2.9", "train-1", None),
                                 ("10.244.1.8", "train-2", False), ("10.244.1.6", None, True)],
            ns="team-a", ports=(("rdzv", 29500, "TCP"),)),
        eps("late-1", "late", [("10.244.1.20", "l-0", False)], ns="team-a"),
        eps("v6", "train", [("fd00::5", "v6", True)], ns="team-a", address_type="IPv6"),
    ])
    return ix


def values(ans, rtype=None):
    return sorted(str(r.value) for r in ans.answers if rtype is None or r.rtype == rtype)


def test_cluster_ip_service(index):
    ans = index.resolve("web.default.svc.cluster.local.", "A")
    assert ans.rcode == "NOERROR" and values(ans) == ["10.96.3.4"]
    assert index.resolve("WEB.Default.SVC.cluster.local", "A").answers[0].value == "10.96.3.4"
    assert values(index.resolve("kube-dns.kube-system.svc.cluster.local", "A")) == ["10.96.0.10"]


def test_headless_service_returns_ready_endpoints(index):
    ans = index.resolve("train.team-a.svc.cluster.local", "A")
    # ready unset counts as ready; not-ready and IPv6 slices are left out
    assert values(ans) == ["10.244.1.6", "10.244.1.7", "10.244.2.9"]


def test_publish_not_ready_addresses(index):
    assert values(index.resolve("late.team-a.svc.cluster.local", "A")) == ["10.244.1.20"]
    assert values(index.resolve("l-0.late.team-a.svc.cluster.local", "A")) == ["10.244.1.20"]


def test_endpoint_hostnames_for_indexed_jobs(index):
    assert values(index.resolve("train-0.train.team-a.svc.cluster.local", "A")) == ["10.244.1.7"]
    assert values(index.resolve("train-1.train.team-a.svc.cluster.local", "A")) == ["10.244.2.9"]
    # not ready: unknown
    assert index.resolve("train-2.train.team-a.svc.cluster.local", "A").rcode == "NXDOMAIN"
    # an endpoint without a hostname is named by its dashed address
    assert values(index.resolve("10-244-1-6.train.team-a.svc.cluster.local", "A")) == ["10.244.1.6"]
    # a ClusterIP service has no per-endpoint names
    assert index.resolve("x.web.default.svc.cluster.local", "A").rcode == "NXDOMAIN"


def test_srv_for_named_ports(index):
    ans = index.resolve("_http._tcp.web.default.svc.cluster.local", "SRV")
    assert [r.value for r in ans.answers] == [(0, 100, 80, "web.default.svc.cluster.local")]
    assert [(r.name, r.value) for r in ans.additional] == [("web.default.svc.cluster.local", "10.96.3.4")]
    assert index.resolve("_http._udp.web.default.svc.cluster.local", "SRV").rcode == "NXDOMAIN"
    assert index.resolve("_nope._tcp.web.default.svc.cluster.local", "SRV").rcode == "NXDOMAIN"
    every = index.resolve("web.default.svc.cluster.local", "SRV")
    assert sorted(r.value[2] for r in every.answers) == [80, 9090]  # unnamed port 81 has no SRV
    udp = index.resolve("_dns._udp.kube-dns.kube-system.svc.cluster.local", "SRV")
    assert [r.value[2] for r in udp.answers] == [53]


def test_srv_headless_points_at_each_endpoint(index):
    ans = index.resolve("_rdzv._tcp.train.team-a.svc.cluster.local", "SRV")
    targets = sorted((r.value[3], r.value[2]) for r in ans.answers)
    assert targets == [
        ("10-244-1-6.train.team-a.svc.cluster.local", 29500),
        ("train-0.train.team-a.svc.cluster.local", 29500),
        ("train-1.train.team-a.svc.cluster.local", 29500),
    ]
    assert sorted((r.name, r.value) for r in ans.additional)[1] == (
        "train-0.train.team-a.svc.cluster.local", "10.244.1.7")


def test_nxdomain_and_nodata(index):
    for name in ("nope.default.svc.cluster.local", "web.other.svc.cluster.local", "a.b.c.d.cluster.local",
                 "foo.cluster.local", "web.default.svc.cluster.local.default.svc.cluster.local"):
        ans = index.resolve(name, "A")
        assert ans.rcode == "NXDOMAIN", name
        assert ans.authority and ans.authority[0].rtype == "SOA"
    # existing name, no record of that type: NOERROR with no answers
    for name, qtype in (("web.default.svc.cluster.local", "AAAA"), ("default.svc.cluster.local", "A"),
                        ("svc.cluster.local", "A"), ("cluster.local", "A")):
        ans = index.resolve(name, qtype)
        assert (ans.rcode, ans.answers) == ("NOERROR", []), name
    assert index.resolve("cluster.local", "SOA").answers[0].rtype == "SOA"


def test_names_outside_the_cluster_are_not_ours(index):
    assert index.resolve("pypi.org", "A") is None
    assert index.resolve("cluster.local.example.com", "A") is None
    assert index.resolve("notcluster.local", "A") is None


def test_external_name_and_pod_names(index):
    ans = index.resolve("ext.default.svc.cluster.local", "A")
    assert [(r.rtype, r.value) for r in ans.answers] == [("CNAME", "example.org")]
    assert values(index.resolve("10-244-1-5.default.pod.cluster.local", "A")) == ["10.244.1.5"]
    assert index.resolve("not-an-ip.default.pod.cluster.local", "A").rcode == "NXDOMAIN"


def test_ptr(index):
    assert values(index.resolve("4.3.96.10.in-addr.arpa", "PTR")) == ["web.default.svc.cluster.local"]
    assert values(index.resolve("7.1.244.10.in-addr.arpa", "PTR")) == ["train-0.train.team-a.svc.cluster.local"]
    assert index.resolve("99.99.96.10.in-addr.arpa", "PTR").rcode == "NXDOMAIN"
    assert index.resolve("1.1.168.192.in-addr.arpa", "PTR") is None


def test_watch_events_update_the_index(index):
    index.set_service(svc("new", ns="team-b", cluster_ip="10.96.9.9"))
    assert values(index.resolve("new.team-b.svc.cluster.local", "A")) == ["10.96.9.9"]
    index.delete_service({"metadata": {"name": "new", "namespace": "team-b"}})
    assert index.resolve("new.team-b.svc.cluster.local", "A").rcode == "NXDOMAIN"
    index.set_slice(eps("train-1", "train", [("10.244.1.50", "train-0", True)], ns="team-a"))
    assert values(index.resolve("train.team-a.svc.cluster.local", "A")) == ["10.244.1.50"]
    index.delete_slice({"metadata": {"name": "train-1", "namespace": "team-a"}})
    ans = index.resolve("train.team-a.svc.cluster.local", "A")
    assert (ans.rcode, ans.answers) == ("NOERROR", [])


# -- the DNS protocol layer -------------------------------------------------------------
def ask(resolver, name, qtype="A"):
    req = DNSRecord.question(name, qtype)
    return DNSRecord.parse(resolver.resolve(DNSRecord.parse(req.pack())).pack())


def test_resolver_wire_format(index):
    r = dns.Resolver(index, upstream=[])
    reply = ask(r, "web.default.svc.cluster.local")
    assert reply.header.rcode == RCODE.NOERROR and reply.header.aa == 1
    assert [str(rr.rdata) for rr in reply.rr] == ["10.96.3.4"]
    srv = ask(r, "_rdzv._tcp.train.team-a.svc.cluster.local", "SRV")
    assert len(srv.rr) == 3 and all(rr.rtype == QTYPE.SRV for rr in srv.rr)
    assert len(srv.ar) == 3
    nx = ask(r, "nope.default.svc.cluster.local")
    assert nx.header.rcode == RCODE.NXDOMAIN and nx.auth[0].rtype == QTYPE.SOA
    assert ask(r, "pypi.org").header.rcode == RCODE.REFUSED


def test_resolver_servfail_before_sync_and_when_upstream_is_dead():
    ix = dns.Index()
    r = dns.Resolver(ix, upstream=[("127.0.0.1", 9)], upstream_timeout=0.5)
    assert ask(r, "web.default.svc.cluster.local").header.rcode == RCODE.SERVFAIL
    t0 = time.monotonic()
    assert ask(r, "pypi.org").header.rcode == RCODE.SERVFAIL
    assert time.monotonic() - t0 < 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_udp_and_tcp_server(index):
    port = _free_port()
    servers = dns.serve(index, "127.0.0.1", port, upstream=[], bind_timeout=5)
    try:
        for tcp in (False, True):
            q = DNSRecord.question("train-1.train.team-a.svc.cluster.local", "A")
            reply = DNSRecord.parse(q.send("127.0.0.1", port, tcp=tcp, timeout=5))
            assert [str(rr.rdata) for rr in reply.rr] == ["10.244.2.9"], tcp
            q = DNSRecord.question("example.com", "A")
            assert DNSRecord.parse(q.send("127.0.0.1", port, tcp=tcp, timeout=5)).header.rcode == RCODE.REFUSED
    finally:
        for s in servers:
            s.stop()
            s.server.server_close()


def test_manifests():
    svc_obj, slice_obj = dns.dns_service_manifests()
    assert svc_obj["spec"]["clusterIP"] == "10.96.0.10" and "selector" not in svc_obj["spec"]
    assert {(p["port"], p["protocol"]) for p in svc_obj["spec"]["ports"]} == {(53, "UDP"), (53, "TCP")}
    assert slice_obj["metadata"]["labels"][dns.SERVICE_NAME_LABEL] == "kube-dns"
    assert slice_obj["endpoints"][0]["addresses"] == ["10.244.0.1"]
    assert {p["name"] for p in slice_obj["ports"]} == {p["name"] for p in svc_obj["spec"]["ports"]}
    role, binding = dns.rbac_manifests()
    assert binding["subjects"][0]["name"] == "system:devcluster:dns"
    assert {"list", "watch"} <= set(role["rules"][1]["verbs"])


def test_large_udp_answers_are_truncated_with_the_question(index):
    from dnslib import EDNS0

    many = [(f"10.244.1.{i}", f"w-{i}", True) for i in range(10, 50)]  # 40 endpoints
    index.set_service(svc("big", ns="team-a", cluster_ip="None"))
    index.set_slice(eps("big-1", "big", many, ns="team-a"))
    port = _free_port()
    servers = dns.serve(index, "127.0.0.1", port, upstream=[], bind_timeout=5)
    name = "big.team-a.svc.cluster.local"
    try:
        plain = DNSRecord.parse(DNSRecord.question(name).send("127.0.0.1", port, timeout=5))
        assert plain.header.tc == 1 and str(plain.q.qname) == name + "." and not plain.rr
        q = DNSRecord.question(name)
        q.add_ar(EDNS0(udp_len=1232))
        edns = DNSRecord.parse(q.send("127.0.0.1", port, timeout=5))
        assert edns.header.tc == 0 and len(edns.rr) == 40
        over_tcp = DNSRecord.parse(DNSRecord.question(name).send("127.0.0.1", port, tcp=True, timeout=5))
        assert over_tcp.header.tc == 0 and len(over_tcp.rr) == 40
    finally:
        for s in servers:
            s.stop()
            s.server.server_close()
