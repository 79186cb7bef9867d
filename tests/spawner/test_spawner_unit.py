"""KubelabSpawner's configuration surface and pure helpers (no cluster)."""
from __future__ import annotations

from pathlib import Path

import pytest
from kubespawner import KubeSpawner

from kubelab.spawner import KubelabSpawner
from kubelab.spawner.capacity import free_on, headroom
from kubelab.spawner.s3broker import Broker, S3ConfigError

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
OWN = {n: t for n, t in KubelabSpawner.class_traits(config=True).items()
       if n not in KubeSpawner.class_traits(config=True)}


def test_every_option_has_help_with_an_example_and_is_in_the_readme():
    assert len(OWN) > 10
    for name, trait in OWN.items():
        assert trait.help and f"c.KubelabSpawner.{name}" in trait.help, f"{name}: help needs an example line"
        assert f"`{name}`" in README, f"{name} is missing from the README's configuration reference"


def test_entry_point_names_the_spawner():
    from importlib.metadata import entry_points

    eps = {e.name: e.value for e in entry_points(group="jupyterhub.spawners")}
    assert eps.get("kubelab") == "kubelab.spawner:KubelabSpawner"


def test_bad_resource_groups_are_refused_at_startup():
    from traitlets.config import Config

    cfg = Config()
    cfg.KubelabSpawner.resource_groups = [{"name": "GPU!", "sizes": []}]
    with pytest.raises(ValueError, match="invalid resource group name"):
        KubelabSpawner._validate_resource_groups(None, {"value": cfg.KubelabSpawner.resource_groups})


def test_missing_sts_configuration_gives_a_clear_message():
    with pytest.raises(S3ConfigError, match="needs an S3 server with STS AssumeRole.*s3_sts_endpoint_url"):
        Broker("", "key", "secret", "kubelab").check()


def node(name, labels, cpu="8", gpus="4"):
    return {"metadata": {"name": name, "labels": labels},
            "status": {"allocatable": {"cpu": cpu, "memory": "16Gi", "nvidia.com/gpu": gpus}}}


def pod(node_name, cpu="1", gpus=None, phase="Running"):
    res = {"requests": {"cpu": cpu}}
    if gpus:
        res["limits"] = {"nvidia.com/gpu": str(gpus)}
    return {"spec": {"nodeName": node_name, "containers": [{"resources": res}]}, "status": {"phase": phase}}


def test_free_capacity_is_allocatable_minus_requests_on_matching_nodes():
    nodes = [node("gpu-0", {"rg": "gpu"}), node("cpu-0", {"rg": "cpu"}, gpus="0")]
    pods = [pod("gpu-0", "2", gpus=3), pod("gpu-0", "1", gpus=1, phase="Succeeded"), pod("cpu-0", "4")]
    free = free_on(nodes, pods, {"rg": "gpu"}, "nvidia.com/gpu")
    assert free["gpus"] == 1 and free["gpus_total"] == 4 and free["cpu"] == 6 and free["nodes"] == 1


def test_quota_headroom():
    q = {"status": {"hard": {"requests.cpu": "4", "requests.memory": "8Gi", "requests.nvidia.com/gpu": "2"},
                    "used": {"requests.cpu": "1500m", "requests.memory": "2Gi", "requests.nvidia.com/gpu": "1"}}}
    assert headroom(q) == {"requests.cpu": "2.5", "requests.memory": "6.0Gi", "requests.nvidia.com/gpu": "1"}
    assert headroom(None) == {}


def test_form_keeps_only_the_chosen_groups_size_and_gpus():
    form = {"resource_group": ["gpu-a100"], "size-cpu": ["small"], "size-gpu-a100": ["standard"],
            "gpus-gpu-a100": ["2"], "gpus-gpu-a100-approval": ["1"]}
    assert KubelabSpawner.options_from_form(None, form) == {"resource_group": "gpu-a100", "size": "standard",
                                                            "gpus": "2"}
    assert KubelabSpawner.options_from_form(None, {"resource_group": ["cpu"], "size-cpu": ["small"],
                                                   "gpus-gpu-a100": ["1"]}) == {"resource_group": "cpu",
                                                                                "size": "small"}


def test_credentials_are_renewed_only_close_to_their_expiry():
    import datetime as dt

    from kubelab.spawner.spawner import _parse_time, renewal_due

    now = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.timezone.utc)
    assert _parse_time("2026-11-23T15:00:00Z") == now + dt.timedelta(hours=3)
    assert _parse_time("2026-11-23T15:00:00+00:00") == _parse_time("2026-11-23T15:00:00")
    assert _parse_time("") is None
    assert not renewal_due(now + dt.timedelta(hours=4), now, 3 * 3600)
    assert renewal_due(now + dt.timedelta(hours=3), now, 3 * 3600)
    assert renewal_due(now - dt.timedelta(minutes=1), now, 3 * 3600)  # already expired: renew at once


def test_the_server_switches_to_credentials_renewed_in_its_mounted_secret(tmp_path):
    """The kubelet updates a Secret volume by swapping its ``..data`` link; the
    client is rebuilt with the new keys (no S3 call needed to see which it holds)."""
    from kubelab.server_extension.s3 import S3

    def publish(version: str, key: str) -> None:
        d = tmp_path / version
        d.mkdir()
        for name, value in (("AWS_ACCESS_KEY_ID", key), ("AWS_SECRET_ACCESS_KEY", "s-" + key),
                            ("AWS_SESSION_TOKEN", "t-" + key)):
            (d / name).write_text(value)
            if not (tmp_path / name).is_symlink():
                (tmp_path / name).symlink_to(f"..data/{name}")
        tmp = tmp_path / "..data_tmp"
        tmp.symlink_to(version)
        tmp.replace(tmp_path / "..data")

    env = {"KUBELAB_S3_BUCKET": "b", "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "FROM-ENV",
           "AWS_SECRET_ACCESS_KEY": "x", "AWS_SESSION_TOKEN": "y", "KUBELAB_S3_CREDENTIALS_DIR": str(tmp_path)}
    publish("v1", "FIRST")
    s3 = S3(environ=env)
    first = s3.client
    assert first._request_signer._credentials.access_key == "FIRST"
    assert s3.client is first  # unchanged files: the same client
    publish("v2", "RENEWED")
    assert s3.client._request_signer._credentials.access_key == "RENEWED"
    assert s3.client._request_signer._credentials.token == "t-RENEWED"
    without_files = S3(environ={**env, "KUBELAB_S3_CREDENTIALS_DIR": str(tmp_path / "none")})
    assert without_files.client._request_signer._credentials.access_key == "FROM-ENV"
