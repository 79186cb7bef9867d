"""devcluster S3 (MinIO) end to end: objects, per-user scoped credentials, s3fs mounts."""
from __future__ import annotations

import uuid

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from devcluster import procs, s3


def _client(endpoint: str, key: str, secret: str, token: str | None = None):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        aws_session_token=token,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
    )


@pytest.fixture(scope="module")
def admin_s3(s3_env):
    return _client(s3_env["AWS_ENDPOINT_URL"], s3_env["AWS_ACCESS_KEY_ID"], s3_env["AWS_SECRET_ACCESS_KEY"])


@pytest.fixture(scope="module")
def bucket(s3_env) -> str:
    return s3_env["KUBELAB_S3_BUCKET"]


@pytest.fixture
def run_id() -> str:
    return uuid.uuid4().hex[:8]


def _code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code"))


def test_env_file_has_the_contract_variables(s3_env):
    for key in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION",
                "KUBELAB_S3_BUCKET"):
        assert s3_env.get(key), key
    assert s3_env["AWS_DEFAULT_REGION"] == "us-east-1"


def test_put_list_get(admin_s3, bucket, run_id):
    prefix = f"tests/{run_id}/"
    keys = [f"{prefix}a.txt", f"{prefix}sub/b.txt"]
    for i, key in enumerate(keys):
        admin_s3.put_object(Bucket=bucket, Key=key, Body=f"hello {i}".encode())
    try:
        listed = admin_s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
        assert sorted(o["Key"] for o in listed["Contents"]) == keys
        body = admin_s3.get_object(Bucket=bucket, Key=keys[1])["Body"].read()
        assert body == b"hello 1"
        top = admin_s3.list_objects_v2(Bucket=bucket, Prefix=prefix, Delimiter="/")
        assert [p["Prefix"] for p in top.get("CommonPrefixes", [])] == [f"{prefix}sub/"]
    finally:
        admin_s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys]})


def test_scoped_credentials_confine_a_user(devcluster, s3_env, admin_s3, bucket, run_id):
    user_a, user_b = f"ua{run_id}", f"ub{run_id}"
    dataset_key = f"datasets/t{run_id}/data.csv"
    admin_s3.put_object(Bucket=bucket, Key=dataset_key, Body=b"x,y\n1,2\n")
    admin_s3.put_object(Bucket=bucket, Key=f"users/{user_b}/private.txt", Body=b"b's")
    creds = s3.scoped_credentials(devcluster, user_a, duration_seconds=900)
    assert creds["prefix"] == f"users/{user_a}/" and creds["session_token"]
    a = _client(s3_env["AWS_ENDPOINT_URL"], creds["access_key_id"], creds["secret_access_key"],
                creds["session_token"])
    try:
        # own prefix: read-write and listable
        a.put_object(Bucket=bucket, Key=f"users/{user_a}/x", Body=b"mine")
        assert a.get_object(Bucket=bucket, Key=f"users/{user_a}/x")["Body"].read() == b"mine"
        own = a.list_objects_v2(Bucket=bucket, Prefix=f"users/{user_a}/")
        assert [o["Key"] for o in own["Contents"]] == [f"users/{user_a}/x"]
        # datasets: read-only
        assert a.get_object(Bucket=bucket, Key=dataset_key)["Body"].read() == b"x,y\n1,2\n"
        assert a.list_objects_v2(Bucket=bucket, Prefix=f"datasets/t{run_id}/")["KeyCount"] == 1
        denied = [
            lambda: a.put_object(Bucket=bucket, Key=f"datasets/t{run_id}/evil.csv", Body=b"no"),
            lambda: a.delete_object(Bucket=bucket, Key=dataset_key),
            lambda: a.get_object(Bucket=bucket, Key=f"users/{user_b}/private.txt"),
            lambda: a.put_object(Bucket=bucket, Key=f"users/{user_b}/x", Body=b"no"),
            lambda: a.list_objects_v2(Bucket=bucket, Prefix=f"users/{user_b}/"),
            lambda: a.list_objects_v2(Bucket=bucket),
            lambda: a.list_objects_v2(Bucket=bucket, Prefix=f"users/{user_a[:-1]}"),
        ]
        for i, call in enumerate(denied):
            with pytest.raises(ClientError) as err:
                call()
            assert _code(err.value) == "AccessDenied", i
        assert admin_s3.get_object(Bucket=bucket, Key=dataset_key)["Body"].read() == b"x,y\n1,2\n"
    finally:
        for key in (dataset_key, f"users/{user_a}/x", f"users/{user_b}/private.txt"):
            admin_s3.delete_object(Bucket=bucket, Key=key)


def test_s3fs_mount_shows_objects_and_writes_through(devcluster, admin_s3, bucket, run_id, tmp_path):
    prefix = f"tests/{run_id}"
    admin_s3.put_object(Bucket=bucket, Key=f"{prefix}/seen.txt", Body=b"from boto3")
    mountpoint = tmp_path / "mnt"
    info = s3.mount(devcluster, mountpoint, prefix=prefix)
    try:
        assert s3.is_mounted(mountpoint)
        assert (mountpoint / "seen.txt").read_bytes() == b"from boto3"
        (mountpoint / "written.txt").write_bytes(b"from the mount")
        body = admin_s3.get_object(Bucket=bucket, Key=f"{prefix}/written.txt")["Body"].read()
        assert body == b"from the mount"
    finally:
        s3.unmount(mountpoint, devcluster)
        admin_s3.delete_objects(Bucket=bucket, Delete={"Objects": [
            {"Key": f"{prefix}/seen.txt"}, {"Key": f"{prefix}/written.txt"}]})
    assert not s3.is_mounted(mountpoint)
    assert procs.running_pid(devcluster, info["daemon"]) is None
    assert str(mountpoint.resolve()) not in s3.status(devcluster)["mounts"]
