"""The node agent's pure parts: quantities, env resolution, allocators, logs,
volumes on disk, etc files, status computation, configuration (no cluster needed)."""
from __future__ import annotations

import base64
import importlib.util
import io
import os
import subprocess
import time
from decimal import Decimal
from pathlib import Path

import pytest

from devcluster.agent import (config, envvars, etcfiles, gpu, logs, mounts, network, quantity, server, status, store,
                              volumes)
from devcluster.agent.containers import ExitInfo, RunState
from devcluster.agent.pods import crash_backoff


def make_pod(containers=None, init=None, **spec):
    return {
        "metadata": {"name": "p1", "namespace": "ns1", "uid": "uid-1", "labels": {"app": "x", "tier": "a\"b"},
                     "annotations": {}},
        "spec": {"nodeName": "node-a", "serviceAccountName": "sa1", "containers": containers or [{"name": "c"}],
                 "initContainers": init or [], **spec},
    }


# -- quantities -----------------------------------------------------------------------------

@pytest.mark.parametrize("text,value", [
    ("100m", Decimal("0.1")), ("2", Decimal(2)), ("1Gi", Decimal(2**30)), ("128Mi", Decimal(128 * 2**20)),
    ("1e3", Decimal(1000)), ("1.5k", Decimal(1500)), ("0", Decimal(0)),
])
def test_parse_quantity(text, value):
    assert quantity.parse_quantity(text) == value


def test_parse_quantity_rejects_garbage():
    with pytest.raises(ValueError):
        quantity.parse_quantity("12 apples")


def test_resource_field_value_rounds_up_and_falls_back_to_allocatable():
    c = {"resources": {"limits": {"cpu": "500m", "memory": "128Mi"}}}
    alloc = {"cpu": "8", "memory": "16Gi"}
    assert quantity.resource_field_value(c, "limits.cpu", None, alloc) == "1"
    assert quantity.resource_field_value(c, "limits.cpu", "1m", alloc) == "500"
    assert quantity.resource_field_value(c, "limits.memory", "1Mi", alloc) == "128"
    assert quantity.resource_field_value(c, "limits.memory", "0", alloc) == str(128 * 2**20)
    assert quantity.resource_field_value({}, "limits.cpu", None, alloc) == "8"
    assert quantity.resource_field_value({}, "requests.cpu", None, alloc) == "0"
    assert quantity.resource_field_value(c, "requests.memory", "1Mi", alloc) == "128"  # requests default to limits


# -- environment ------------------------------------------------------------------------------

@pytest.mark.parametrize("text,expected", [
    ("$(A)-$(B)", "1-$(B)"),
    ("$$(A)", "$(A)"),
    ("$$", "$"),
    ("cost $5", "cost $5"),
    ("$(A", "$(A"),
    ("end$", "end$"),
    ("", ""),
])
def test_expand_like_kubernetes(text, expected):
    assert envvars.expand(text, {"A": "1"}.get) == expected


class Objects:
    """ConfigMaps and secrets held in memory, for the pure env resolver."""

    def __init__(self, configmaps=None, secrets=None):
        self.configmaps = configmaps or {}
        self.secrets = secrets or {}

    def configmap(self, namespace, name):
        return self.configmaps.get((namespace, name))

    def secret(self, namespace, name):
        return self.secrets.get((namespace, name))


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def test_resolve_env_sources_order_and_expansion():
    objs = Objects(
        configmaps={("ns1", "cm"): {"data": {"A": "from-cm", "bad key": "skipped", "B": "b"}}},
        secrets={("ns1", "s"): {"data": {"PW": b64("secret!")}}},
    )
    c = {
        "name": "c",
        "envFrom": [{"configMapRef": {"name": "cm"}}, {"secretRef": {"name": "s"}, "prefix": "S_"}],
        "env": [
            {"name": "A", "value": "override-$(B)"},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
            {"name": "TIER", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['tier']"}}},
            {"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "s", "key": "PW"}}},
            {"name": "OPT", "valueFrom": {"configMapKeyRef": {"name": "absent", "key": "k", "optional": True}}},
            {"name": "EMPTY"},
            {"name": "SVC", "value": "$(KUBERNETES_SERVICE_HOST):$(KUBERNETES_SERVICE_PORT)"},
        ],
    }
    env = envvars.resolve_env(make_pod([c]), c, objs, "10.244.1.7", "10.244.0.1", {})
    assert env["A"] == "override-b"
    assert env["S_PW"] == env["KEY"] == "secret!"
    assert "bad key" not in env
    assert (env["POD"], env["IP"], env["NODE"], env["SA"]) == ("p1", "10.244.1.7", "node-a", "sa1")
    assert env["TIER"] == 'a"b'
    assert "OPT" not in env and env["EMPTY"] == ""
    assert env["SVC"] == "10.96.0.1:443"
    assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1" and env["KUBERNETES_SERVICE_PORT"] == "443"


@pytest.mark.parametrize("env,message", [
    ([{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "x", "key": "k"}}}], 'configmap "x" not found'),
    ([{"name": "X", "valueFrom": {"secretKeyRef": {"name": "y", "key": "k"}}}], 'secret "y" not found'),
    ([{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "nokey"}}}],
     "couldn't find key nokey in ConfigMap ns1/cm"),
])
def test_resolve_env_missing_references(env, message):
    c = {"name": "c", "env": env}
    objs = Objects(configmaps={("ns1", "cm"): {"data": {"A": "1"}}})
    with pytest.raises(envvars.ContainerConfigError, match=message):
        envvars.resolve_env(make_pod([c]), c, objs, None, "10.244.0.1", {})


def test_expand_command_uses_final_env():
    assert envvars.expand_command(["echo", "$(X)", "$(Y)"], {"X": "1"}) == ["echo", "1", "$(Y)"]


def test_downward_labels_format():
    assert envvars.format_map({"b": "2", "a": 'q"x'}) == 'a="q\\"x"\nb="2"'


# -- allocators -----------------------------------------------------------------------------------

def test_ip_allocator_round_robin_and_reuse():
    alloc = network.IpAllocator("10.244.1.0/29")  # hosts .1-.6; .1 is never handed out
    ips = [alloc.allocate(f"u{i}") for i in range(5)]
    assert ips == [f"10.244.1.{i}" for i in range(2, 7)]
    assert alloc.allocate("u0") == "10.244.1.2"  # idempotent
    with pytest.raises(network.NetworkError):
        alloc.allocate("u5")
    alloc.release("u1")
    assert alloc.allocate("u5") == "10.244.1.3"


def test_ip_allocator_rebuilt_from_records_continues_after_last():
    alloc = network.IpAllocator("10.244.1.0/24", {"a": "10.244.1.2"}, last="10.244.1.9")
    assert alloc.allocate("b") == "10.244.1.10"


def test_gpu_allocator_is_exclusive_and_frees():
    alloc = gpu.GpuAllocator(4, {"old": [1]})
    assert alloc.allocate("a", 2) == [0, 2]
    assert alloc.allocate("a", 2) == [0, 2]
    with pytest.raises(gpu.GpuUnavailable):
        alloc.allocate("b", 2)
    assert alloc.allocate("b", 1) == [3]
    alloc.release("a")
    assert alloc.free() == [0, 2]
    assert alloc.allocate("c", 0) == []


def test_gpu_request_and_env():
    pod = make_pod(
        [{"name": "a", "resources": {"limits": {"nvidia.com/gpu": "1"}}},
         {"name": "b", "resources": {"limits": {"nvidia.com/gpu": 2}}}],
        init=[{"name": "i", "resources": {"limits": {"nvidia.com/gpu": "4"}}}])
    assert gpu.gpu_request(pod) == 4
    assert gpu.gpu_request(make_pod()) == 0
    assert gpu.visible_devices_env([0, 3]) == {"NVIDIA_VISIBLE_DEVICES": "0,3", "CUDA_VISIBLE_DEVICES": "0,3"}
    assert gpu.visible_devices_env([]) == {}


# -- logs -------------------------------------------------------------------------------------------

def load_shim():
    spec = importlib.util.spec_from_file_location("kl_shim", Path(network.__file__).with_name("shim.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shim_log_writer_writes_cri_lines():
    shim = load_shim()
    out = io.BytesIO()
    w = shim.LogWriter(out, "stdout")
    w.feed(b"one\ntw")
    w.feed(b"o\n" + b"x" * (shim.MAX_LINE + 5) + b"\n")
    w.feed(b"tail")
    w.close()
    lines = [logs.parse_line(r) for r in out.getvalue().splitlines()]
    assert [(ln.stream, ln.partial, ln.content) for ln in lines] == [
        ("stdout", False, b"one"), ("stdout", False, b"two"),
        ("stdout", True, b"x" * shim.MAX_LINE), ("stdout", False, b"xxxxx"), ("stdout", False, b"tail")]
    assert all(ln.timestamp.endswith("Z") for ln in lines)


def test_rfc3339_round_trip():
    t = 1795432955.123456789
    text = logs.format_rfc3339nano(t)
    assert text.startswith("2026-11-23T") and text.endswith("Z")
    assert abs(logs.parse_rfc3339(text) - t) < 1e-6
    assert logs.format_rfc3339nano(1795432955.0).endswith(":35Z")
    assert logs.parse_rfc3339("2026-11-23T08:02:35+00:00") == 1795420955.0


def write_log(path: Path, records: list[tuple[float, str, str, str]]) -> None:
    path.write_bytes(b"".join(
        f"{logs.format_rfc3339nano(t)} {s} {tag} {text}\n".encode() for t, s, tag, text in records))


def test_log_options_tail_since_limit_timestamps(tmp_path):
    f = tmp_path / "c.log"
    write_log(f, [(100.0, "stdout", "F", "a"), (200.0, "stderr", "F", "b"), (300.0, "stdout", "P", "c1"),
                  (300.5, "stdout", "F", "c2")])

    def read(**kw):
        return b"".join(logs.stream_log(f, logs.LogOptions(**kw), lambda: True))

    assert read() == b"a\nb\nc1c2\n"
    assert read(tail_lines=1) == b"c1c2\n"
    assert read(tail_lines=2) == b"b\nc1c2\n"
    assert read(tail_lines=0) == b""
    assert read(since_time=150.0) == b"b\nc1c2\n"
    assert read(limit_bytes=3) == b"a\nb"
    assert read(timestamps=True, tail_lines=1).startswith(logs.format_rfc3339nano(300.0).encode() + b" c1")


def test_log_follow_stops_when_finished(tmp_path):
    f = tmp_path / "c.log"
    write_log(f, [(100.0, "stdout", "F", "first")])
    calls = {"n": 0}

    def finished():
        calls["n"] += 1
        if calls["n"] == 2:
            with open(f, "ab") as out:
                out.write(f"{logs.format_rfc3339nano(101.0)} stdout F second\n".encode())
        return calls["n"] >= 3

    chunks = list(logs.stream_log(f, logs.LogOptions(follow=True), finished, poll=0.01))
    assert b"".join(chunks) == b"first\nsecond\n"


def test_parse_log_options_from_query():
    opts = server.parse_log_options("follow=true&tailLines=5&timestamps=true&limitBytes=10&previous=true")
    assert (opts.follow, opts.tail_lines, opts.timestamps, opts.limit_bytes, opts.previous) == (True, 5, True, 10, True)
    since = server.parse_log_options("sinceSeconds=60").since_time
    assert abs(since - (time.time() - 60)) < 5
    assert server.parse_log_options("sinceTime=2026-11-23T08:02:35Z").since_time == 1795420955.0
    with pytest.raises(ValueError):
        server.parse_log_options("tailLines=-1")


# -- volumes on disk ----------------------------------------------------------------------------------

def test_atomic_writer_swaps_and_prunes(tmp_path):
    target = tmp_path / "vol"
    P = volumes.FileProjection
    assert volumes.write_atomic(target, {"a": P(b"1", 0o644), "sub/b": P(b"2", 0o600)})
    assert (target / "a").read_bytes() == b"1" and (target / "sub" / "b").read_bytes() == b"2"
    assert oct((target / "sub" / "b").stat().st_mode & 0o777) == "0o600"
    first = os.readlink(target / "..data")
    assert not volumes.write_atomic(target, {"a": P(b"1", 0o644), "sub/b": P(b"2", 0o600)})
    assert volumes.write_atomic(target, {"a": P(b"new", 0o644)})
    assert (target / "a").read_bytes() == b"new"
    assert not (target / "sub").exists() and not (target / first).exists()
    with pytest.raises(volumes.VolumeError):
        volumes.write_atomic(target, {"../escape": P(b"x", 0o644)})


def test_key_projection_items_modes_and_missing_keys():
    values = volumes.configmap_values({"data": {"k": "v"}, "binaryData": {"bin": b64("raw")}})
    assert values == {"k": b"v", "bin": b"raw"}
    proj = volumes.key_projection(values, [{"key": "k", "path": "dir/file", "mode": 0o400}], 0o644, False,
                                  lambda k: f"missing {k}")
    assert proj == {"dir/file": volumes.FileProjection(b"v", 0o400)}
    assert volumes.key_projection(values, None, 0o640, False, str)["bin"].mode == 0o640
    with pytest.raises(volumes.VolumeError, match="missing nope"):
        volumes.key_projection(values, [{"key": "nope"}], 0o644, False, lambda k: f"missing {k}")
    assert volumes.key_projection(values, [{"key": "nope"}], 0o644, True, str) == {}


def test_downward_projection():
    pod = make_pod([{"name": "c", "resources": {"limits": {"memory": "64Mi"}}}])
    proj = volumes.downward_projection(pod, [
        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
        {"path": "mem", "resourceFieldRef": {"containerName": "c", "resource": "limits.memory", "divisor": "1Mi"}},
    ], 0o644, "10.0.0.1", "10.244.0.1", {})
    assert proj["labels"].data == b'app="x"\ntier="a\\"b"'
    assert proj["mem"].data == b"64"


def test_host_path_types(tmp_path):
    d = tmp_path / "made" / "here"
    assert volumes.prepare_host_path({"path": str(d), "type": "DirectoryOrCreate"}) == str(d)
    assert d.is_dir()
    f = tmp_path / "f.txt"
    volumes.prepare_host_path({"path": str(f), "type": "FileOrCreate"})
    assert f.is_file()
    with pytest.raises(volumes.VolumeError):
        volumes.prepare_host_path({"path": str(f), "type": "Directory"})
    with pytest.raises(volumes.VolumeError):
        volumes.prepare_host_path({"path": str(tmp_path / "absent"), "type": "File"})


def test_container_mounts_subpaths_order_and_defaults(tmp_path):
    vol = tmp_path / "vol"
    (vol / "conf").mkdir(parents=True)
    (vol / "conf" / "app.ini").write_text("x")
    etc = tmp_path / "hosts"
    etc.write_text("127.0.0.1 localhost\n")
    vols = {"v": volumes.PreparedVolume("v", str(vol)), "ro": volumes.PreparedVolume("ro", str(vol), read_only=True)}
    c = {"volumeMounts": [
        {"name": "v", "mountPath": "/data/deep/x", "subPathExpr": "$(POD)"},
        {"name": "v", "mountPath": "/data"},
        {"name": "v", "mountPath": "/etc/app.ini", "subPath": "conf/app.ini", "readOnly": True},
        {"name": "ro", "mountPath": "/ro"},
    ]}
    mounts = volumes.container_mounts(c, vols, {"POD": "p1"}, {"/etc/hosts": str(etc), "/ro": "/ignored"})
    assert [m.target for m in mounts] == ["/data", "/ro", "/etc/app.ini", "/etc/hosts", "/data/deep/x"]
    by_target = {m.target: m for m in mounts}
    assert by_target["/data/deep/x"].source == str(vol / "p1") and (vol / "p1").is_dir()
    assert by_target["/etc/app.ini"].is_file and by_target["/etc/app.ini"].read_only
    assert by_target["/ro"].read_only and by_target["/ro"].source == str(vol)
    with pytest.raises(volumes.VolumeError):
        volumes.container_mounts({"volumeMounts": [{"name": "v", "mountPath": "/x", "subPath": "../.."}]},
                                 vols, {}, {})
    os.symlink("/etc", vol / "escape")
    with pytest.raises(volumes.VolumeError, match="outside"):
        volumes.container_mounts({"volumeMounts": [{"name": "v", "mountPath": "/x", "subPath": "escape"}]},
                                 vols, {}, {})
    with pytest.raises(volumes.VolumeError):
        volumes.container_mounts({"volumeMounts": [{"name": "nope", "mountPath": "/x"}]}, vols, {}, {})


def test_mount_targets_are_created_shared_and_removed_when_unused(tmp_path):
    reg = store.HostPathRegistry(tmp_path / "host-paths.json")
    base = tmp_path / "host"
    base.mkdir()
    m1 = volumes.Mount("/src", str(base / "a" / "b"), False, False)
    inner = volumes.Mount("/src", str(base / "a" / "b" / "inner"), False, False)
    f = volumes.Mount("/src-file", str(base / "file.txt"), False, True)
    volumes.prepare_targets([m1, inner, f], reg, "pod1")
    assert (base / "a" / "b").is_dir() and (base / "file.txt").is_file()
    assert not (base / "a" / "b" / "inner").exists()  # under another mount: the shim creates it there
    volumes.prepare_targets([m1], reg, "pod2")  # already there: pod2 becomes a user too
    reg.release("pod1")
    assert (base / "a" / "b").is_dir() and not (base / "file.txt").exists()
    reg.release("pod2")
    assert not (base / "a").exists() and base.is_dir()
    with pytest.raises(volumes.VolumeError):
        (base / "d").mkdir()
        volumes.prepare_targets([volumes.Mount("/f", str(base / "d"), False, True)], reg, "pod3")


def test_pod_run_as():
    pod = make_pod([{"name": "a"}, {"name": "b", "securityContext": {"runAsUser": 1000}}],
                   securityContext={"runAsUser": 1000, "fsGroup": 100})
    assert volumes.pod_run_as(pod) == (1000, 100)
    assert volumes.pod_run_as(make_pod([{"name": "a", "securityContext": {"runAsUser": 5}}, {"name": "b"}])) \
        == (None, None)


# -- etc files ---------------------------------------------------------------------------------------

def test_resolv_conf_policies():
    pod = make_pod()
    assert etcfiles.resolv_conf(pod, "nameserver 1.1.1.1\n") == (
        "search ns1.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n")
    host = "nameserver 1.1.1.1\nsearch corp\noptions rotate\n"
    assert etcfiles.resolv_conf(make_pod(hostNetwork=True), host) == \
        "search corp\nnameserver 1.1.1.1\noptions rotate\n"
    assert "10.96.0.10" in etcfiles.resolv_conf(make_pod(hostNetwork=True, dnsPolicy="ClusterFirstWithHostNet"), host)
    custom = make_pod(dnsPolicy="None", dnsConfig={"nameservers": ["9.9.9.9"], "searches": ["a.b"],
                                                   "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]})
    assert etcfiles.resolv_conf(custom, host) == "search a.b\nnameserver 9.9.9.9\noptions ndots:2 edns0\n"


def test_hosts_file():
    pod = make_pod(hostname="web-0", subdomain="web", hostAliases=[{"ip": "1.2.3.4", "hostnames": ["x", "y"]}])
    text = etcfiles.hosts_file(pod, "10.244.1.5", "host file\n")
    assert "127.0.0.1\tlocalhost" in text
    assert "10.244.1.5\tweb-0.web.ns1.svc.cluster.local\tweb-0" in text
    assert text.endswith("1.2.3.4\tx\ty\n")
    assert etcfiles.hosts_file(make_pod(hostNetwork=True), "10.244.0.1", "host file\n") == "host file\n"
    assert etcfiles.pod_hostname(make_pod()) == "p1"


# -- status --------------------------------------------------------------------------------------------

def run(attempt=0, running=False, code=None, reason="Error", started_at="2026-11-23T10:00:00.5Z"):
    ex = None if code is None else ExitInfo(code, "Completed" if code == 0 else reason, "",
                                            "2026-11-23T10:00:00.5Z", "2026-11-23T10:00:01.25Z")
    return RunState(name="c", attempt=attempt, dir=Path("/nonexistent"), container_id="abc",
                    started_at=started_at, exit=ex, shim_pid=1 if running else None,
                    shim_alive=running)


def view(r=None, waiting=None, ready=False, started=False, previous=None, sidecar=False, name="c"):
    return status.ContainerView(name=name, image="img", image_id="id", run=r, previous_exit=previous,
                                waiting=waiting, ready=ready, started=started, sidecar=sidecar)


@pytest.mark.parametrize("policy,apps,expected", [
    ("Never", [view(run(code=0))], "Succeeded"),
    ("Never", [view(run(code=0)), view(run(code=1))], "Failed"),
    ("OnFailure", [view(run(code=1), waiting=("CrashLoopBackOff", ""))], "Running"),
    ("Always", [view(run(code=0), waiting=("CrashLoopBackOff", ""))], "Running"),
    ("Always", [view(run(running=True))], "Running"),
    ("Always", [view(run(running=True)), view(None, waiting=("ContainerCreating", ""))], "Pending"),
    ("OnFailure", [view(run(code=0))], "Succeeded"),
])
def test_pod_phase(policy, apps, expected):
    assert status.pod_phase(policy, [], apps, True) == expected


def test_pod_phase_init_containers():
    failed = view(run(code=2))
    assert status.pod_phase("Never", [failed], [view(None)], False) == "Failed"
    assert status.pod_phase("OnFailure", [view(run(code=2), waiting=("CrashLoopBackOff", ""))], [view(None)],
                            False) == "Pending"
    assert status.pod_phase("Always", [view(run(running=True))], [view(None)], False) == "Pending"
    assert status.pod_phase("Always", [view(run(running=True), started=True, sidecar=True)],
                            [view(run(code=0))], True) == "Running"
    assert status.pod_phase("Always", [], [view(run(running=True))], True, deleting=True) == "Running"
    assert status.pod_phase("Always", [], [view(run(code=143))], True, deleting=True) == "Failed"


def test_container_status_states():
    running = status.container_status(view(run(attempt=2, running=True), ready=True, started=True,
                                           previous=ExitInfo(1, "Error", "", None, "2026-11-23T09:00:00Z")))
    assert running["state"]["running"] == {"startedAt": "2026-11-23T10:00:00Z"}
    assert running["state"]["waiting"] is None and running["state"]["terminated"] is None
    assert running["restartCount"] == 2 and running["containerID"] == "kubelab://abc"
    assert running["lastState"]["terminated"]["exitCode"] == 1

    backoff = status.container_status(view(run(attempt=1, code=3), waiting=("CrashLoopBackOff", "back-off 10s")))
    assert backoff["state"]["waiting"] == {"reason": "CrashLoopBackOff", "message": "back-off 10s"}
    assert backoff["lastState"]["terminated"]["exitCode"] == 3

    done = status.container_status(view(run(code=137, reason="OOMKilled")))
    assert done["state"]["terminated"]["reason"] == "OOMKilled"
    assert done["state"]["terminated"]["finishedAt"] == "2026-11-23T10:00:01Z"
    assert done["lastState"] == {"waiting": None, "running": None, "terminated": None}

    creating = status.container_status(view(None))
    assert creating["state"]["waiting"] == {"reason": "ContainerCreating"} and creating["containerID"] is None


def test_conditions_and_transition_times():
    pod = make_pod(readinessGates=[{"conditionType": "example.com/gate"}])
    conds = status.pod_conditions(pod, "Running", True, True, [], [view(run(running=True), ready=True, started=True)])
    by_type = {c["type"]: c for c in conds}
    assert by_type["ContainersReady"]["status"] == "True"
    assert by_type["Ready"]["status"] == "False" and by_type["Ready"]["reason"] == "ReadinessGatesNotReady"
    assert by_type["PodScheduled"]["status"] == "True"
    old = [{"type": "ContainersReady", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z"}]
    timed = {c["type"]: c for c in status.with_transition_times(conds, old)}
    assert timed["ContainersReady"]["lastTransitionTime"] == "2020-01-01T00:00:00Z"
    assert timed["Ready"]["lastTransitionTime"] != "2020-01-01T00:00:00Z"


def test_qos_class():
    assert status.qos_class(make_pod()) == "BestEffort"
    assert status.qos_class(make_pod([{"name": "c", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}])) \
        == "Guaranteed"
    assert status.qos_class(make_pod([{"name": "c", "resources": {"requests": {"cpu": "1"}}}])) == "Burstable"


def test_crash_backoff():
    assert crash_backoff(0, 1) == 0
    assert [crash_backoff(n, 1) for n in (1, 2, 3)] == [10, 20, 40]
    assert crash_backoff(20, 1) == 300
    assert crash_backoff(5, 3600) == 0


# -- configuration --------------------------------------------------------------------------------------

def test_image_catalog(tmp_path):
    f = tmp_path / "images.yaml"
    f.write_text(
        "environments:\n"
        "  default: {venv: '${REPO}/.venv', env: {PYTHONUNBUFFERED: '1'}}\n"
        "  bare: {}\n"
        "images:\n"
        "  - {match: 'python:*', environment: default}\n"
        "  - {match: 'quay.io/jupyter/*', environment: default, command: [start-notebook.py]}\n"
        "  - {match: 'busybox', environment: bare}\n")
    cat = config.ImageCatalog(f)
    py = cat.resolve("docker.io/library/python:3.11")
    assert py is not None and py.command is None
    env = py.base_env()
    assert env["PATH"] == f"{config.REPO}/.venv/bin:/usr/local/bin:/usr/bin:/bin"
    assert env["VIRTUAL_ENV"] == f"{config.REPO}/.venv" and env["PYTHONUNBUFFERED"] == "1"
    assert cat.resolve("quay.io/jupyter/base-notebook:latest").command == ["start-notebook.py"]
    assert cat.resolve("busybox").base_env() == {"PATH": "/usr/local/bin:/usr/bin:/bin"}
    assert cat.resolve("nginx") is None
    assert py.image_id.startswith("kubelab-env://default@sha256:")


def test_load_nodes(tmp_path):
    f = tmp_path / "nodes.yaml"
    f.write_text("nodes:\n"
                 "  - {name: a, podCIDR: 10.244.1.0/24, capacity: {cpu: 4, nvidia.com/gpu: 2}}\n"
                 "  - {name: b, podCIDR: 10.244.2.0/24, taints: [{key: k, effect: NoSchedule}]}\n")
    a, b = config.load_nodes(f)
    assert (a.kubelet_port, b.kubelet_port) == (10250, 10251)
    assert a.gpu_count == 2 and b.gpu_count == 0
    assert a.capacity["cpu"] == "4" and a.capacity["ephemeral-storage"] == "100Gi"
    f.write_text("nodes:\n  - {name: a, podCIDR: 192.168.0.0/24}\n")
    with pytest.raises(config.ConfigError):
        config.load_nodes(f)


def test_repo_node_and_image_files_parse():
    nodes = config.load_nodes(config.REPO / "devcluster" / "nodes.yaml")
    assert nodes and all(n.pod_cidr for n in nodes)
    assert config.ImageCatalog(config.REPO / "devcluster" / "images.yaml").resolve("python:3.11") is not None


# -- node-local host paths, mount propagation --------------------------------------------------------

def test_load_nodes_node_local_paths(tmp_path):
    f = tmp_path / "nodes.yaml"
    f.write_text("nodeLocalPaths: [/var/lib/kubelab/, /srv/x]\nnodes:\n  - {name: a, podCIDR: 10.244.1.0/24}\n")
    (a,) = config.load_nodes(f)
    assert a.local_paths == ("/var/lib/kubelab", "/srv/x")
    for bad in ("[relative/path]", "[/]", "/not/a/list"):
        f.write_text(f"nodeLocalPaths: {bad}\nnodes:\n  - {{name: a, podCIDR: 10.244.1.0/24}}\n")
        with pytest.raises(config.ConfigError):
            config.load_nodes(f)
    repo = config.load_nodes(config.REPO / "devcluster" / "nodes.yaml")
    assert all(n.local_paths == ("/var/lib/kubelab",) for n in repo)


def test_node_local_paths_map_prefixes_only(tmp_path):
    local = volumes.NodeLocalPaths(tmp_path / "rootfs", ("/var/lib/kubelab",))
    assert local.map("/var/lib/kubelab") == f"{tmp_path}/rootfs/var/lib/kubelab"
    assert local.map("/var/lib/kubelab/s3/") == f"{tmp_path}/rootfs/var/lib/kubelab/s3"
    for other in ("/var/lib/kubelabx", "/var/lib", "/dev/fuse", "/tmp", "/var/lib/kubelab/../x"):
        assert local.map(other) == other
    assert local.contains(f"{tmp_path}/rootfs/var/lib/kubelab/s3/users/a")
    assert not local.contains("/var/lib/kubelab/s3")
    assert not volumes.NodeLocalPaths(tmp_path / "rootfs").contains(f"{tmp_path}/rootfs/x")


def test_host_path_node_local_is_created_per_type(tmp_path):
    prefix = f"/kubelab-unit-{os.getpid()}"
    local = volumes.NodeLocalPaths(tmp_path / "rootfs", (prefix,))
    path = volumes.prepare_host_path({"path": f"{prefix}/s3", "type": "DirectoryOrCreate"}, local)
    assert path == f"{tmp_path}/rootfs{prefix}/s3" and os.path.isdir(path)
    assert not os.path.exists(prefix)  # the real host path is left alone
    # Unset type: created like the container runtime creates a missing bind source.
    assert os.path.isdir(volumes.prepare_host_path({"path": f"{prefix}/plain"}, local))
    f = volumes.prepare_host_path({"path": f"{prefix}/conf/f.ini", "type": "FileOrCreate"}, local)
    assert os.path.isfile(f)
    with pytest.raises(volumes.VolumeError, match=f"{prefix}/absent does not exist"):
        volumes.prepare_host_path({"path": f"{prefix}/absent", "type": "Directory"}, local)
    assert not (tmp_path / "rootfs" / prefix.lstrip("/") / "absent").exists()
    assert volumes.prepare_host_path({"path": "/dev/null", "type": "CharDevice"}, local) == "/dev/null"
    assert not os.path.exists(prefix)


def test_container_mounts_propagation_and_device_sources(tmp_path):
    vol = tmp_path / "vol"
    vol.mkdir()
    vols = {"v": volumes.PreparedVolume("v", str(vol)), "fuse": volumes.PreparedVolume("fuse", "/dev/null")}
    c = {"name": "c", "securityContext": {"privileged": True}, "volumeMounts": [
        {"name": "v", "mountPath": "/a", "mountPropagation": "Bidirectional"},
        {"name": "v", "mountPath": "/b", "mountPropagation": "HostToContainer"},
        {"name": "v", "mountPath": "/c", "mountPropagation": "None"},
        {"name": "v", "mountPath": "/d"},
        {"name": "fuse", "mountPath": "/dev/fuse"},
    ]}
    by_target = {m.target: m for m in volumes.container_mounts(c, vols, {}, {})}
    assert [by_target[t].propagation for t in ("/a", "/b", "/c", "/d")] == ["rshared", "rslave", "private", "private"]
    assert by_target["/dev/fuse"].is_file and not by_target["/a"].is_file  # a device is bound like a file
    with pytest.raises(volumes.VolumeError, match="only to privileged"):
        volumes.container_mounts(
            {"volumeMounts": [{"name": "v", "mountPath": "/a", "mountPropagation": "Bidirectional"}]}, vols, {}, {})
    with pytest.raises(volumes.VolumeError, match="invalid mountPropagation"):
        volumes.container_mounts({"volumeMounts": [{"name": "v", "mountPath": "/a", "mountPropagation": "rshared"}]},
                                 vols, {}, {})
    (vol / "file").write_text("x")
    with pytest.raises(volumes.VolumeError, match="subPath"):  # cannot create a directory below a file
        volumes.container_mounts({"volumeMounts": [{"name": "v", "mountPath": "/a", "subPath": "file/sub"}]},
                                 vols, {}, {})


def test_nested_readonly_subpath_mounts_parent_first(tmp_path):
    vol = tmp_path / "s3"
    vol.mkdir()
    vols = {"s3": volumes.PreparedVolume("s3", str(vol))}
    c = {"volumeMounts": [
        {"name": "s3", "mountPath": "/home/jovyan/datasets", "subPath": "datasets", "readOnly": True},
        {"name": "s3", "mountPath": "/home/jovyan", "subPath": "users/alice"},
    ]}
    mounts = volumes.container_mounts(c, vols, {}, {})
    assert [(m.target, m.source, m.read_only) for m in mounts] == [
        ("/home/jovyan", str(vol / "users/alice"), False), ("/home/jovyan/datasets", str(vol / "datasets"), True)]
    assert (vol / "users" / "alice").is_dir() and (vol / "datasets").is_dir()


def test_parse_mountinfo_and_containing_mount():
    text = ("27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
            "45 27 254:0 /srv/n1 /srv/n1 rw shared:5 - ext4 /dev/vda rw\n"
            "77 45 0:39 / /srv/n1/with\\040space rw shared:6 master:2 - fuse.s3fs s3fs rw\n"
            "78 45 0:40 / /srv/n1 rw - tmpfs t rw\n")
    entries = mounts.parse_mountinfo(text)
    assert entries[2].mount_point == "/srv/n1/with space" and entries[2].shared and entries[2].slave
    assert entries[2].fstype == "fuse.s3fs" and not entries[0].shared
    assert mounts.containing_mount("/srv/n1/with space/x", entries).mount_id == 77
    assert mounts.containing_mount("/srv/n1/other", entries).mount_id == 78  # the top of a stack
    assert mounts.containing_mount("/srv/n10", entries).mount_id == 27


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mounting needs root")


@needs_root
def test_shared_mounts_bind_once_and_release_unmounts_everything_below(tmp_path):
    root = tmp_path / "nodes" / "n1" / "rootfs"
    src = root / "var" / "lib" / "kubelab" / "s3"
    src.mkdir(parents=True)
    shared = mounts.SharedMounts(tmp_path / "agent" / "shared-mounts.json")
    try:
        shared.ensure(str(src), mounts.RSHARED, str(root))
        shared.ensure(str(src), mounts.RSHARED, str(root))  # already shared: nothing more
        at_root = [e for e in mounts.read_mountinfo() if e.mount_point == str(root)]
        assert len(at_root) == 1 and at_root[0].shared
        assert shared.recorded() == [str(root)]
        subprocess.run(["mount", "-t", "tmpfs", "x", str(src)], check=True)  # like a pod's FUSE mount
        subprocess.run(["mount", "-t", "tmpfs", "y", str(src)], check=True)  # stacked
        done = shared.release_all([str(tmp_path / "nodes")])
        assert sorted(done) == sorted([str(src), str(src), str(root)])
        assert not [e for e in mounts.read_mountinfo() if e.mount_point.startswith(str(tmp_path))]
        assert shared.recorded() == []
    finally:
        mounts.unmount_under([str(tmp_path)])


def _propagation_child(shim_path: str, src: str, target: str, propagation: str, script: str) -> str:
    """Python code for a child that sets up one mount like the shim, then runs ``script``."""
    return (
        "import importlib.util, json, subprocess, sys\n"
        f"spec = importlib.util.spec_from_file_location('kl_shim', {shim_path!r})\n"
        "shim = importlib.util.module_from_spec(spec); spec.loader.exec_module(shim)\n"
        f"ms = [{{'source': {src!r}, 'target': {target!r}, 'read_only': False, 'is_file': False, "
        f"'propagation': {propagation!r}}}]\n"
        "clones = shim.clone_trees(ms)\n"
        "shim.enter_namespaces({})\n"
        "shim.bind_mounts(ms, clones)\n"
        f"sys.exit(subprocess.run(['sh', '-c', {script!r}]).returncode)\n")


@needs_root
@pytest.mark.parametrize("propagation", ["rshared", "rslave", "private"])
def test_shim_propagation_modes(tmp_path, propagation):
    """rshared: a mount made in the container reaches the host; rslave: a mount made on the
    host later reaches the container; private: neither."""
    import sys

    root = tmp_path / "root"
    src, target = root / "src", tmp_path / "target"
    (src / "m").mkdir(parents=True)
    target.mkdir()
    shared = mounts.SharedMounts(tmp_path / "shared.json")
    shim_path = str(Path(volumes.__file__).with_name("shim.py"))
    try:
        if propagation != "private":
            shared.ensure(str(src), propagation, str(root))
        # The child mounts a tmpfs at target/m (seen on the host if rshared), then waits for
        # the host's mount at src/h (seen in the child if rslave or rshared).
        (src / "h").mkdir()
        script = (f"mount -t tmpfs c {target}/m && touch {target}/m/from-container && touch {tmp_path}/mounted; "
                  f"i=0; until [ -e {target}/h/from-host ] || [ $i -gt 30 ]; do i=$((i+1)); sleep 0.1; done; "
                  f"[ -e {target}/h/from-host ] && echo saw-host || echo no-host")
        child = subprocess.Popen([sys.executable, "-c", _propagation_child(shim_path, str(src), str(target),
                                                                           propagation, script)],
                                 stdout=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 10
        while not (tmp_path / "mounted").exists():
            assert child.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        subprocess.run(["mount", "-t", "tmpfs", "h", str(src / "h")], check=True)
        (src / "h" / "from-host").touch()
        out, _ = child.communicate(timeout=20)
        assert child.returncode == 0
        seen_on_host = (src / "m" / "from-container").exists()
        assert (seen_on_host, out.strip()) == {"rshared": (True, "saw-host"), "rslave": (False, "saw-host"),
                                               "private": (False, "no-host")}[propagation]
        assert not (target / "m" / "from-container").exists()  # the host's target stays untouched
    finally:
        mounts.unmount_under([str(tmp_path)])


def test_a_shim_still_setting_up_is_container_creating_and_started_at_never_changes():
    setting_up = view(run(running=True, started_at=None))
    assert status.container_status(setting_up)["state"]["waiting"] == {"reason": "ContainerCreating"}
    assert status.pod_phase("Always", [], [setting_up], True) == "Pending"
    started = status.container_status(view(run(running=True)))["state"]["running"]
    assert started == {"startedAt": "2026-11-23T10:00:00Z"}  # the process's own start, to the second
