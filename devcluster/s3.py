"""devcluster's S3: a MinIO server, per-user scoped credentials and s3fs mounts.

MinIO runs as daemon ``s3`` (see procs.py), listens on ``:9000`` so that the host
reaches it at 127.0.0.1:9000 and pods at 10.244.0.1:9000 (the bridge address),
and keeps its data in ``<state>/s3/data``. Its root credentials are generated
once and kept in ``<state>/s3/credentials.json``; ``<state>/s3.env`` exports
them for tests and the demo.

Per-user credentials: MinIO's STS ``AssumeRole`` with an inline session policy
(``user_session_policy``). The caller of AssumeRole is a platform IAM user,
``kubelab-broker``, whose own policy is limited to the kubelab bucket; the
temporary credentials get the intersection of both policies. The broker user
is created through MinIO's admin REST API (``/minio/admin/v3``, SigV4-signed
with the root credentials; the add-user body is encrypted the way madmin-go's
``EncryptData`` does it: PBKDF2-SHA256 + AES-256-GCM in sio-go's stream
format). That needs no ``mc`` binary.

Layout (see the architecture doc): ``s3://<bucket>/users/<user>/...`` is the
user's own (read-write), ``s3://<bucket>/datasets/...`` is shared, read-only.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import shlex
import shutil
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

import requests

from . import procs
from .paths import BRIDGE_IP, State

DAEMON = "s3"
PORT = 9000
CONSOLE_ADDRESS = "127.0.0.1:9001"  # the console is switched off; keep it on loopback anyway
REGION = "us-east-1"
DEFAULT_BUCKET = "kubelab"
BROKER_USER = "kubelab-broker"
BROKER_POLICY = "kubelab-broker"
ENDPOINT = f"http://127.0.0.1:{PORT}"
POD_ENDPOINT = f"http://{BRIDGE_IP}:{PORT}"
BUILD_SCRIPT = Path(__file__).resolve().parent / "build-minio.sh"


# -- state files ---------------------------------------------------------------
def _dir(state: State) -> Path:
    return state.root / "s3"


def _creds_file(state: State) -> Path:
    return _dir(state) / "credentials.json"


def _mounts_file(state: State) -> Path:
    return _dir(state) / "mounts.json"


def _passwd_file(state: State) -> Path:
    return _dir(state) / "passwd-s3fs"


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _credentials(state: State) -> dict:
    """Root and broker credentials, generated on first use and kept in state."""
    path = _creds_file(state)
    try:
        creds = json.loads(path.read_text())
    except (OSError, ValueError):
        creds = {}
    changed = False
    defaults = {
        "root_user": lambda: "kubelab-root",
        "root_password": lambda: secrets.token_urlsafe(30),
        "broker_access_key": lambda: BROKER_USER,
        "broker_secret_key": lambda: secrets.token_urlsafe(30),
    }
    for key, make in defaults.items():
        if not creds.get(key):
            creds[key] = make()
            changed = True
    if changed:
        _write_private(path, json.dumps(creds, indent=2) + "\n")
    return creds


def bucket_name(state: State | None = None) -> str:
    """The bucket: KUBELAB_S3_BUCKET, else the one ``up`` recorded, else ``kubelab``."""
    if os.environ.get("KUBELAB_S3_BUCKET"):
        return os.environ["KUBELAB_S3_BUCKET"]
    if state is not None:
        try:
            return json.loads(_creds_file(state).read_text()).get("bucket") or DEFAULT_BUCKET
        except (OSError, ValueError):
            pass
    return DEFAULT_BUCKET


def env(state: State) -> dict[str, str]:
    """The variables ``<state>/s3.env`` exports (empty if S3 was never brought up)."""
    out: dict[str, str] = {}
    try:
        text = state.s3_env.read_text()
    except OSError:
        return out
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("export "):
            line = line[len("export "):]
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        parts = shlex.split(value)
        out[key.strip()] = parts[0] if parts else ""
    return out


def _write_env(state: State, creds: dict, bucket: str) -> None:
    values = {
        "AWS_ENDPOINT_URL": ENDPOINT,
        "AWS_ACCESS_KEY_ID": creds["root_user"],
        "AWS_SECRET_ACCESS_KEY": creds["root_password"],
        "AWS_DEFAULT_REGION": REGION,
        "KUBELAB_S3_BUCKET": bucket,
        # Where pods reach the same server (the bridge address).
        "KUBELAB_S3_POD_ENDPOINT": POD_ENDPOINT,
    }
    lines = ["# devcluster S3 (MinIO); written by devcluster.s3.up"]
    lines += [f"export {k}={shlex.quote(v)}" for k, v in values.items()]
    _write_private(state.s3_env, "\n".join(lines) + "\n")


# -- the binary ----------------------------------------------------------------
def minio_binary() -> Path:
    """The MinIO server binary: $KUBELAB_MINIO_BIN, else build-minio.sh's cached build."""
    override = os.environ.get("KUBELAB_MINIO_BIN")
    if override:
        return Path(override)
    r = subprocess.run(["bash", str(BUILD_SCRIPT)], stdout=subprocess.PIPE, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"build-minio.sh failed with exit status {r.returncode}")
    return Path(r.stdout.strip().splitlines()[-1])


# -- lifecycle -----------------------------------------------------------------
def _healthy(timeout: float = 2.0) -> bool:
    try:
        return requests.get(f"{ENDPOINT}/minio/health/ready", timeout=timeout).status_code == 200
    except requests.RequestException:
        return False


def s3_client(state: State, **kwargs: Any):
    """A boto3 S3 client with the root credentials (platform side, never for users)."""
    import boto3
    from botocore.config import Config

    creds = _credentials(state)
    return boto3.client(
        "s3",
        endpoint_url=ENDPOINT,
        aws_access_key_id=creds["root_user"],
        aws_secret_access_key=creds["root_password"],
        region_name=REGION,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3}),
        **kwargs,
    )


def up(state: State, timeout: float = 90.0) -> dict:
    """Start MinIO (idempotent), create the bucket and broker user, write s3.env."""
    creds = _credentials(state)
    bucket = bucket_name()  # env override or the default; recorded below
    data = _dir(state) / "data"
    data.mkdir(parents=True, exist_ok=True)
    if not procs.running_pid(state, DAEMON):
        binary = minio_binary()
        procs.start(
            state,
            DAEMON,
            [str(binary), "server", "--address", f":{PORT}", "--console-address", CONSOLE_ADDRESS,
             "--quiet", "--anonymous", str(data)],
            env={
                "MINIO_ROOT_USER": creds["root_user"],
                "MINIO_ROOT_PASSWORD": creds["root_password"],
                "MINIO_BROWSER": "off",
                "MINIO_SITE_REGION": REGION,
                "MINIO_UPDATE": "off",
                "MINIO_PROMETHEUS_AUTH_TYPE": "jwt",
            },
        )
    deadline = time.monotonic() + timeout
    while not _healthy():
        if not procs.running_pid(state, DAEMON):
            raise RuntimeError("MinIO exited while starting:\n" + procs.tail(state, DAEMON))
        if time.monotonic() > deadline:
            raise RuntimeError(f"MinIO not healthy after {timeout:.0f}s:\n" + procs.tail(state, DAEMON))
        time.sleep(0.3)

    _ensure_bucket(state, bucket, deadline)
    _ensure_broker(state, creds, bucket)
    creds["bucket"] = bucket
    _write_private(_creds_file(state), json.dumps(creds, indent=2) + "\n")
    _write_env(state, creds, bucket)
    return status(state)


def _ensure_bucket(state: State, bucket: str, deadline: float) -> None:
    from botocore.exceptions import ClientError

    s3 = s3_client(state)
    while True:
        try:
            s3.head_bucket(Bucket=bucket)
            return
        except ClientError as e:
            code = str(e.response.get("Error", {}).get("Code"))
            if code not in ("404", "NoSuchBucket", "NotFound"):
                # Right after start MinIO may still answer 503 while it initialises.
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
                continue
        try:
            s3.create_bucket(Bucket=bucket)
            return
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                return
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def down(state: State) -> bool:
    """Unmount every s3fs mount this state made and stop MinIO. Data is kept."""
    for mountpoint in list(_load_mounts(state)):
        unmount(mountpoint, state)
    return procs.stop(state, DAEMON)


def status(state: State) -> dict:
    pid = procs.running_pid(state, DAEMON)
    return {
        "name": DAEMON,
        "running": bool(pid),
        "pid": pid,
        "healthy": bool(pid) and _healthy(),
        "endpoint": ENDPOINT,
        "pod_endpoint": POD_ENDPOINT,
        "bucket": bucket_name(state),
        "data": str(_dir(state) / "data"),
        "env_file": str(state.s3_env),
        "mounts": sorted(_load_mounts(state)),
    }


# -- MinIO admin API (no mc needed) -------------------------------------------
_SIO_BUF = 1 << 14  # sio-go's BufSize


def madmin_encrypt(password: str, data: bytes, salt: bytes | None = None, nonce: bytes | None = None) -> bytes:
    """Encrypt ``data`` like madmin-go's EncryptData (its PBKDF2/AES-GCM variant, id 0x02).

    ``salt(32) | 0x02 | nonce(8) | sio-go stream``; the stream seals 16 KiB
    fragments with AES-256-GCM under ``nonce || le32(seq)``; every fragment's
    associated data is ``flag || tag``, where ``tag`` is the GCM tag of an empty
    message under sequence number 0 and ``flag`` is 0x80 on the final fragment.
    """
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

    salt = salt if salt is not None else os.urandom(32)
    nonce = nonce if nonce is not None else os.urandom(8)
    key = PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=salt, iterations=8192).derive(password.encode())
    aead = AESGCM(key)

    def n(seq: int) -> bytes:
        return nonce + seq.to_bytes(4, "little")

    tag = aead.encrypt(n(0), b"", None)
    out = [salt, b"\x02", nonce]
    seq = 1
    while len(data) > _SIO_BUF:
        out.append(aead.encrypt(n(seq), data[:_SIO_BUF], b"\x00" + tag))
        data = data[_SIO_BUF:]
        seq += 1
    out.append(aead.encrypt(n(seq), data, b"\x80" + tag))
    return b"".join(out)


def _admin(state: State, method: str, op: str, query: dict | None = None, body: bytes = b"") -> requests.Response:
    """One SigV4-signed call to MinIO's admin API as root."""
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    creds = _credentials(state)
    url = f"{ENDPOINT}/minio/admin/v3/{op}"
    if query:
        url += "?" + urllib.parse.urlencode(query, quote_via=urllib.parse.quote)
    req = AWSRequest(method=method, url=url, data=body)
    S3SigV4Auth(Credentials(creds["root_user"], creds["root_password"]), "s3", REGION).add_auth(req)
    r = requests.request(method, url, data=body, headers=dict(req.headers.items()), timeout=30)
    if r.status_code >= 300:
        raise RuntimeError(f"MinIO admin {op}: {r.status_code} {r.text[:500]}")
    return r


def broker_policy(bucket: str) -> dict:
    """The platform broker user's own policy: everything in ``bucket``, nothing else."""
    return {
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Action": ["s3:*"],
            "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
        }],
    }


def _ensure_broker(state: State, creds: dict, bucket: str) -> None:
    """Create/refresh the broker IAM user and its policy (all three calls are idempotent)."""
    _admin(state, "PUT", "add-canned-policy", {"name": BROKER_POLICY},
           json.dumps(broker_policy(bucket)).encode())
    req = {"secretKey": creds["broker_secret_key"], "status": "enabled"}
    _admin(state, "PUT", "add-user", {"accessKey": creds["broker_access_key"]},
           madmin_encrypt(creds["root_password"], json.dumps(req).encode()))
    _admin(state, "PUT", "set-user-or-group-policy",
           {"policyName": BROKER_POLICY, "userOrGroup": creds["broker_access_key"], "isGroup": "false"})


# -- per-user scoped credentials ----------------------------------------------


def broker(state: State):
    """The platform's STS broker (what KubelabSpawner is configured with)."""
    from kubelab.spawner.s3broker import Broker

    creds = _credentials(state)
    return Broker(ENDPOINT, creds["broker_access_key"], creds["broker_secret_key"], bucket_name(state), REGION)


def scoped_credentials(state: State, user: str, duration_seconds: int = 3600) -> dict:
    """Short-lived credentials for ``user``, exactly as KubelabSpawner gets them.

    Returns ``access_key_id``, ``secret_access_key``, ``session_token``,
    ``expiration`` (ISO 8601), ``endpoint_url``, ``region``, ``bucket`` and
    ``prefix`` (``users/<user>/``). MinIO accepts 900 s up to 365 days.
    """
    from kubelab.core.s3layout import user_prefix

    c = broker(state).assume_sync(user, duration_seconds)
    return {
        "access_key_id": c["AccessKeyId"],
        "secret_access_key": c["SecretAccessKey"],
        "session_token": c["SessionToken"],
        "expiration": c["Expiration"],
        "endpoint_url": ENDPOINT,
        "region": REGION,
        "bucket": bucket_name(state),
        "prefix": user_prefix(user),
    }


def credentials_env(creds: dict, endpoint_url: str | None = None) -> dict[str, str]:
    """``scoped_credentials``' result as the AWS_* variables a pod or process gets."""
    return {
        "AWS_ENDPOINT_URL": endpoint_url or creds["endpoint_url"],
        "AWS_ACCESS_KEY_ID": creds["access_key_id"],
        "AWS_SECRET_ACCESS_KEY": creds["secret_access_key"],
        "AWS_SESSION_TOKEN": creds["session_token"],
        "AWS_DEFAULT_REGION": creds["region"],
        "KUBELAB_S3_BUCKET": creds["bucket"],
    }


# -- s3fs mounts ----------------------------------------------------------------
def _load_mounts(state: State) -> dict[str, dict]:
    try:
        return json.loads(_mounts_file(state).read_text())
    except (OSError, ValueError):
        return {}


def _save_mounts(state: State, mounts: dict[str, dict]) -> None:
    _write_private(_mounts_file(state), json.dumps(mounts, indent=2) + "\n")


def _mount_daemon(mountpoint: str) -> str:
    return "s3fs-" + hashlib.sha1(mountpoint.encode()).hexdigest()[:10]


def is_mounted(mountpoint: str | Path) -> bool:
    target = os.path.realpath(str(mountpoint))
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                fields = line.split()
                if len(fields) > 1 and fields[1].replace("\\040", " ") == target:
                    return True
    except OSError:
        pass
    return False


def mount(state: State, mountpoint: str | Path, prefix: str | None = None, timeout: float = 20.0) -> dict:
    """Mount the bucket (or ``prefix`` in it) at ``mountpoint`` with s3fs-fuse.

    s3fs runs in the foreground as a devcluster daemon (``s3fs-<hash>``), so
    ``down`` can always find and stop it. Uses the root credentials (passwd
    file in state); this is a platform-side mount, not a user's.
    """
    if shutil.which("s3fs") is None:
        raise RuntimeError("s3fs is not installed (Debian package s3fs)")
    mp = os.path.realpath(str(mountpoint))
    Path(mp).mkdir(parents=True, exist_ok=True)
    name = _mount_daemon(mp)
    if is_mounted(mp) and procs.running_pid(state, name):
        return {"mountpoint": mp, "daemon": name, "pid": procs.running_pid(state, name)}
    if is_mounted(mp):  # stale (e.g. s3fs was killed)
        subprocess.run(["umount", "-l", mp], check=False)
    creds = _credentials(state)
    passwd = _passwd_file(state)
    _write_private(passwd, f"{creds['root_user']}:{creds['root_password']}\n")
    bucket = bucket_name(state)
    source = bucket + (":/" + prefix.strip("/") if prefix and prefix.strip("/") else "")
    opts = ",".join([
        f"url={ENDPOINT}",
        "use_path_request_style",
        "allow_other",
        f"endpoint={REGION}",
        f"passwd_file={passwd}",
        "stat_cache_expire=1",
        "dbglevel=warn",
    ])
    procs.stop(state, name, grace=2.0)
    pid = procs.start(state, name, ["s3fs", source, mp, "-f", "-o", opts])
    mounts = _load_mounts(state)
    mounts[mp] = {"daemon": name, "source": source}
    _save_mounts(state, mounts)
    deadline = time.monotonic() + timeout
    while not is_mounted(mp):
        if not procs.running_pid(state, name) or time.monotonic() > deadline:
            log = procs.tail(state, name)
            unmount(mp, state)
            raise RuntimeError(f"s3fs did not mount {source} at {mp}:\n{log}")
        time.sleep(0.1)
    return {"mountpoint": mp, "daemon": name, "pid": pid, "source": source}


def unmount(mountpoint: str | Path, state: State | None = None, timeout: float = 10.0) -> None:
    """Unmount an s3fs mount and wait for its s3fs process to end."""
    mp = os.path.realpath(str(mountpoint))
    state = state or State.default()
    name = _mount_daemon(mp)
    if is_mounted(mp):
        r = subprocess.run(["fusermount", "-u", mp], capture_output=True, text=True)
        if r.returncode != 0:
            subprocess.run(["umount", "-l", mp], check=False, capture_output=True)
    # s3fs -f exits once unmounted; stop() waits for it (and kills it if needed).
    deadline = time.monotonic() + timeout
    while procs.running_pid(state, name) and time.monotonic() < deadline:
        time.sleep(0.1)
    procs.stop(state, name, grace=2.0)
    if is_mounted(mp):  # killed before the unmount finished: detach the dead mount
        subprocess.run(["umount", "-l", mp], check=False, capture_output=True)
    mounts = _load_mounts(state)
    if mounts.pop(mp, None) is not None:
        _save_mounts(state, mounts)


# -- command line ---------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m devcluster.s3", description=__doc__.splitlines()[0])
    p.add_argument("--state-dir", type=Path, default=None)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("up")
    sub.add_parser("down")
    sub.add_parser("status")
    c = sub.add_parser("credentials", help="print scoped credentials for a user as JSON")
    c.add_argument("user")
    c.add_argument("--duration", type=int, default=3600)
    m = sub.add_parser("mount")
    m.add_argument("mountpoint")
    m.add_argument("--prefix")
    u = sub.add_parser("unmount")
    u.add_argument("mountpoint")
    a = p.parse_args(argv)
    state = State(a.state_dir.resolve()) if a.state_dir else State.default()
    if a.cmd == "up":
        out: Any = up(state)
    elif a.cmd == "down":
        out = {"stopped": down(state)}
    elif a.cmd == "status":
        out = status(state)
    elif a.cmd == "credentials":
        out = scoped_credentials(state, a.user, a.duration)
    elif a.cmd == "mount":
        out = mount(state, a.mountpoint, a.prefix)
    else:
        unmount(a.mountpoint, state)
        out = {"unmounted": a.mountpoint}
    json.dump(out, sys.stdout, indent=2, default=str)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
