"""Hub admin pages' JSON API end to end: the kubelab-admin service run by the real
hub on devcluster, users adm-* with real servers, quotas, GPUs and approvals."""
from __future__ import annotations

import json

import pytest

from tests.hub.conftest import ALICE, BOB, CAROL, Client, admin_service_up, assert_error, new_token, restart_hub
from tests.waiting import eventually

pytestmark = pytest.mark.e2e

DAVE = "adm-dave"  # no server: reconcile makes his namespace


def row_of(overview: dict, user: str) -> dict:
    rows = [r for r in overview["users"] if r["user"] == user]
    assert len(rows) == 1, [r["user"] for r in overview["users"]]
    return rows[0]


def test_admin_sees_both_users_quotas_storage_and_gpu_holders(admin, adm_users):
    overview = admin.ok("GET", "api/users")
    alice, bob = row_of(overview, ALICE), row_of(overview, BOB)
    assert alice["namespace"] == f"kubelab-{ALICE}" and bob["namespace"] == f"kubelab-{BOB}"
    assert alice["server"] == bob["server"] == "running" and alice["counts"]["servers"] == 1
    # quota used/hard per resource, from each namespace's ResourceQuota
    assert alice["quota"]["requests.nvidia.com/gpu"]["used"] == "1"
    assert alice["quota"]["requests.nvidia.com/gpu"]["hard"] == "2"
    assert bob["quota"]["requests.cpu"]["used"] == "0.5" and bob["quota"]["requests.cpu"]["hard"] == "4"
    assert bob["quota"].get("requests.nvidia.com/gpu", {}).get("used", "0") == "0"
    assert overview["totals"]["users"] >= 2 and overview["totals"]["servers"] >= 2

    groups = {g["name"]: g for g in admin.ok("GET", "api/resource-groups")["groups"]}
    a100 = groups["gpu-a100"]
    assert a100["gpus_allocatable"] == 4 and a100["gpus_allocated"] >= 1
    assert a100["gpus_free"] == a100["gpus_allocatable"] - a100["gpus_allocated"]
    holders = [h for h in a100["gpu_holders"] if h["user"] == ALICE]
    assert len(holders) == 1 and holders[0]["gpus"] == 1 and holders[0]["kind"] == "server", a100["gpu_holders"]
    assert holders[0]["node"] == "kubelab-gpu-0" and holders[0]["namespace"] == f"kubelab-{ALICE}"
    assert not [h for g in groups.values() for h in g["gpu_holders"] if h["user"] == BOB]

    storage = admin.ok("GET", f"api/users/{ALICE}/storage")
    assert storage["prefix"].endswith(f"/users/{ALICE}/") and storage["objects"] >= 1 and storage["bytes"] > 0


ADMIN_APIS = [
    ("GET", "api/users"), ("GET", f"api/users/{ALICE}/storage"), ("POST", f"api/users/{ALICE}/reconcile"),
    ("DELETE", f"api/users/{ALICE}/namespace"), ("GET", "api/resource-groups"), ("GET", "api/approvals"),
    ("POST", f"api/approvals/{CAROL}/gpu-a100-approval"), ("GET", "api/workloads"),
    ("POST", f"api/workloads/jobs/kubelab-{ALICE}/anything/stop"), ("GET", "api/events"), ("GET", "api/audit"),
]
PAGES = ["users", "groups", "approvals", "workloads", "events", "audit"]


def test_a_non_admin_gets_403_on_every_admin_page_and_api(admin_hub, adm_users, kubectl):
    bob = Client(admin_hub, new_token(admin_hub, BOB))
    for method, path in ADMIN_APIS:
        body = {"confirm": f"kubelab-{ALICE}"} if method == "DELETE" else {"decision": "approve"}
        assert_error(bob(method, path, json=body), 403, "not a hub admin")
    for page in PAGES:
        r = bob("GET", page)
        assert r.status_code == 403 and "not a hub admin" in r.text and 'id="jupyterhub-logo"' in r.text, page
        assert "adm-alice" not in r.text
    # nothing happened: alice's namespace is still there
    assert kubectl.json("get", "namespace", f"kubelab-{ALICE}")["status"]["phase"] == "Active"
    # without any token: 401 for the API, a redirect to the hub's login for pages
    anon = Client(admin_hub, None)
    assert_error(anon("GET", "api/users"), 401, "authentication required")
    r = anon("GET", "users")
    assert r.status_code == 302 and "/hub/api/oauth2/authorize" in r.headers["Location"]
    # the aggregated capacity is for every user: numbers, no user names
    cap = bob.ok("GET", "api/capacity")
    assert {g["name"] for g in cap["groups"]} >= {"cpu", "gpu-a100"}
    assert set(cap["groups"][0]) == {"name", "gpus_allocatable", "gpus_allocated", "gpus_free", "cpu_free",
                                     "memory_free"}
    assert "adm-" not in json.dumps(cap)


def test_a_users_server_token_reads_the_capacity(admin_hub, adm_users):
    """What JupyterLab's Resources panel does from inside the user's server."""
    out = admin_hub.execute(BOB, (
        "import os, urllib.request\n"
        "req = urllib.request.Request('http://10.244.0.1:10101/services/kubelab-admin/api/capacity',\n"
        "    headers={'Authorization': 'token ' + os.environ['JUPYTERHUB_API_TOKEN']})\n"
        "print(urllib.request.urlopen(req, timeout=30).read().decode())\n"))
    groups = {g["name"]: g for g in json.loads(out)["groups"]}
    assert groups["gpu-a100"]["gpus_allocatable"] == 4 and groups["gpu-a100"]["gpus_allocated"] >= 1


def test_approval_flow_from_request_to_denial_to_approval(admin_hub, admin, adm_users, kubectl):
    hub = admin_hub
    request = f"configmap/approval-{CAROL}-gpu-a100-approval"
    kubectl("-n", "kubelab-system", "delete", request, "--ignore-not-found")  # a decision left by an earlier run
    hub.ensure_user(CAROL)
    options = {"resource_group": "gpu-a100-approval", "gpus": "1"}
    r = hub.start(CAROL, options)
    assert r.status_code == 403 and "needs an administrator's approval" in r.json()["message"], r.text
    pending = [a for a in admin.ok("GET", "api/approvals")["approvals"] if a["user"] == CAROL]
    assert pending and pending[0]["status"] == "pending" and pending[0]["group"] == "gpu-a100-approval"

    path = f"api/approvals/{CAROL}/gpu-a100-approval"
    assert_error(admin("POST", path, json={"decision": "deny"}), 400, "needs a reason")
    assert_error(admin("POST", path, json={"decision": "maybe"}), 400, "approve")
    assert_error(admin("POST", path, json={"decision": "deny", "reason": "two\nlines"}), 400, "one line")
    assert_error(admin("POST", f"api/approvals/{CAROL}/cpu", json={"decision": "approve"}), 404, "cpu")
    assert_error(admin("POST", f"api/approvals/{DAVE}/gpu-a100-approval", json={"decision": "approve"}), 404)
    assert_error(admin("POST", path, data="{nope", headers={"Content-Type": "application/json"}), 400, "JSON")

    denied = admin.ok("POST", path, json={"decision": "deny", "reason": "no GPU budget this week"})
    assert denied["status"] == "denied" and denied["decided_by"] == "admin"
    r = hub.start(CAROL, options)
    assert r.status_code == 403 and "denied: no GPU budget this week" in r.json()["message"], r.text

    assert admin.ok("POST", path, json={"decision": "approve", "reason": "budget found"})["status"] == "approved"
    try:
        hub.spawn(CAROL, options)
        rows = [a for a in admin.ok("GET", "api/approvals")["approvals"] if a["user"] == CAROL]
        assert rows[0]["status"] == "approved" and rows[0]["decided_by"] == "admin"
        audit = admin.ok("GET", "api/audit", params={"limit": 50})["entries"]
        mine = [e for e in audit if e["target"] == f"user:{CAROL}"]
        assert [e["action"] for e in mine][:2] == ["approval.approve", "approval.deny"], mine
        assert mine[1]["details"]["reason"] == "no GPU budget this week"
    finally:
        hub.stop(CAROL)
        kubectl("-n", "kubelab-system", "delete", request, "--ignore-not-found")


def test_workloads_and_events_list_across_users_with_filters(admin, adm_users):
    all_rows = admin.ok("GET", "api/workloads")
    assert all_rows["total"] >= len(all_rows["workloads"])
    only_bob = admin.ok("GET", "api/workloads", params={"user": BOB})["workloads"]
    assert all(w["user"] == BOB for w in only_bob)
    schedules = admin.ok("GET", "api/workloads", params={"kind": "schedule"})["workloads"]
    assert all(w["kind"] == "schedule" for w in schedules)
    assert_error(admin("GET", "api/workloads", params={"kind": "pods"}), 400, "kind")
    assert_error(admin("GET", "api/workloads", params={"status": "a b"}), 400, "status")
    events = admin.ok("GET", "api/events")["events"]
    assert all(set(e) >= {"time", "namespace", "object", "reason", "message"} for e in events)
    assert [e["time"] for e in events] == sorted((e["time"] for e in events), reverse=True)


def test_reconcile_repairs_a_namespace_and_delete_needs_confirmation(admin_hub, admin, adm_users, kubectl):
    hub = admin_hub
    ns = f"kubelab-{BOB}"
    kubectl("-n", ns, "delete", "networkpolicy", "kubelab-isolation")
    done = admin.ok("POST", f"api/users/{BOB}/reconcile")
    assert done["namespace"] == ns and "NetworkPolicy" in done["applied"]
    assert "kubelab-isolation" in kubectl("-n", ns, "get", "networkpolicy", "-o", "name")

    assert_error(admin("DELETE", f"api/users/{BOB}/namespace", json={"confirm": "kubelab-someone"}), 400, ns)
    assert_error(admin("DELETE", f"api/users/{BOB}/namespace", json={"confirm": ns}), 409, "stop it first")
    assert kubectl.json("get", "namespace", ns)["status"]["phase"] == "Active"

    # a user without a server: reconcile creates the whole namespace, delete removes it
    hub.ensure_user(DAVE)
    try:
        made = admin.ok("POST", f"api/users/{DAVE}/reconcile")
        dns = made["namespace"]
        assert kubectl("-n", dns, "get", "resourcequota,limitrange,rolebinding", "-o", "name").count("/") == 3
        row = row_of(admin.ok("GET", "api/users"), DAVE)
        assert row["namespace"] == dns and row["quota"]["requests.cpu"]["used"] == "0"
        assert admin.ok("DELETE", f"api/users/{DAVE}/namespace", 202, json={"confirm": dns})["status"] == "Terminating"
        eventually(lambda: "NotFound" in kubectl("get", "namespace", dns, check=False), 180, 2,
                   what=f"{dns} deleted")
        assert_error(admin("DELETE", f"api/users/{DAVE}/namespace", json={"confirm": dns}), 404, "no namespace")
    finally:
        hub.delete_user(DAVE)
    assert_error(admin("POST", "api/users/no-such-user-x/reconcile"), 404, "no hub user")
    actions = [(e["action"], e["target"]) for e in admin.ok("GET", "api/audit")["entries"]]
    assert ("namespace.delete", f"namespace:kubelab-{DAVE}") in actions and ("reconcile", f"user:{BOB}") in actions


def test_audit_log_survives_a_hub_restart(admin_hub, admin, adm_users, devcluster):
    before = admin.ok("GET", "api/audit", params={"limit": 20})["entries"]
    assert before, "earlier tests recorded admin actions"
    restart_hub(devcluster)
    eventually(lambda: admin_service_up(admin_hub), 60, 1, what="kubelab-admin back")
    after = admin.ok("GET", "api/audit", params={"limit": 20})["entries"]
    assert after[: len(before)] == before
    assert_error(admin("GET", "api/audit", params={"limit": "lots"}), 400, "limit")
