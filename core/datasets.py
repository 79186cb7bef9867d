"""Datasets in S3 and their records as ``Dataset`` custom resources (pure).

What a user may see in the bucket is two roots: their own prefix
``users/<user>/`` (their home) and the shared ``datasets/`` (read-only to
users). Keys and prefixes from the REST API and the magics are checked here,
at the edge, before any S3 request: a key outside both roots is refused
(:class:`OutsideRoots`, a 403), a malformed one too (:class:`DatasetError`,
a 400). Registered datasets are ``Dataset`` objects (kubelab.io/v1alpha1) in
the user's namespace; shared ones live in ``kubelab-datasets``. This module
also writes the "use in notebook" snippets and the small text helpers the
previews need (CSV delimiter, the first records of a JSON array, JSON-safe
values). Nothing here talks to S3 or a cluster, and nothing imports pyarrow.
"""
from __future__ import annotations

import base64
import csv
import datetime as _dt
import decimal
import json
import math
import posixpath
import re
from dataclasses import dataclass
from typing import Any, Mapping
from urllib.parse import urlparse

from . import labels as L
from .s3layout import DATASETS_PREFIX, user_prefix
from .settings import WorkspaceSettings
from .workloads import WorkloadError, _labels, check_name

API_VERSION = f"{L.GROUP}/v1alpha1"
KIND = "Dataset"
DATASET_LABEL = f"{L.GROUP}/dataset"
SHARED_NAMESPACE = "kubelab-datasets"
MAX_DATASET_NAME = 52
MAX_KEY_BYTES = 1024          # S3's own limit on a key
MAX_TOKEN_LENGTH = 4096
MAX_PREVIEW_COLUMNS = 200
MAX_CELL_CHARS = 2000         # longer strings in previewed rows are cut
FORMATS = ("csv", "parquet", "json", "jsonl", "other")
PREVIEWABLE = ("csv", "parquet", "json", "jsonl")
REGISTER_FIELDS = frozenset({"name", "display_name", "description", "owner", "tags", "format", "uri",
                             "etag", "version_id", "schema"})
_EXTENSIONS = {".csv": "csv", ".tsv": "csv", ".txt": "other", ".parquet": "parquet", ".pq": "parquet",
               ".parq": "parquet", ".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class DatasetError(WorkloadError):
    """A user's request about datasets is invalid (a 400); one line, meant for them."""

    status = 400


class OutsideRoots(DatasetError):
    """A key or prefix outside ``users/<me>/`` and ``datasets/`` (a 403)."""

    status = 403


# -- what a user may see ---------------------------------------------------------------------------
def roots(user: str) -> tuple[str, str]:
    """The two prefixes a user may read: their own, then the shared one."""
    return user_prefix(user), DATASETS_PREFIX


def _clean(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise DatasetError(f"{what} must be a string")
    if _CONTROL.search(value):
        raise DatasetError(f"{what} {value[:80]!r} contains control characters")
    try:
        n = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise DatasetError(f"{what} {value[:80]!r} is not valid UTF-8") from None
    if n > MAX_KEY_BYTES:
        raise DatasetError(f"{what} is too long ({n} > {MAX_KEY_BYTES} bytes)")
    segments = value.split("/")
    if any(s in ("..", ".") for s in segments):
        raise DatasetError(f"{what} {value!r} must not contain '..' or '.' segments")
    if value.startswith("/") or "" in segments[:-1]:
        raise DatasetError(f"{what} {value!r} has an empty path segment (no leading '/' or '//')")
    return value


def _outside(value: str, user: str, what: str) -> OutsideRoots:
    mine, shared = roots(user)
    return OutsideRoots(f"{what} {value!r} is outside what you may see: use {mine}... or {shared}...")


def check_key(key: Any, user: str, what: str = "key", folder: bool | None = False) -> str:
    """An S3 key under ``users/<user>/`` or ``datasets/``.

    ``folder``: False refuses a key ending in '/', True requires one, None takes both.
    The roots themselves are folders.
    """
    if key is None or key == "":
        raise DatasetError(f"{what} is required, e.g. datasets/sales/2024.parquet")
    key = _clean(key, what)
    if not key.startswith(roots(user)):
        raise _outside(key, user, what)
    if folder is False and key.endswith("/"):
        raise DatasetError(f"{what} {key!r} is a folder, not an object")
    if folder is True and not key.endswith("/"):
        raise DatasetError(f"{what} {key!r} must be a folder (end with '/')")
    return key


def check_prefix(prefix: Any, user: str) -> str:
    """A listing prefix: '' (the roots), a root (with or without its '/'), or anything
    under a root; it may end inside a name (``datasets/sales-20`` finds ``sales-2024.csv``)."""
    if prefix is None or prefix == "":
        return ""
    prefix = _clean(prefix, "prefix")
    for root in roots(user):
        if prefix == root.rstrip("/"):
            return root
    if not prefix.startswith(roots(user)):
        raise _outside(prefix, user, "prefix")
    return prefix


def check_page_size(value: Any, default: int, maximum: int) -> int:
    if value is None or value == "":
        return default
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise DatasetError(f"page_size must be a whole number between 1 and {maximum}")
    try:
        n = int(value)
    except ValueError:
        raise DatasetError(f"page_size must be a whole number between 1 and {maximum}") from None
    if not 1 <= n <= maximum:
        raise DatasetError(f"page_size must be between 1 and {maximum}, not {n}")
    return n


def check_token(token: Any) -> str | None:
    if token is None or token == "":
        return None
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH or _CONTROL.search(token):
        raise DatasetError("token is not a continuation token from a previous page")
    return token


def key_of_uri(uri: Any, bucket: str, user: str, folder: bool | None = None) -> str:
    """The key of ``s3://<bucket>/<key>`` (or of a bare key), checked like :func:`check_key`."""
    if not isinstance(uri, str) or not uri:
        raise DatasetError(f"uri is required, e.g. s3://{bucket or 'kubelab'}/datasets/sales/2024.parquet")
    if uri.startswith("s3://"):
        u = urlparse(uri)
        if u.netloc != bucket:
            raise OutsideRoots(f"uri {uri!r} is not in the kubelab bucket (s3://{bucket}/)")
        return check_key(uri[len("s3://") + len(u.netloc) + 1:], user, "uri", folder)
    if "://" in uri:
        raise DatasetError(f"uri {uri!r} must be s3://{bucket}/<key>")
    return check_key(uri, user, "uri", folder)


def writable(key: str, user: str) -> bool:
    """Only the user's own prefix is writable; ``datasets/`` is read-only to users."""
    return key.startswith(user_prefix(user))


def format_of(key: str) -> str:
    """csv, parquet, json, jsonl or other, from the key's extension."""
    base = key.rstrip("/").rsplit("/", 1)[-1].lower()
    ext = posixpath.splitext(base)[1]
    return _EXTENSIONS.get(ext, "other")


def name_of(key: str) -> str:
    """The last segment of a key (a folder keeps its '/')."""
    stripped = key.rstrip("/")
    last = stripped.rsplit("/", 1)[-1]
    return last + "/" if key.endswith("/") else last


def mount_path(key: str, settings: WorkspaceSettings) -> str | None:
    """Where a key is a file in the user's server and workloads: the home is
    ``users/<user>/`` and ``~/datasets`` is ``datasets/``. None where the key is
    not reachable (``users/<user>/datasets/...`` is hidden under the datasets mount)."""
    mine = user_prefix(settings.user)
    if key.startswith(DATASETS_PREFIX):
        rest = key[len(DATASETS_PREFIX):]
        return settings.datasets_path + ("/" + rest if rest else "")
    if key.startswith(mine):
        rest = key[len(mine):]
        if rest == "datasets" or rest.startswith("datasets/"):
            return None
        return settings.home_path + ("/" + rest if rest else "")
    return None


# -- "use in notebook" -----------------------------------------------------------------------------
_READERS = {"csv": "read_csv", "parquet": "read_parquet", "json": "read_json", "jsonl": "read_json"}


def _read_call(fmt: str, source: str, key: str) -> str:
    fn = _READERS[fmt]
    extra = ", lines=True" if fmt == "jsonl" else ", sep='\\t'" if key.lower().endswith(".tsv") else ""
    return f"pd.{fn}({source}{extra})"


def snippet(key: str, bucket: str, settings: WorkspaceSettings, fmt: str | None = None) -> dict[str, Any]:
    """How to read ``key`` in a notebook: its path under the mounts, its s3:// URL, and code.

    ``code`` has ``path`` (pandas on the mounted file: the simplest, where there is a path),
    ``s3`` (pandas over pyarrow's S3 filesystem, which takes the endpoint and the user's
    credentials from the environment) and ``boto3``.
    """
    fmt = fmt or format_of(key)
    folder = key.endswith("/")
    uri = f"s3://{bucket}/{key}"
    path = mount_path(key, settings)
    code: dict[str, str] = {}
    if path is not None:
        if folder and fmt == "parquet":
            code["path"] = f"import pandas as pd\n\ndf = pd.read_parquet({path!r})\n"
        elif folder and fmt in _READERS:
            code["path"] = ("import glob\n\nimport pandas as pd\n\n"
                            f"files = sorted(glob.glob({(path + '*.' + fmt)!r}))\n"
                            f"df = pd.concat([{_read_call(fmt, 'f', key)} for f in files], ignore_index=True)\n")
        elif folder:
            code["path"] = f"import os\n\nfiles = sorted(os.listdir({path!r}))\n"
        elif fmt in _READERS:
            code["path"] = f"import pandas as pd\n\ndf = {_read_call(fmt, repr(path), key)}\n"
        else:
            code["path"] = f"with open({path!r}, 'rb') as f:\n    data = f.read()\n"
    s3fs = ("s3 = fs.S3FileSystem(endpoint_override=os.environ.get('AWS_ENDPOINT_URL'))"
            "  # your credentials come from the environment\n")
    if folder and fmt == "parquet":
        code["s3"] = ("import os\n\nimport pyarrow.dataset as ds\nfrom pyarrow import fs\n\n" + s3fs
                      + f"df = ds.dataset({(bucket + '/' + key)!r}, filesystem=s3, format='parquet').to_table()"
                      ".to_pandas()\n")
    elif not folder and fmt in _READERS:
        code["s3"] = ("import os\n\nimport pandas as pd\nfrom pyarrow import fs\n\n" + s3fs
                      + f"with s3.open_input_file({(bucket + '/' + key)!r}) as f:\n"
                      f"    df = {_read_call(fmt, 'f', key)}\n")
    if folder:
        code["boto3"] = ("import boto3\n\n"
                         "s3 = boto3.client('s3')  # endpoint and your credentials come from the environment\n"
                         "pages = s3.get_paginator('list_objects_v2').paginate("
                         f"Bucket={bucket!r}, Prefix={key!r})\n"
                         "keys = [o['Key'] for page in pages for o in page.get('Contents', [])]\n")
    else:
        code["boto3"] = ("import boto3\n\n"
                         "s3 = boto3.client('s3')  # endpoint and your credentials come from the environment\n"
                         f"data = s3.get_object(Bucket={bucket!r}, Key={key!r})['Body'].read()\n")
    return {"key": key, "uri": uri, "path": path, "format": fmt, "folder": folder, "code": code}


# -- registered datasets ---------------------------------------------------------------------------
@dataclass(frozen=True)
class DatasetSpec:
    name: str
    key: str
    uri: str
    format: str
    display_name: str = ""
    description: str = ""
    owner: str = ""
    tags: tuple[str, ...] = ()
    etag: str = ""
    version_id: str = ""
    schema: tuple[dict[str, Any], ...] = ()
    objects: int | None = None
    bytes: int | None = None

    @property
    def folder(self) -> bool:
        return self.key.endswith("/")


def check_dataset_name(name: Any) -> str:
    try:
        return check_name(name, "dataset", MAX_DATASET_NAME)
    except WorkloadError as e:
        raise DatasetError(str(e)) from None


def _text(value: Any, what: str, limit: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > limit:
        raise DatasetError(f"{what} must be a string of at most {limit} characters")
    return value


def parse_tags(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [t.strip() for t in value.split(",") if t.strip()]
    if not isinstance(value, list) or len(value) > 64 or not all(
            isinstance(t, str) and 0 < len(t) <= 63 and not _CONTROL.search(t) for t in value):
        raise DatasetError("tags must be a list of at most 64 tags of 1 to 63 characters")
    out: list[str] = []
    for t in value:
        if t not in out:
            out.append(t)
    return tuple(out)


def parse_schema(value: Any) -> tuple[dict[str, Any], ...]:
    """``[{"name": "id", "type": "int64", "nullable": false}, ...]``."""
    if value is None:
        return ()
    err = DatasetError('schema must be a list of {"name": ..., "type": ..., "nullable": true|false}')
    if not isinstance(value, list) or len(value) > 10_000:
        raise err
    out = []
    for col in value:
        if not isinstance(col, dict) or set(col) - {"name", "type", "nullable"}:
            raise err
        name, typ, nullable = col.get("name"), col.get("type"), col.get("nullable", True)
        if not isinstance(name, str) or not name or len(name) > 1024 or not isinstance(typ, str) or not typ \
                or len(typ) > 1024 or not isinstance(nullable, bool):
            raise err
        out.append({"name": name, "type": typ, "nullable": nullable})
    return tuple(out)


def parse_registration(req: Any, settings: WorkspaceSettings, bucket: str) -> DatasetSpec:
    """Check a register request (before anything is read or created)."""
    if not isinstance(req, Mapping):
        raise DatasetError("the request body must be a JSON object")
    extra = sorted(set(req) - REGISTER_FIELDS)
    if extra:
        raise DatasetError(f"unknown dataset field(s): {', '.join(extra)}")
    name = check_dataset_name(req.get("name"))
    key = key_of_uri(req.get("uri"), bucket, settings.user, folder=None)
    fmt = req.get("format")
    if fmt is None or fmt == "":
        fmt = format_of(key)
    elif fmt not in FORMATS:
        raise DatasetError(f"format must be one of {', '.join(FORMATS)}")
    etag = _text(req.get("etag"), "etag", 256).strip('"')
    version_id = _text(req.get("version_id"), "version_id", 1024)
    if key.endswith("/") and (etag or version_id):
        raise DatasetError("etag and version_id pin one object; a folder (uri ending in '/') has neither")
    return DatasetSpec(
        name=name, key=key, uri=f"s3://{bucket}/{key}", format=fmt,
        display_name=_text(req.get("display_name"), "display_name", 253),
        description=_text(req.get("description"), "description", 10000),
        owner=_text(req.get("owner"), "owner", 253) or settings.user,
        tags=parse_tags(req.get("tags")), etag=etag, version_id=version_id,
        schema=parse_schema(req.get("schema")))


def dataset_object(settings: WorkspaceSettings, spec: DatasetSpec) -> dict[str, Any]:
    """The ``Dataset`` custom resource of a registration, in the user's namespace."""
    location: dict[str, Any] = {"uri": spec.uri}
    if spec.etag:
        location["etag"] = spec.etag
    if spec.version_id:
        location["versionId"] = spec.version_id
    if spec.objects is not None:
        location["objects"] = spec.objects
    if spec.bytes is not None:
        location["bytes"] = spec.bytes
    body: dict[str, Any] = {"owner": spec.owner, "format": spec.format, "tags": list(spec.tags),
                            "location": location}
    if spec.display_name:
        body["displayName"] = spec.display_name
    if spec.description:
        body["description"] = spec.description
    if spec.schema:
        body["schema"] = [dict(c) for c in spec.schema]
    return {"apiVersion": API_VERSION, "kind": KIND,
            "metadata": {"name": spec.name, "namespace": settings.namespace,
                         "labels": _labels(settings, "dataset", {DATASET_LABEL: spec.name})},
            "spec": body}


def dataset_view(obj: Mapping[str, Any], shared: bool = False, bucket: str = "") -> dict[str, Any]:
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    loc = spec.get("location") or {}
    uri = loc.get("uri") or ""
    key = None
    if bucket and uri.startswith(f"s3://{bucket}/"):
        key = uri[len(f"s3://{bucket}/"):]
    return {"name": meta.get("name"), "namespace": meta.get("namespace"), "shared": shared,
            "display_name": spec.get("displayName") or "", "description": spec.get("description") or "",
            "owner": spec.get("owner") or "", "tags": list(spec.get("tags") or []),
            "format": spec.get("format") or "other", "uri": uri, "key": key,
            "etag": loc.get("etag"), "version_id": loc.get("versionId"),
            "objects": loc.get("objects"), "bytes": loc.get("bytes"),
            "schema": [{"name": c.get("name"), "type": c.get("type"), "nullable": c.get("nullable", True)}
                       for c in spec.get("schema") or [] if isinstance(c, dict)],
            "created": meta.get("creationTimestamp")}


def matches(view: Mapping[str, Any], q: str | None = None, tag: str | None = None) -> bool:
    """Search registered metadata: ``q`` in name, title, description, owner, tags or location
    (case-insensitive, every word must match); ``tag`` one of its tags exactly."""
    if tag and tag not in (view.get("tags") or []):
        return False
    if not q:
        return True
    hay = " ".join([str(view.get(k) or "") for k in ("name", "display_name", "description", "owner", "uri",
                                                     "format")] + list(view.get("tags") or [])).lower()
    return all(word in hay for word in q.lower().split())


# -- preview helpers -------------------------------------------------------------------------------
def sniff_delimiter(sample: str, key: str = "") -> str:
    if key.lower().endswith(".tsv"):
        return "\t"
    lines = sample.splitlines()[:50]
    try:
        return csv.Sniffer().sniff("\n".join(lines), delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def first_json_records(text: str, n: int, complete: bool) -> tuple[list[Any], bool]:
    """The first ``n`` elements of a JSON array document from its beginning ``text``.

    Returns ``(records, finished)``: ``finished`` when the array ended (or ``n`` were
    found). An element is taken only when what follows it was read too, so a number
    cut at the end of ``text`` is never taken short. ValueError if ``text`` is no array.
    """
    dec = json.JSONDecoder()
    i = _skip_ws(text, 0)
    if i >= len(text) and not complete:
        return [], False
    if i >= len(text) or text[i] != "[":
        raise ValueError("not a JSON array")
    pos, out = i + 1, []
    while len(out) < n:
        pos = _skip_ws(text, pos)
        if pos < len(text) and text[pos] == "]":
            return out, True
        if out:
            if pos >= len(text):
                break
            if text[pos] != ",":
                raise ValueError(f"expected ',' at character {pos}")
            pos = _skip_ws(text, pos + 1)
        if pos >= len(text):
            break
        try:
            value, end = dec.raw_decode(text, pos)
        except json.JSONDecodeError:
            if complete:
                raise ValueError(f"invalid JSON at character {pos}") from None
            break
        nxt = _skip_ws(text, end)
        if nxt >= len(text) and not complete:
            break           # may be cut short: wait for more text
        out.append(value)
        pos = end
    if complete and len(out) < n:
        pos = _skip_ws(text, pos)
        if pos >= len(text) or text[pos] != "]":
            raise ValueError("the JSON array does not end")
        return out, True
    return out, len(out) >= n


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i


def json_safe(value: Any) -> Any:
    """A value from a previewed row or a statistic, as JSON: no NaN/inf, dates as ISO
    text, bytes as base64, decimals as text, long strings cut."""
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value + 0.0 if math.isfinite(value) else None     # + 0.0: no -0.0 (Parquet's zero minimum)
    if isinstance(value, str):
        return value if len(value) <= MAX_CELL_CHARS else value[:MAX_CELL_CHARS] + "…"
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, _dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        b = bytes(value)
        return base64.b64encode(b[:MAX_CELL_CHARS]).decode("ascii")
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        try:
            return json_safe(item())
        except (TypeError, ValueError):
            pass
    return str(value)

