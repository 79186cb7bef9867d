from kubelab.core import manifests as m
from kubelab.core import resource_groups as rg


def test_namespace_is_labelled_as_a_user_namespace():
    ns = m.namespace("kubelab-alice", "alice", annotations={"a": "b"})
    labels = ns["metadata"]["labels"]
    assert labels["kubelab.io/user-namespace"] == "true"
    assert labels["kubelab.io/user"] == "alice"
    assert ns["metadata"]["annotations"] == {"a": "b"}


def test_user_label_is_slugged_for_odd_user_names():
    ns = m.namespace("kubelab-x", "Alice@Example.org")
    assert ns["metadata"]["labels"]["kubelab.io/user"].startswith("alice-example-org---")


def test_quota_includes_gpu_limit_per_group_and_explicit_values_win():
    groups = rg.parse(rg.DEFAULT_GROUPS)
    q = m.resource_quota("ns", "alice", {"requests.cpu": "4", "pods": 10}, groups)
    assert q["spec"]["hard"] == {"requests.nvidia.com/gpu": "2", "requests.cpu": "4", "pods": "10"}
    q0 = m.resource_quota("ns", "alice", {"requests.nvidia.com/gpu": "0"}, groups)
    assert q0["spec"]["hard"]["requests.nvidia.com/gpu"] == "0"


def test_role_is_namespaced_and_binds_only_the_user_service_account():
    r = m.role("kubelab-alice", "alice")
    assert r["kind"] == "Role" and r["metadata"]["namespace"] == "kubelab-alice"
    verbs = {v for rule in r["rules"] for v in rule["verbs"]}
    assert "escalate" not in verbs and "bind" not in verbs and "impersonate" not in verbs
    assert not any("namespaces" in rule["resources"] or "nodes" in rule["resources"] for rule in r["rules"])
    rb = m.role_binding("kubelab-alice", "alice")
    assert rb["subjects"] == [{"kind": "ServiceAccount", "name": "kubelab-user", "namespace": "kubelab-alice"}]
    assert rb["roleRef"]["kind"] == "Role"


def test_network_policy_allows_same_namespace_and_hub_only():
    np = m.network_policy("kubelab-alice", "alice", "jhub", {"component": "proxy"})
    peers = np["spec"]["ingress"][0]["from"]
    assert {"podSelector": {}} in peers
    hub = [p for p in peers if "namespaceSelector" in p][0]
    assert hub["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "jhub"}
    assert hub["podSelector"]["matchLabels"] == {"component": "proxy"}
    assert np["spec"]["policyTypes"] == ["Ingress", "Egress"]


def test_network_policy_egress_is_open_but_the_metadata_endpoint():
    np = m.network_policy("kubelab-alice", "alice", "jhub")
    (rule,) = np["spec"]["egress"]
    assert {"namespaceSelector": {}} in rule["to"]
    blocks = {p["ipBlock"]["cidr"]: p["ipBlock"].get("except") for p in rule["to"] if "ipBlock" in p}
    assert blocks == {"0.0.0.0/0": ["169.254.169.254/32"], "::/0": ["fd00:ec2::254/128"]}
    open_egress = m.network_policy("kubelab-alice", "alice", "jhub", egress_deny=())
    assert open_egress["spec"]["policyTypes"] == ["Ingress"] and "egress" not in open_egress["spec"]


def test_limit_range_sets_defaults():
    lr = m.limit_range("ns", "u", {"cpu": "1", "memory": "1Gi"}, {"cpu": "100m", "memory": "128Mi"})
    item = lr["spec"]["limits"][0]
    assert item["type"] == "Container" and item["defaultRequest"]["cpu"] == "100m" and "max" not in item


def test_s3_secret_carries_the_keys_also_as_a_shared_credentials_file():
    import configparser

    creds = {"AccessKeyId": "AK", "SecretAccessKey": "SK", "SessionToken": "TOK", "Expiration": "2026-11-24T00:00:00+00:00"}
    sec = m.s3_credentials_secret("kubelab-alice", "alice", creds, "http://s3:9000", "kubelab")
    data = sec["stringData"]
    assert (data["AWS_ACCESS_KEY_ID"], data["AWS_SESSION_TOKEN"], data["KUBELAB_S3_BUCKET"]) == ("AK", "TOK", "kubelab")
    ini = configparser.ConfigParser()
    ini.read_string(data["credentials"])  # what boto3 reads through AWS_SHARED_CREDENTIALS_FILE
    assert dict(ini["default"]) == {"aws_access_key_id": "AK", "aws_secret_access_key": "SK",
                                    "aws_session_token": "TOK"}
