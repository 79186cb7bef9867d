"""devcluster's NetworkPolicy agent, the pure part: policies + pods + namespaces -> rules."""
from __future__ import annotations

from kubelab.core import manifests
from devcluster import netpol
from devcluster.netpol import Allow, allowed, compute, render


def ns(name: str, **labels: str) -> dict:
    return {"metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name, **labels}}}


def pod(namespace: str, name: str, ip: str | None, labels: dict | None = None, ports: list | None = None,
        phase: str = "Running", host_network: bool = False) -> dict:
    return {"metadata": {"namespace": namespace, "name": name, "labels": labels or {}},
            "spec": {"hostNetwork": host_network, "containers": [{"name": "c", "ports": ports or []}]},
            "status": {"phase": phase, "podIP": ip, "podIPs": [{"ip": ip}] if ip else []}}


def policy(namespace: str, name: str, spec: dict) -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"namespace": namespace, "name": name}, "spec": spec}


NAMESPACES = [ns("a", team="x"), ns("b", team="y"), ns("hub")]
PODS = [
    pod("a", "web", "10.244.1.10", {"app": "web"}, [{"name": "http", "containerPort": 8080}]),
    pod("a", "client", "10.244.1.11", {"app": "client"}),
    pod("b", "web", "10.244.2.10", {"app": "web"}, [{"name": "http", "containerPort": 9090}]),
    pod("b", "client", "10.244.2.11", {"app": "client"}),
    pod("hub", "proxy", "10.244.1.20", {"component": "proxy"}),
    pod("hub", "other", "10.244.1.21", {"component": "other"}),
]
A_WEB, A_CLI, B_WEB, B_CLI, HUB_PROXY, HUB_OTHER = (p["status"]["podIP"] for p in PODS)


def test_no_policy_means_no_isolation():
    rules = compute([], PODS, NAMESPACES)
    assert rules == []
    assert allowed(rules, B_CLI, A_WEB, 8080)


def test_kubelab_spawner_policy():
    pol = manifests.network_policy("a", "alice", "hub")
    rules = compute([pol], PODS, NAMESPACES)
    assert {(r.namespace, r.name) for r in rules} == {("a", "web"), ("a", "client")}
    assert allowed(rules, A_CLI, A_WEB, 8080)
    assert allowed(rules, A_WEB, A_WEB, 8080)   # a pod to itself (hairpin through its Service)
    assert allowed(rules, HUB_PROXY, A_WEB, 8080) and allowed(rules, HUB_OTHER, A_WEB, 1234, "UDP")
    assert not allowed(rules, B_CLI, A_WEB, 8080)
    assert not allowed(rules, B_WEB, A_CLI, 22)
    assert allowed(rules, A_CLI, B_WEB, 9090)   # b has no policy
    assert allowed(rules, netpol.BRIDGE_IP, A_WEB, 8080)   # the node


def test_kubelab_policy_with_hub_pod_labels():
    pol = manifests.network_policy("a", "alice", "hub", {"component": "proxy"})
    rules = compute([pol], PODS, NAMESPACES)
    assert allowed(rules, HUB_PROXY, A_WEB, 8080)
    assert not allowed(rules, HUB_OTHER, A_WEB, 8080)


def test_empty_ingress_list_denies_all_and_empty_from_allows_all():
    deny = policy("a", "deny", {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"]})
    rules = compute([deny], PODS, NAMESPACES)
    assert [r.name for r in rules] == ["web"] and rules[0].allows == ()
    assert not allowed(rules, A_CLI, A_WEB, 8080)
    assert allowed(rules, B_CLI, A_CLI, 8080)   # not selected
    allow_all = policy("a", "all", {"podSelector": {}, "ingress": [{}]})
    rules = compute([deny, allow_all], PODS, NAMESPACES)
    assert allowed(rules, B_CLI, A_WEB, 8080)
    assert {r.name: r.allows for r in rules}["web"] == (Allow(),)
    rules = compute([policy("a", "all2", {"podSelector": {}, "ingress": [{"from": []}]})], PODS, NAMESPACES)
    assert allowed(rules, B_CLI, A_WEB, 1, "UDP")


def test_egress_only_policy_is_ignored_but_missing_policy_types_means_ingress():
    egress = policy("a", "eg", {"podSelector": {}, "policyTypes": ["Egress"], "egress": []})
    assert compute([egress], PODS, NAMESPACES) == []
    implicit = policy("a", "imp", {"podSelector": {}})
    rules = compute([implicit], PODS, NAMESPACES)
    assert len(rules) == 2 and not allowed(rules, A_CLI, A_WEB, 8080)


def test_policy_only_selects_pods_of_its_own_namespace():
    pol = policy("b", "deny", {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": []})
    rules = compute([pol], PODS, NAMESPACES)
    assert {r.namespace for r in rules} == {"b"}
    assert allowed(rules, B_CLI, A_WEB, 8080) and not allowed(rules, A_CLI, B_WEB, 9090)


def test_pod_selector_peer_is_same_namespace_only():
    pol = policy("a", "p", {"podSelector": {"matchLabels": {"app": "web"}},
                            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}]}]})
    rules = compute([pol], PODS, NAMESPACES)
    assert allowed(rules, A_CLI, A_WEB, 8080)
    assert not allowed(rules, B_CLI, A_WEB, 8080)   # same labels, other namespace


def test_namespace_selector_with_and_without_pod_selector():
    only_ns = policy("a", "n", {"podSelector": {}, "ingress": [{"from": [
        {"namespaceSelector": {"matchLabels": {"team": "y"}}}]}]})
    rules = compute([only_ns], PODS, NAMESPACES)
    assert allowed(rules, B_CLI, A_WEB, 8080) and allowed(rules, B_WEB, A_WEB, 8080)
    assert not allowed(rules, A_CLI, A_WEB, 8080) and not allowed(rules, HUB_PROXY, A_WEB, 8080)
    both = policy("a", "nb", {"podSelector": {}, "ingress": [{"from": [
        {"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "In", "values": ["y"]}]},
         "podSelector": {"matchLabels": {"app": "client"}}}]}]})
    rules = compute([both], PODS, NAMESPACES)
    assert allowed(rules, B_CLI, A_WEB, 8080) and not allowed(rules, B_WEB, A_WEB, 8080)
    all_ns = policy("a", "all", {"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {}}]}]})
    rules = compute([all_ns], PODS, NAMESPACES)
    assert all(allowed(rules, s, A_WEB, 8080) for s in (A_CLI, B_CLI, HUB_OTHER))
    assert not allowed(rules, "192.168.1.1", A_WEB, 8080)   # not a pod


def test_match_expressions_operators():
    m = netpol.selector_matches
    labels = {"app": "web", "tier": "front"}
    assert m({}, labels) and m({}, {}) and not m(None, labels)
    assert m({"matchExpressions": [{"key": "app", "operator": "Exists"}]}, labels)
    assert not m({"matchExpressions": [{"key": "x", "operator": "Exists"}]}, labels)
    assert m({"matchExpressions": [{"key": "x", "operator": "DoesNotExist"}]}, labels)
    assert m({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["db"]}]}, labels)
    assert m({"matchExpressions": [{"key": "x", "operator": "NotIn", "values": ["db"]}]}, labels)
    assert not m({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["web"]}]}, labels)
    assert not m({"matchLabels": {"app": "web"}, "matchExpressions": [
        {"key": "tier", "operator": "In", "values": ["back"]}]}, labels)


def test_ip_block_with_except():
    pol = policy("a", "ip", {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{"from": [
        {"ipBlock": {"cidr": "10.244.0.0/16", "except": ["10.244.2.0/24"]}}]}]})
    rules = compute([pol], PODS, NAMESPACES)
    assert allowed(rules, A_CLI, A_WEB, 8080) and allowed(rules, HUB_PROXY, A_WEB, 8080)
    assert not allowed(rules, B_CLI, A_WEB, 8080)
    assert netpol._ipblock_cidrs({"cidr": "10.0.0.0/8", "except": ["10.0.0.0/8"]}) == []
    assert netpol._ipblock_cidrs({"cidr": "fd00::/8"}) == []
    assert netpol._ipblock_cidrs({"cidr": "10.1.0.0/16", "except": ["192.168.0.0/16"]}) == ["10.1.0.0/16"]


def test_ports_numbers_ranges_protocols_and_named_ports():
    pol = policy("a", "ports", {"podSelector": {}, "ingress": [
        {"ports": [{"port": "http"}, {"port": 53, "protocol": "UDP"}, {"port": 7000, "endPort": 7010}]},
        {"from": [{"podSelector": {"matchLabels": {"app": "client"}}}], "ports": [{"protocol": "SCTP"}]},
    ]})
    rules = compute([pol], PODS, NAMESPACES)
    assert allowed(rules, B_CLI, A_WEB, 8080)             # "http" is 8080 on a/web
    assert not allowed(rules, B_CLI, A_WEB, 8080, "UDP")
    assert not allowed(rules, B_CLI, A_CLI, 8080)         # a/client has no port named http
    assert allowed(rules, B_CLI, A_CLI, 53, "UDP") and not allowed(rules, B_CLI, A_CLI, 53)
    assert allowed(rules, B_CLI, A_WEB, 7005) and not allowed(rules, B_CLI, A_WEB, 7011)
    assert allowed(rules, A_CLI, A_WEB, 5, "SCTP") and not allowed(rules, B_CLI, A_WEB, 5, "SCTP")


def test_named_port_with_no_match_allows_nothing():
    pol = policy("a", "named", {"podSelector": {"matchLabels": {"app": "client"}},
                                "ingress": [{"ports": [{"port": "http"}]}]})
    rules = compute([pol], PODS, NAMESPACES)
    assert rules[0].allows == ()


def test_policies_are_additive():
    p1 = policy("a", "one", {"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]})
    p2 = policy("a", "two", {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{"from": [
        {"namespaceSelector": {"matchLabels": {"team": "y"}}}], "ports": [{"port": 8080}]}]})
    rules = compute([p1, p2], PODS, NAMESPACES)
    assert allowed(rules, A_CLI, A_WEB, 8080) and allowed(rules, B_CLI, A_WEB, 8080)
    assert not allowed(rules, B_CLI, A_WEB, 8081) and not allowed(rules, B_CLI, A_CLI, 8080)
    assert {r.name: r.policies for r in rules}["web"] == ("one", "two")


def test_finished_host_network_and_ipless_pods():
    pods = PODS + [pod("b", "done", "10.244.2.50", {"app": "client"}, phase="Succeeded"),
                   pod("b", "hostnet", "10.244.0.1", {"app": "client"}, host_network=True),
                   pod("a", "pending", None)]
    pol = policy("a", "n", {"podSelector": {}, "ingress": [{"from": [
        {"namespaceSelector": {"matchLabels": {"team": "y"}}, "podSelector": {"matchLabels": {"app": "client"}}}]}]})
    rules = compute([pol], pods, NAMESPACES)
    srcs = {a.src for r in rules for a in r.allows}
    assert srcs == {f"{B_CLI}/32"}
    assert "pending" not in {r.name for r in rules}


def test_namespace_name_label_is_implied():
    pol = manifests.network_policy("a", "alice", "hub")
    rules = compute([pol], PODS, [{"metadata": {"name": "a"}}, {"metadata": {"name": "hub"}}])
    assert allowed(rules, HUB_OTHER, A_WEB, 8080)


def test_render_iptables_restore_text():
    pol = policy("a", "p", {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [
        {"from": [{"podSelector": {}}],
         "ports": [{"port": 8080}, {"port": 7000, "endPort": 7010, "protocol": "UDP"}]}]})
    rules = compute([pol], PODS, NAMESPACES)
    chain = netpol.pod_chain("a", "web")
    assert len(chain) <= 28 and chain.startswith("KUBELAB-NP-") and chain != netpol.pod_chain("a", "client")
    stale = netpol.pod_chain("gone", "pod")
    text = render(rules, ["KUBELAB-NETPOL", chain, stale])
    lines = text.splitlines()
    assert lines[0] == "*filter" and lines[-1] == "COMMIT"
    assert lines[1] == ":KUBELAB-NETPOL - [0:0]"
    assert f":{chain} - [0:0]" in lines and f":{stale} - [0:0]" in lines
    assert lines[-2] == f"-X {stale}" and f"-X {chain}" not in lines
    assert "-A KUBELAB-NETPOL -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT" == lines[lines.index(
        f":{stale} - [0:0]") + 1]
    assert any(line.startswith(f"-A KUBELAB-NETPOL -d {A_WEB}/32 ") and line.endswith(f"-j {chain}")
               for line in lines)
    body = [line for line in lines if line.startswith(f"-A {chain} ")]
    assert f"-A {chain} -s {A_CLI}/32 -p tcp -m tcp --dport 8080 -j ACCEPT" in body
    assert f"-A {chain} -s {A_WEB}/32 -p udp -m udp --dport 7000:7010 -j ACCEPT" in body
    assert body[-1].endswith("-j DROP") and '"a/web isolated by p"' in body[-1]
    assert render(rules, []) == render(list(reversed(rules)), [])   # deterministic


def test_render_nothing_isolated():
    text = render([], [])
    assert text.splitlines() == ["*filter", ":KUBELAB-NETPOL - [0:0]",
                                 "-A KUBELAB-NETPOL -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
                                 '-A KUBELAB-NETPOL -s 10.244.0.1/32 -m comment --comment "the node" -j ACCEPT',
                                 "COMMIT"]


def test_allow_any_covers_narrower_rules():
    pol = policy("a", "p", {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [
        {"from": [{"podSelector": {}}], "ports": [{"port": 8080}]}, {}]})
    rules = compute([pol], PODS, NAMESPACES)
    assert rules[0].allows == (Allow(),)


def test_store_ignores_irrelevant_pod_changes():
    store = netpol.Store()
    p = pod("a", "web", "10.244.1.10", {"app": "web"})
    store.set("pods", p)
    assert store.changed.is_set()
    store.changed.clear()
    p2 = {**p, "status": {**p["status"], "conditions": [{"type": "Ready", "status": "True"}]}}
    store.set("pods", p2)
    assert not store.changed.is_set()
    store.delete("pods", p2)
    assert store.changed.is_set() and store.snapshot()[1] == []


def test_rbac_for_the_netpol_identity():
    role, binding = netpol.rbac_manifests()
    res = {(g, r) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]
           if {"list", "watch"} <= set(rule["verbs"])}
    assert {("", "pods"), ("", "namespaces"), ("networking.k8s.io", "networkpolicies")} <= res
    assert binding["subjects"][0]["name"] == "system:devcluster:netpol"
