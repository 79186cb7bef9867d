"""The user-pod side's one S3 client layer.

Uses only the user's own short-lived, prefix-scoped credentials: the files of
the ``kubelab-s3`` Secret that KubelabSpawner mounts in the server
(``$KUBELAB_S3_CREDENTIALS_DIR``: ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_SESSION_TOKEN``), with ``AWS_ENDPOINT_URL`` and ``KUBELAB_S3_BUCKET`` in
the environment. The hub renews the Secret before the credentials expire and
the client picks the new files up, so a server that runs for days keeps its S3
access. Without the files (outside a user pod) the same variables are read from
the environment. Platform keys never reach here.
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping
from urllib.parse import urlparse

from kubelab.core.s3layout import CREDENTIALS_DIR_ENV

MiB = 1024 * 1024
CREDENTIAL_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


class S3Error(Exception):
    """An S3 failure as one line: ``status`` is the HTTP status to give the user."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def parse_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key)."""
    u = urlparse(uri)
    if u.scheme != "s3" or not u.netloc:
        raise S3Error(400, f"{uri!r} is not an s3://bucket/key URI")
    return u.netloc, u.path.lstrip("/")


@dataclass
class Counter:
    """Counts the S3 requests a client makes (tests and benchmarks read it)."""

    calls: dict[str, int] = field(default_factory=dict)

    def __call__(self, model: Any = None, **kw: Any) -> None:
        name = getattr(model, "name", None) or kw.get("event_name", "?").rsplit(".", 1)[-1]
        self.calls[name] = self.calls.get(name, 0) + 1

    @property
    def total(self) -> int:
        return sum(self.calls.values())


class S3:
    """boto3 over the user's credentials, with user-facing errors."""

    def __init__(self, environ: Mapping[str, str] | None = None, multipart_threshold: int = 64 * MiB):
        env = os.environ if environ is None else environ
        self.bucket = env.get("KUBELAB_S3_BUCKET", "")
        self.endpoint = env.get("AWS_ENDPOINT_URL") or None
        self._env = {k: env.get(k) for k in CREDENTIAL_KEYS}
        self._dir = env.get(CREDENTIALS_DIR_ENV) or None
        self._stamp: object = None  # which credentials the client was built with
        self.multipart_threshold = multipart_threshold
        self.counter = Counter()
        self._client = None

    def _files_stamp(self) -> object:
        """What identifies the mounted credentials' current version (the kubelet
        swaps a Secret volume's ``..data`` link on every update); None without files."""
        if not self._dir:
            return None
        try:
            return os.readlink(os.path.join(self._dir, "..data"))
        except OSError:
            try:
                return os.stat(os.path.join(self._dir, "AWS_SESSION_TOKEN")).st_mtime_ns
            except OSError:
                return None

    def credentials(self) -> dict[str, str | None]:
        """The credentials in use now: the mounted files where present (renewed
        by the hub), else the environment the server started with."""
        if self._dir:
            try:
                files = {k: Path(self._dir, k).read_text().strip() for k in CREDENTIAL_KEYS}
                if files["AWS_ACCESS_KEY_ID"]:
                    return files
            except OSError:
                pass
        return dict(self._env)

    @property
    def client(self):
        stamp = self._files_stamp()
        if self._client is None or stamp != self._stamp:
            creds = self.credentials()
            if not self.bucket or not creds["AWS_ACCESS_KEY_ID"]:
                raise S3Error(503, "no S3 credentials in this server: it was not started by KubelabSpawner")
            import boto3
            from botocore.config import Config

            self._client = boto3.client(
                "s3", endpoint_url=self.endpoint, region_name="us-east-1",
                aws_access_key_id=creds["AWS_ACCESS_KEY_ID"],
                aws_secret_access_key=creds["AWS_SECRET_ACCESS_KEY"],
                aws_session_token=creds["AWS_SESSION_TOKEN"] or None,
                config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3, "mode": "standard"},
                              connect_timeout=10, read_timeout=60))
            self._client.meta.events.register("before-call.s3", self.counter)
            self._stamp = stamp
        return self._client

    def call(self, op: str, **kw: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.client, op)(**kw)
        except ClientError as e:
            err = e.response.get("Error", {})
            code, status = err.get("Code", ""), e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 502)
            what = kw.get("Key") or kw.get("Prefix") or ""
            if code in ("NoSuchKey", "404", "NotFound"):
                raise S3Error(404, f"s3://{kw.get('Bucket', self.bucket)}/{what} does not exist") from None
            if code in ("AccessDenied", "403", "Forbidden"):
                raise S3Error(403, f"you may not access s3://{kw.get('Bucket', self.bucket)}/{what}") from None
            if code in ("ExpiredToken", "InvalidToken", "TokenRefreshRequired"):
                raise S3Error(401, "your S3 credentials expired and were not renewed: restart your server") from None
            if code == "InvalidRange":
                raise S3Error(416, "the requested byte range is outside the object") from None
            raise S3Error(502 if status >= 500 else 400, f"S3 answered {code}: {err.get('Message', '')}") from None
        except BotoCoreError as e:
            raise S3Error(503, f"S3 is unreachable: {e.__class__.__name__}") from None

    # -- reads --------------------------------------------------------------------------------------
    def list_page(self, prefix: str, token: str | None = None, page_size: int = 100,
                  delimiter: str = "/", bucket: str | None = None) -> dict:
        """One page of a delimiter listing: folders (common prefixes) and objects."""
        kw: dict[str, Any] = {"Bucket": bucket or self.bucket, "Prefix": prefix, "MaxKeys": page_size}
        if delimiter:
            kw["Delimiter"] = delimiter
        if token:
            kw["ContinuationToken"] = token
        r = self.call("list_objects_v2", **kw)
        return {"prefix": prefix,
                "folders": [p["Prefix"] for p in r.get("CommonPrefixes", [])],
                "objects": [{"key": o["Key"], "size": o["Size"], "etag": o.get("ETag", "").strip('"'),
                             "last_modified": o["LastModified"].strftime("%Y-%m-%dT%H:%M:%SZ")}
                            for o in r.get("Contents", [])],
                "next_token": r.get("NextContinuationToken") if r.get("IsTruncated") else None}

    def iter_keys(self, prefix: str, bucket: str | None = None) -> Iterator[dict]:
        """Every object under a prefix, page by page (for copying a model's few files, not for browsing)."""
        token = None
        while True:
            page = self.list_page(prefix, token, 1000, "", bucket)
            yield from page["objects"]
            token = page["next_token"]
            if not token:
                return

    def head(self, key: str, bucket: str | None = None) -> dict:
        r = self.call("head_object", Bucket=bucket or self.bucket, Key=key)
        return {"key": key, "size": r["ContentLength"], "etag": r.get("ETag", "").strip('"'),
                "version_id": r.get("VersionId"), "content_type": r.get("ContentType"),
                "last_modified": r["LastModified"].strftime("%Y-%m-%dT%H:%M:%SZ"), "metadata": r.get("Metadata", {})}

    def read_range(self, key: str, start: int, end: int, bucket: str | None = None) -> bytes:
        """Bytes ``start..end`` (inclusive) of an object."""
        r = self.call("get_object", Bucket=bucket or self.bucket, Key=key, Range=f"bytes={start}-{end}")
        return r["Body"].read()

    def open_range_reader(self, key: str, size: int, budget: int, bucket: str | None = None) -> "RangeReader":
        return RangeReader(self, bucket or self.bucket, key, size, budget)

    # -- transfers ----------------------------------------------------------------------------------
    def _transfer_config(self):
        from boto3.s3.transfer import TransferConfig

        return TransferConfig(multipart_threshold=self.multipart_threshold, multipart_chunksize=16 * MiB,
                              max_concurrency=4)

    def upload_file(self, path: str, key: str, progress: Callable[[int], None] | None = None,
                    bucket: str | None = None) -> None:
        from boto3.exceptions import S3UploadFailedError

        try:
            self.client.upload_file(path, bucket or self.bucket, key, Config=self._transfer_config(),
                                    Callback=progress)
        except S3UploadFailedError as e:
            denied = "AccessDenied" in str(e)
            raise S3Error(403 if denied else 502, f"upload to s3://{bucket or self.bucket}/{key} failed: "
                          + ("access denied" if denied else str(e).splitlines()[0])) from None

    def download_file(self, key: str, path: str, progress: Callable[[int], None] | None = None,
                      bucket: str | None = None) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client.download_file(bucket or self.bucket, key, path, Config=self._transfer_config(),
                                      Callback=progress)
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            status = 404 if code in ("404", "NoSuchKey") else 403 if code in ("403", "AccessDenied") else 502
            raise S3Error(status, f"download of s3://{bucket or self.bucket}/{key} failed ({code})") from None

    def delete_prefix(self, prefix: str, bucket: str | None = None) -> int:
        keys = [o["key"] for o in self.iter_keys(prefix, bucket)]
        for i in range(0, len(keys), 1000):
            self.call("delete_objects", Bucket=bucket or self.bucket,
                      Delete={"Objects": [{"Key": k} for k in keys[i:i + 1000]], "Quiet": True})
        return len(keys)


class RangeReader(io.RawIOBase):
    """A seekable, read-only file over an S3 object that fetches only the byte
    ranges asked for (pyarrow reads a Parquet footer, then the columns it needs),
    and refuses to read more than ``budget`` bytes in all."""

    def __init__(self, s3: S3, bucket: str, key: str, size: int, budget: int):
        self.s3, self.bucket, self.key, self.size, self.budget = s3, bucket, key, size, budget
        self.pos = 0
        self.fetched = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def readinto(self, b) -> int:
        n = min(len(b), self.size - self.pos)
        if n <= 0:
            return 0
        if self.fetched + n > self.budget:
            raise S3Error(413, f"previewing s3://{self.bucket}/{self.key} would read more than "
                               f"{self.budget // MiB} MiB; it is too large to preview")
        data = self.s3.read_range(self.key, self.pos, self.pos + n - 1, self.bucket)
        self.fetched += len(data)
        b[:len(data)] = data
        self.pos += len(data)
        return len(data)
