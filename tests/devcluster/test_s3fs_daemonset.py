"""kubelab's s3fs DaemonSet on devcluster, as on a real cluster.

deploy/s3fs/daemonset.yaml runs s3fs in a privileged pod per node with a
hostPath volume mounted ``mountPropagation: Bidirectional``: the FUSE mount it
makes must reach the node (every node has its own /var/lib/kubelab, nodes.yaml
``nodeLocalPaths``), where user pods mount ``users/<user>`` and ``datasets``
(read-only, nested under the home) of /var/lib/kubelab/s3 as hostPath subPaths.

The first tests check the node agent's mount propagation itself with a tmpfs;
the others apply deploy/ exactly as ``devcluster hub-up`` does.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from devcluster import hub, s3
from devcluster.agent.agent import node_root
from devcluster.agent.mounts import SharedMounts, read_mountinfo, unmount_under
from devcluster.kube import Client

S3_HOST_PATH = "/var/lib/kubelab/s3"
DS_LABEL = "app.kubernetes.io/name=kubelab-s3fs"
SYSTEM_NS = hub.HUB_NAMESPACE


# -- helpers ------------------------------------------------------------------------------------

def _nodes(kubectl) -> list[str]:
    return sorted(n["metadata"]["name"] for n in kubectl.json("get", "nodes")["items"])


def _pod(name: str, node: str, command: str, volumes: list, mounts: list, *, privileged: bool = False,
         run_as: int | None = None, restart: str = "Never") -> dict:
    container = {"name": "c", "image": "busybox", "command": ["/bin/sh", "-c", command], "volumeMounts": mounts}
    if privileged:
        container["securityContext"] = {"privileged": True}
    spec = {"nodeName": node, "restartPolicy": restart, "terminationGracePeriodSeconds": 2,
            "tolerations": [{"operator": "Exists"}], "containers": [container], "volumes": volumes}
    if run_as is not None:
        spec["securityContext"] = {"runAsUser": run_as, "runAsGroup": 100, "fsGroup": 100}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def _apply(kubectl, ns: str, *objs: dict) -> None:
    kubectl.apply(json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objs)}), namespace=ns)


def _wait_pod(kubectl, ns: str, name: str, until: str, timeout: float = 120) -> dict:
    """Wait for ``until``: 'Ready' or 'Finished' (Succeeded/Failed); returns the pod."""
    deadline = time.monotonic() + timeout
    pod: dict = {}
    while time.monotonic() < deadline:
        pod = kubectl.json("-n", ns, "get", "pod", name)
        status = pod.get("status") or {}
        if until == "Finished" and status.get("phase") in ("Succeeded", "Failed"):
            return pod
        if until == "Ready" and any(c["type"] == "Ready" and c["status"] == "True"
                                    for c in status.get("conditions") or []):
            return pod
        time.sleep(1)
    raise AssertionError(f"pod {ns}/{name} not {until} after {timeout}s: {json.dumps(pod.get('status'))[:2000]}\n"
                         + kubectl("-n", ns, "logs", name, check=False))


def _finished_ok(kubectl, ns: str, name: str, timeout: float = 120) -> str:
    pod = _wait_pod(kubectl, ns, name, "Finished", timeout)
    logs = kubectl("-n", ns, "logs", name, check=False)
    assert pod["status"]["phase"] == "Succeeded", f"{name} failed:\n{logs}"
    return logs


def _mounts_at(path: Path) -> list:
    return [e for e in read_mountinfo() if e.mount_point == str(path)]


@pytest.fixture
def ns(kubectl):
    name = f"s3fs-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", name)
    deadline = time.monotonic() + 30  # pods need the controller-manager's default ServiceAccount
    while "default" not in kubectl("-n", name, "get", "serviceaccounts", "-o", "name", check=False):
        assert time.monotonic() < deadline, "no default ServiceAccount"
        time.sleep(0.5)
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


# -- mount propagation (node agent) ----------------------------------------------------------------

def test_mount_propagation_bidirectional_hosttocontainer_and_none(kubectl, devcluster, ns):
    """A tmpfs mounted by a privileged pod under a Bidirectional hostPath reaches its node's
    copy of the path (not the real host path, not other nodes), a HostToContainer pod that
    started before sees it appear, a None pod that started before does not, and pods
    started after see it, through a subPath too."""
    nodes = _nodes(kubectl)
    node, other = nodes[0], nodes[1]
    host_path = f"/var/lib/kubelab/{ns}"
    node_dir = node_root(devcluster, node) / host_path.lstrip("/")
    vol = [{"name": "h", "hostPath": {"path": host_path, "type": "DirectoryOrCreate"}}]
    wait_for = "i=0; until [ -f /data/m/hello ]; do i=$((i+1)); [ $i -gt 90 ] && exit 1; sleep 1; done; "
    try:
        _apply(kubectl, ns,
               _pod("early-slave", node, wait_for + "cat /data/m/hello",
                    vol, [{"name": "h", "mountPath": "/data", "mountPropagation": "HostToContainer"}]),
               _pod("early-private", node, "sleep 3600", vol, [{"name": "h", "mountPath": "/data"}]))
        _wait_pod(kubectl, ns, "early-private", "Ready")
        _wait_pod(kubectl, ns, "early-slave", "Ready")
        _apply(kubectl, ns, _pod(
            "mounter", node,
            "mkdir -p /data/m && mount -t tmpfs kubelab-test /data/m && mkdir /data/m/sub && "
            "echo propagated > /data/m/hello && echo deep > /data/m/sub/f && sleep 3600",
            vol, [{"name": "h", "mountPath": "/data", "mountPropagation": "Bidirectional"}], privileged=True,
            restart="Always"))
        _wait_pod(kubectl, ns, "mounter", "Ready")
        deadline = time.monotonic() + 30
        while not (node_dir / "m" / "hello").exists():
            assert time.monotonic() < deadline, f"the pod's mount did not reach {node_dir}"
            time.sleep(0.5)
        assert (node_dir / "m" / "hello").read_text() == "propagated\n"
        assert [e.fstype for e in _mounts_at(node_dir / "m")] == ["tmpfs"]
        assert not os.path.exists(f"{host_path}/m/hello"), "the real host path must not get the node's mount"
        assert not (node_root(devcluster, other) / host_path.lstrip("/") / "m" / "hello").exists()

        assert "propagated" in _finished_ok(kubectl, ns, "early-slave")
        _apply(kubectl, ns,
               _pod("late", node, "cat /data/hello /sub/f", vol,
                    [{"name": "h", "mountPath": "/data", "subPath": "m"},
                     {"name": "h", "mountPath": "/sub", "subPath": "m/sub", "readOnly": True}]),
               _pod("other-node", other, "ls -A /data", vol, [{"name": "h", "mountPath": "/data"}]))
        assert _finished_ok(kubectl, ns, "late").split() == ["propagated", "deep"]
        assert _finished_ok(kubectl, ns, "other-node").strip() == ""
        # The None pod still sees the empty directory under the mount, like a real kubelet.
        early = kubectl.json("-n", ns, "get", "pod", "early-private")
        assert early["status"]["phase"] == "Running"
        uid = early["metadata"]["uid"]
        run = json.loads(next((devcluster.agent / "nodes" / node / "pods" / uid / "containers" / "c")
                              .glob("*/run.json")).read_text())
        out = subprocess.run(["nsenter", "-t", str(run["pid"]), "-m", "ls", "-A", "/data/m"],
                             capture_output=True, text=True, check=True).stdout
        assert out.strip() == ""
    finally:
        kubectl("-n", ns, "delete", "pods", "--all", "--wait=true", "--timeout=60s", check=False)
        # A Bidirectional mount outlives its pod on the node (as on a real node): take it down.
        unmount_under([str(node_dir)])
        for n in nodes:
            subprocess.run(["rm", "-rf", "--one-file-system", str(node_root(devcluster, n) / host_path.lstrip("/"))])


def test_cleanup_unmounts_shared_binds_and_dead_fuse_mounts(s3_env):
    """What ``cleanup`` runs: the shared binds the agent made and a FUSE mount whose
    s3fs died ("Transport endpoint is not connected") below them are all unmounted."""
    with tempfile.TemporaryDirectory(prefix="s3fs-cleanup-") as tmp:
        root = Path(tmp) / "nodes" / "n1" / "rootfs"
        mnt = root / "var/lib/kubelab/s3"
        mnt.mkdir(parents=True)
        shared = SharedMounts(Path(tmp) / "agent" / "shared-mounts.json")
        shared.ensure(str(mnt), "rshared", str(root))
        assert [e.shared for e in _mounts_at(root)] == [True]
        passwd = Path(tmp) / "passwd"
        passwd.write_text(f"{s3_env['AWS_ACCESS_KEY_ID']}:{s3_env['AWS_SECRET_ACCESS_KEY']}\n")
        passwd.chmod(0o600)
        proc = subprocess.Popen(["s3fs", s3_env["KUBELAB_S3_BUCKET"], str(mnt), "-f", "-o",
                                 f"url={s3_env['AWS_ENDPOINT_URL']}", "-o", "use_path_request_style",
                                 "-o", f"passwd_file={passwd}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 20
            while not any(e.fstype.startswith("fuse") for e in _mounts_at(mnt)):
                assert proc.poll() is None and time.monotonic() < deadline, "s3fs did not mount"
                time.sleep(0.2)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            with pytest.raises(OSError):
                os.listdir(mnt)  # ENOTCONN: a dead FUSE mount
            shared.release_all([str(Path(tmp) / "nodes")])
            assert not [e for e in read_mountinfo() if e.mount_point.startswith(tmp)]
            assert os.listdir(mnt) == []
            assert shared.recorded() == []
        finally:
            if proc.poll() is None:
                proc.kill()
            unmount_under([tmp])


# -- the s3fs DaemonSet ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def admin(devcluster):
    return Client.from_kubeconfig(devcluster.kubeconfig)


def _s3fs_pods(kubectl) -> dict[str, dict]:
    """node -> the DaemonSet's (not deleted) pod there."""
    pods = kubectl.json("-n", SYSTEM_NS, "get", "pods", "-l", DS_LABEL)["items"]
    return {p["spec"]["nodeName"]: p for p in pods if not p["metadata"].get("deletionTimestamp")}


def _ready(pod: dict) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _wait_rolled_out(kubectl, nodes: list[str], timeout: float = 180) -> dict[str, dict]:
    """Every node runs one Ready pod of the current DaemonSet template."""
    deadline = time.monotonic() + timeout
    while True:
        ds = kubectl.json("-n", SYSTEM_NS, "get", "daemonset", "kubelab-s3fs")
        st = ds.get("status") or {}
        pods = _s3fs_pods(kubectl)
        if (st.get("observedGeneration") == ds["metadata"]["generation"]
                and st.get("desiredNumberScheduled") == len(nodes)
                and st.get("updatedNumberScheduled") == len(nodes) and st.get("numberReady") == len(nodes)
                and sorted(pods) == nodes and all(_ready(p) for p in pods.values())):
            return pods
        if time.monotonic() > deadline:
            raise AssertionError(f"s3fs DaemonSet not rolled out: {json.dumps(st)}; pods: "
                                 + kubectl("-n", SYSTEM_NS, "get", "pods", "-l", DS_LABEL, "-o", "wide", check=False))
        time.sleep(1)


def _assert_node_mount(devcluster, node: str) -> None:
    """The node's /var/lib/kubelab/s3 has exactly one live s3fs mount."""
    path = node_root(devcluster, node) / S3_HOST_PATH.lstrip("/")
    fuse = [e for e in _mounts_at(path) if e.fstype.startswith("fuse")]
    assert len(fuse) == 1, f"{node}: {len(fuse)} FUSE mounts at {path}"
    os.listdir(path)  # a dead mount raises ENOTCONN


@pytest.fixture(scope="module")
def s3fs_ds(devcluster, admin, kubectl):
    """deploy/ applied as devcluster does it, the DaemonSet ready on every node."""
    hub.apply_deploy(admin, devcluster)
    hub.wait_s3fs(admin)
    nodes = _nodes(kubectl)
    _wait_rolled_out(kubectl, nodes)
    return nodes


@pytest.fixture
def bucket(devcluster):
    """(client, bucket, user): a fresh user; its objects (and the test's dataset) removed after."""
    client, name, user = s3.s3_client(devcluster), s3.bucket_name(devcluster), f"s3fs-{uuid.uuid4().hex[:8]}"
    yield client, name, user
    for prefix in (f"users/{user}/", f"datasets/{user}"):
        for obj in client.list_objects_v2(Bucket=name, Prefix=prefix).get("Contents") or []:
            client.delete_object(Bucket=name, Key=obj["Key"])


USER_SCRIPT = """
home=/home/jovyan
i=0
until [ -f "$home/$OBJ" ]; do i=$((i+1)); [ $i -gt 60 ] && { echo "no $OBJ"; ls -la "$home"; exit 1; }; sleep 1; done
echo "read: $(cat "$home/$OBJ")"
echo "written on $NODE" > "$home/from-$NODE.txt"
if out=$(touch "$home/datasets/nope-$NODE" 2>&1); then echo "datasets is writable"; exit 1; fi
echo "datasets write: $out"
echo "datasets: $(cat "$home/datasets/$DATASET")"
"""


def _user_pod(name: str, node: str, user: str, obj: str, dataset: str) -> dict:
    """A pod like KubelabSpawner's: home = users/<user>, datasets read-only nested under it."""
    vols = [{"name": "kubelab-s3", "hostPath": {"path": S3_HOST_PATH, "type": "Directory"}}]
    mounts = [{"name": "kubelab-s3", "mountPath": "/home/jovyan", "subPath": f"users/{user}"},
              {"name": "kubelab-s3", "mountPath": "/home/jovyan/datasets", "subPath": "datasets", "readOnly": True}]
    env = f"OBJ={obj} NODE={node} DATASET={dataset}; export OBJ NODE DATASET; "
    return _pod(name, node, env + USER_SCRIPT, vols, mounts, run_as=1000)


def _check_user_pods(kubectl, ns: str, nodes: list[str], bucket, tag: str) -> None:
    client, name, user = bucket
    obj, dataset = f"x-{tag}.txt", f"{user}-{tag}.txt"
    client.put_object(Bucket=name, Key=f"users/{user}/{obj}", Body=f"hello {tag}".encode())
    client.put_object(Bucket=name, Key=f"datasets/{dataset}", Body=b"shared data")
    pods = [_user_pod(f"user-{tag}-{i}", node, user, obj, dataset) for i, node in enumerate(nodes)]
    _apply(kubectl, ns, *pods)
    for pod, node in zip(pods, nodes):
        logs = _finished_ok(kubectl, ns, pod["metadata"]["name"])
        assert f"read: hello {tag}" in logs, logs
        assert "Read-only file system" in logs, logs
        assert "datasets: shared data" in logs, logs
        body = client.get_object(Bucket=name, Key=f"users/{user}/from-{node}.txt")["Body"].read()
        assert body == f"written on {node}\n".encode()


def test_s3fs_daemonset_has_a_ready_pod_per_node_with_its_own_mount(s3fs_ds, devcluster, kubectl):
    pods = _wait_rolled_out(kubectl, s3fs_ds)
    assert sorted(pods) == s3fs_ds
    for node in s3fs_ds:
        _assert_node_mount(devcluster, node)
    assert not any(e.fstype.startswith("fuse") and e.mount_point == S3_HOST_PATH for e in read_mountinfo()), \
        "the bucket must be mounted in each node's root, not at the real host path"


def test_user_pods_on_every_node_see_the_bucket(s3fs_ds, kubectl, ns, bucket):
    """Objects put with boto3 show up in a home on every node; what a pod writes lands in
    S3; datasets/ (nested under the home) is read-only."""
    _check_user_pods(kubectl, ns, s3fs_ds, bucket, "a")


def test_deleted_s3fs_pod_is_replaced_without_a_dead_mount(s3fs_ds, devcluster, kubectl, ns, bucket):
    node = s3fs_ds[0]
    old = _s3fs_pods(kubectl)[node]["metadata"]["name"]
    kubectl("-n", SYSTEM_NS, "delete", "pod", old, "--wait=true", "--timeout=90s")
    pods = _wait_rolled_out(kubectl, s3fs_ds)
    assert pods[node]["metadata"]["name"] != old
    _assert_node_mount(devcluster, node)
    _check_user_pods(kubectl, ns, [node], bucket, "b")


def test_crashed_s3fs_leaves_a_stale_mount_that_its_restart_clears(s3fs_ds, devcluster, kubectl, ns, bucket):
    """s3fs killed with SIGKILL leaves "Transport endpoint is not connected" on the node;
    the restarted container clears it (fusermount -uz) and mounts again."""
    node = s3fs_ds[-1]
    pod = _s3fs_pods(kubectl)[node]
    uid, restarts = pod["metadata"]["uid"], pod["status"]["containerStatuses"][0]["restartCount"]
    runs = devcluster.agent / "nodes" / node / "pods" / uid / "containers" / "s3fs"
    latest = max((d for d in runs.iterdir() if d.name.isdigit()), key=lambda d: int(d.name))
    pid = json.loads((latest / "run.json").read_text())["pid"]  # sh execs s3fs: same process
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 120
    while True:
        pod = _s3fs_pods(kubectl)[node]
        status = pod["status"]["containerStatuses"][0]
        if status["restartCount"] > restarts and _ready(pod):
            break
        assert time.monotonic() < deadline, f"s3fs on {node} did not come back: {json.dumps(status)}"
        time.sleep(1)
    _assert_node_mount(devcluster, node)
    _check_user_pods(kubectl, ns, [node], bucket, "c")
