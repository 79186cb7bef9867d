"""KubelabSpawner end to end: real JupyterHub, proxy and devcluster, driven through the hub REST API."""
from __future__ import annotations

import json
import os
import signal
import textwrap
import time
import uuid

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from devcluster import hub as devhub
from devcluster import procs
from tests.waiting import eventually

RUN = uuid.uuid4().hex[:5]


def ns_of(user: str) -> str:
    """The user's namespace name (KubeSpawner's user_namespace_template, kubelab-{username})."""
    return f"kubelab-{user}"  # test user names are already DNS-safe


@pytest.fixture(scope="module")
def two_users(hub):
    a, b = f"ann{RUN}", f"ben{RUN}"
    for u in (a, b):
        hub.ensure_user(u)
    hub.spawn(a)
    hub.spawn(b)
    yield a, b
    for u in (a, b):
        hub.delete_user(u)


def secret_env(kubectl, ns: str) -> dict[str, str]:
    import base64

    data = kubectl.json("-n", ns, "get", "secret", "kubelab-s3")["data"]
    return {k: base64.b64decode(v).decode() for k, v in data.items()}


def test_each_user_gets_a_provisioned_namespace_and_a_server_behind_the_proxy(hub, kubectl, two_users):
    for u in two_users:
        ns = ns_of(u)
        obj = kubectl.json("get", "namespace", ns)
        assert obj["metadata"]["labels"]["kubelab.io/user-namespace"] == "true"
        assert obj["metadata"]["labels"]["kubelab.io/user"] == u
        names = kubectl("-n", ns, "get", "resourcequota,limitrange,serviceaccount,role,rolebinding,networkpolicy,secret",
                        "-o", "name")
        for expected in ("resourcequota/kubelab-quota", "limitrange/kubelab-limits", "serviceaccount/kubelab-user",
                         "role.rbac.authorization.k8s.io/kubelab-user", "rolebinding.rbac.authorization.k8s.io/kubelab-user",
                         "networkpolicy.networking.k8s.io/kubelab-isolation", "secret/kubelab-s3"):
            assert expected in names, f"{expected} missing in {ns}"
        pod = kubectl.json("-n", ns, "get", "pods", "-l", "component=singleuser-server")["items"][0]
        assert pod["spec"]["serviceAccountName"] == "kubelab-user"
        assert pod["metadata"]["labels"]["kubelab.io/resource-group"] == "cpu"
        r = hub.user_get(u, "api/status")
        assert r.status_code == 200, r.text


def test_platform_s3_keys_never_reach_a_user_pod(kubectl, devcluster, two_users):
    from devcluster import s3

    platform = {s3.broker(devcluster).access_key_id, s3.env(devcluster)["AWS_ACCESS_KEY_ID"]}
    for u in two_users:
        env = secret_env(kubectl, ns_of(u))
        assert env["AWS_ACCESS_KEY_ID"] not in platform and env["AWS_SESSION_TOKEN"]
        pod = kubectl("-n", ns_of(u), "get", "pods", "-o", "json")
        for key in platform:
            assert key not in pod
        assert "AWS_ACCESS_KEY_ID" not in pod, "the user's own keys are files (renewable), not variables"


def test_service_account_acts_only_in_its_own_namespace(hub, two_users):
    a, b = two_users
    code = textwrap.dedent(f"""
        from kubernetes import client, config
        config.load_incluster_config()
        batch = client.BatchV1Api()
        job = {{"apiVersion": "batch/v1", "kind": "Job", "metadata": {{"name": "probe-{RUN}"}},
               "spec": {{"template": {{"spec": {{"restartPolicy": "Never", "containers": [
                   {{"name": "m", "image": "python:3.11", "command": ["python", "-c", "print(1)"]}}]}}}}}}}}
        print("own:", batch.create_namespaced_job("{ns_of(a)}", job).metadata.name)
        try:
            batch.create_namespaced_job("{ns_of(b)}", job)
            print("other: created")
        except client.ApiException as e:
            print("other:", e.status)
    """)
    out = hub.execute(a, code)
    assert f"own: probe-{RUN}" in out and "other: 403" in out, out


def test_admission_rejects_other_users_subpath_and_privileged_pods(kubectl, two_users):
    a, b = two_users

    def pod(name: str, sub: str, privileged: bool = False) -> str:
        return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {
            "containers": [{"name": "m", "image": "python:3.11", "command": ["sleep", "1"],
                            "securityContext": {"privileged": privileged},
                            "volumeMounts": [{"name": "s3", "mountPath": "/data", "subPath": sub}]}],
            "volumes": [{"name": "s3", "hostPath": {"path": "/var/lib/kubelab/s3"}}]}})
    out = kubectl("-n", ns_of(a), "apply", "-f", "-", input=pod("steal", f"users/{b}"), check=False)
    assert "denied request" in out and f"subPath users/{a}" in out, out
    out = kubectl("-n", ns_of(a), "apply", "-f", "-", input=pod("root", f"users/{a}", privileged=True), check=False)
    assert "privileged containers are not allowed" in out, out
    out = kubectl("-n", ns_of(a), "apply", "-f", "-", input=pod("escape", "users/../users/" + b), check=False)
    assert "must not contain '..'" in out or "denied request" in out, out
    pods = kubectl("-n", ns_of(a), "get", "pods", "-o", "name")
    assert not {"pod/steal", "pod/root", "pod/escape"} & set(pods.split()), pods
    # deeper subPaths are refused too: the kubelet follows symlinks inside them (users/a/link -> ../b)
    out = kubectl("-n", ns_of(a), "apply", "-f", "-", input=pod("deep", f"users/{a}/data"), check=False)
    assert "denied request" in out, out
    out = kubectl("-n", ns_of(a), "apply", "--dry-run=server", "-f", "-", input=pod("mine", f"users/{a}"))
    assert "created (server dry run)" in out


def test_home_is_in_s3_and_scoped_credentials_are_confined(hub, kubectl, devcluster, two_users):
    from devcluster import s3

    a, b = two_users
    hub.execute(a, f"open('/home/jovyan/hello-{RUN}.txt', 'w').write('from {a}')")
    admin = s3.s3_client(devcluster)
    bucket = s3.bucket_name(devcluster)
    body = eventually(lambda: admin.get_object(Bucket=bucket, Key=f"users/{a}/hello-{RUN}.txt")["Body"].read(),
                      30, what="file in S3")
    assert body == f"from {a}".encode()
    env_b = secret_env(kubectl, ns_of(b))
    as_b = boto3.client("s3", endpoint_url=s3.ENDPOINT, aws_access_key_id=env_b["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=env_b["AWS_SECRET_ACCESS_KEY"],
                        aws_session_token=env_b["AWS_SESSION_TOKEN"], region_name="us-east-1",
                        config=Config(retries={"max_attempts": 1}))
    with pytest.raises(ClientError) as e:
        as_b.get_object(Bucket=bucket, Key=f"users/{a}/hello-{RUN}.txt")
    assert e.value.response["Error"]["Code"] == "AccessDenied"
    as_b.put_object(Bucket=bucket, Key=f"users/{b}/mine.txt", Body=b"ok")
    out = hub.execute(a, "import os; print(sorted(os.listdir('/home/jovyan')))")
    assert f"hello-{RUN}.txt" in out and "welcome.ipynb" in out, "home shows the file and the seeded demo notebook"
    assert f"users/{b}" not in out


def test_gpu_group_spawn_gets_one_device_on_the_gpu_node(hub, kubectl):
    u = f"gina{RUN}"
    hub.ensure_user(u, groups=["gpu-users"])
    try:
        hub.spawn(u, {"resource_group": "gpu-a100", "gpus": "1"})
        pod = kubectl.json("-n", ns_of(u), "get", "pods", "-l", "component=singleuser-server")["items"][0]
        assert pod["spec"]["nodeName"] == "kubelab-gpu-0"
        out = hub.execute(u, "import os; print('gpus=' + os.environ['NVIDIA_VISIBLE_DEVICES'])")
        assert len(out.strip().removeprefix("gpus=").split(",")) == 1
    finally:
        hub.delete_user(u)


def test_hand_made_post_for_a_forbidden_group_gets_403_and_no_pod(hub, kubectl):
    u = f"olga{RUN}"
    hub.ensure_user(u)
    try:
        r = hub.start(u, {"resource_group": "gpu-a100", "gpus": "1"})
        assert r.status_code == 403 and "not allowed to use resource group 'gpu-a100'" in r.json()["message"]
        r = hub.start(u, {"resource_group": "cpu", "gpus": "3"})
        assert r.status_code == 400 and "0 to 0 GPUs" in r.json()["message"]
        out = kubectl("get", "pods", "-A", "-l", f"hub.jupyter.org/username={u}", "-o", "name")
        assert out.strip() == ""
    finally:
        hub.delete_user(u)


def test_zero_gpu_quota_fails_fast_with_the_quota_message_and_no_orphan(hub, kubectl):
    u = f"zed{RUN}"
    hub.ensure_user(u, groups=["gpu-users", "no-gpu-quota"])
    try:
        r = hub.start(u, {"resource_group": "gpu-a100", "gpus": "1"})
        assert r.status_code == 403, r.text
        msg = r.json()["message"]
        assert "exceeded quota" in msg and "nvidia.com/gpu" in msg, msg
        assert kubectl("-n", ns_of(u), "get", "pods,pvc", "-o", "name").strip() == ""
    finally:
        hub.delete_user(u)


def test_approval_gated_group_waits_for_an_admin(hub, kubectl):
    u = f"pat{RUN}"
    hub.ensure_user(u)
    try:
        r = hub.start(u, {"resource_group": "gpu-a100-approval", "gpus": "1"})
        assert r.status_code == 403 and "needs an administrator's approval" in r.json()["message"]
        cms = kubectl.json("-n", "kubelab-system", "get", "configmaps", "-l", "kubelab.io/component=spawn-approval")
        mine = [c for c in cms["items"] if c["data"]["user"] == u]
        assert mine and mine[0]["data"]["status"] == "pending"
        patch = json.dumps({"data": {"status": "denied", "reason": "no budget"}})
        kubectl("-n", "kubelab-system", "patch", "configmap", mine[0]["metadata"]["name"], "--type=merge", "-p", patch)
        r = hub.start(u, {"resource_group": "gpu-a100-approval", "gpus": "1"})
        assert r.status_code == 403 and "denied: no budget" in r.json()["message"]
        patch = json.dumps({"data": {"status": "approved", "reason": ""}})
        kubectl("-n", "kubelab-system", "patch", "configmap", mine[0]["metadata"]["name"], "--type=merge", "-p", patch)
        hub.spawn(u, {"resource_group": "gpu-a100-approval", "gpus": "1"})
    finally:
        hub.delete_user(u)
    # A new user of the same name starts with no approval.
    cms = kubectl.json("-n", "kubelab-system", "get", "configmaps", "-l", "kubelab.io/component=spawn-approval")
    assert not [c for c in cms["items"] if c["data"]["user"] == u], "the deleted user's approval is gone"
    hub.ensure_user(u)
    try:
        r = hub.start(u, {"resource_group": "gpu-a100-approval", "gpus": "1"})
        assert r.status_code == 403 and "needs an administrator's approval" in r.json()["message"], r.text
    finally:
        hub.delete_user(u)


def test_respawn_reuses_the_namespace_and_user_deletion_removes_it(hub, kubectl):
    u = f"rita{RUN}"
    hub.ensure_user(u)
    hub.spawn(u)
    uid = kubectl.json("get", "namespace", ns_of(u))["metadata"]["uid"]
    hub.stop(u)
    hub.spawn(u)
    assert kubectl.json("get", "namespace", ns_of(u))["metadata"]["uid"] == uid
    hub.delete_user(u)

    def gone():
        out = kubectl("get", "namespace", ns_of(u), check=False)
        return "NotFound" in out
    eventually(gone, 120, 2, what="namespace deleted with the user")


def test_a_running_server_gets_renewed_s3_credentials_without_a_restart(hub, kubectl, devcluster, two_users):
    """Credentials close to expiry are renewed on the hub's poll, and the server
    reads the new ones from the mounted Secret: S3 keeps working, for kubelab's
    client and for a plain boto3 client, and the server keeps running.

    The hub restarts with a 24 h lifetime and renewal 12 h before expiry, so the
    12 h credentials the server started with are due on the first poll (a
    restarted hub polls every running server); the renewed 24 h ones are not."""
    u = two_users[0]
    ns = ns_of(u)
    before = secret_env(kubectl, ns)
    pod_uid = kubectl.json("-n", ns, "get", "pods", "-l", "component=singleuser-server")["items"][0]["metadata"]["uid"]
    devhub.down(devcluster)
    devhub.up(devcluster, config={"KubelabSpawner": {"s3_credentials_duration": 24 * 3600,
                                                     "s3_credentials_renew_before": 13 * 3600}})
    try:
        def renewed():
            now = secret_env(kubectl, ns)
            return now if now["AWS_ACCESS_KEY_ID"] != before["AWS_ACCESS_KEY_ID"] else None
        after = eventually(renewed, 120, 2, what="the Secret renewed by the hub's poll")
        assert after["KUBELAB_S3_EXPIRATION"] > before["KUBELAB_S3_EXPIRATION"]

        # kubelab's own client, and a plain boto3 client as a user writes one (the "Copy snippet")
        read = ("import os, boto3; from kubelab.server_extension.s3 import S3; s = S3(); "
                f"print(s.credentials()['AWS_ACCESS_KEY_ID'], 'folders' in s.list_page('users/{u}/')); "
                "c = boto3.client('s3'); "
                "print(boto3.Session().get_credentials().access_key, "
                f"c.list_objects_v2(Bucket=os.environ['KUBELAB_S3_BUCKET'], Prefix='users/{u}/')"
                "['ResponseMetadata']['HTTPStatusCode'])")

        def server_uses_the_new_key():  # the kubelet refreshes Secret volumes within a minute
            out = hub.execute(u, read)
            assert "True" in out and " 200" in out, out
            return out.count(after["AWS_ACCESS_KEY_ID"]) == 2
        eventually(server_uses_the_new_key, 150, 5, what="the server on the renewed credentials")
        time.sleep(35)  # another poll: the renewed credentials are not due, so they stay
        assert secret_env(kubectl, ns)["AWS_ACCESS_KEY_ID"] == after["AWS_ACCESS_KEY_ID"]
        pod = kubectl.json("-n", ns, "get", "pods", "-l", "component=singleuser-server")["items"][0]
        assert pod["metadata"]["uid"] == pod_uid, "the server kept running"
    finally:
        devhub.down(devcluster)
        devhub.up(devcluster)


def test_hub_killed_mid_provision_leaves_one_consistent_namespace(hub, kubectl, devcluster):
    u = f"kim{RUN}"
    hub.ensure_user(u)
    ns = ns_of(u)
    r = hub.start(u)
    assert r.status_code in (201, 202)
    eventually(lambda: "NotFound" not in kubectl("get", "namespace", ns, check=False), 60, 0.2, what="namespace")
    os.killpg(procs.running_pid(devcluster, "hub"), signal.SIGKILL)
    eventually(lambda: procs.running_pid(devcluster, "hub") is None, 30, what="hub dead")
    # Pretend the provision stopped half-way: parts of the namespace are missing.
    kubectl("-n", ns, "delete", "rolebinding", "kubelab-user", "--ignore-not-found")
    kubectl("-n", ns, "delete", "networkpolicy", "kubelab-isolation", "--ignore-not-found")
    devhub.up(devcluster)
    srv = hub.server(u)
    if srv and (srv.get("ready") or srv.get("pending")):
        hub.stop(u)
    hub.spawn(u)
    assert kubectl("get", "namespaces", "-l", f"kubelab.io/user={u}", "-o", "name").strip() == f"namespace/{ns}"
    names = kubectl("-n", ns, "get", "rolebinding,networkpolicy", "-o", "name")
    assert "kubelab-user" in names and "kubelab-isolation" in names
    assert len(kubectl.json("-n", ns, "get", "pods", "-l", "component=singleuser-server")["items"]) == 1
    hub.delete_user(u)


def test_idle_culler_stops_servers_by_their_group_timeout(hub, devcluster):
    import subprocess
    import sys

    u = f"idle{RUN}"
    hub.ensure_user(u)
    try:
        hub.spawn(u)
        time.sleep(3)  # idle for longer than the 1 s timeout given below
        env = {**os.environ, "JUPYTERHUB_API_URL": f"{hub.url}/hub/api", "JUPYTERHUB_API_TOKEN": hub.token}
        out = subprocess.run([sys.executable, "-m", "kubelab.hub.culler", "--once", "--timeouts",
                              json.dumps({"cpu": 1, "gpu-a100": 99999}), "--default-timeout", "0"],
                             env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert f"culling {u}/default (group cpu" in out.stderr
        eventually(lambda: hub.server(u) is None, 120, 1, what="culled server stopped")
    finally:
        hub.delete_user(u)


def test_spawn_form_shows_allowed_groups_and_starts_the_chosen_one(hub, kubectl):
    import re

    import requests

    u = f"fay{RUN}"
    hub.ensure_user(u, groups=["gpu-users"])
    browser = requests.Session()
    browser.trust_env = False
    browser.get(f"{hub.url}/hub/login")
    r = browser.post(f"{hub.url}/hub/login", data={"username": u, "password": "kubelab",
                                                  "_xsrf": browser.cookies.get("_xsrf")})
    assert r.status_code == 200 and r.url.endswith("/hub/spawn"), r.url
    page = r.text
    assert "NVIDIA A100" in page and re.search(r"\d+ of 4 GPUs free", page) and "CPU free" in page
    try:
        r = browser.post(f"{hub.url}/hub/spawn", data={
            "_xsrf": browser.cookies.get("_xsrf"), "resource_group": "gpu-a100", "size-cpu": "small",
            "size-gpu-a100": "standard", "gpus-gpu-a100": "2", "size-gpu-a100-approval": "standard",
            "gpus-gpu-a100-approval": "1"})
        assert r.status_code == 200, r.text[:500]
        hub.wait_ready(u)
        pod = kubectl.json("-n", ns_of(u), "get", "pods", "-l", "component=singleuser-server")["items"][0]
        assert pod["spec"]["nodeName"] == "kubelab-gpu-0"
        assert pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "2"
    finally:
        hub.delete_user(u)
    other = f"gus{RUN}"
    hub.ensure_user(other)
    try:
        browser = requests.Session()
        browser.trust_env = False
        browser.get(f"{hub.url}/hub/login")
        page = browser.post(f"{hub.url}/hub/login", data={"username": other, "password": "kubelab",
                                                         "_xsrf": browser.cookies.get("_xsrf")}).text
        assert 'value="gpu-a100"' not in page and 'value="cpu"' in page, "only allowed groups are listed"
    finally:
        hub.delete_user(other)
