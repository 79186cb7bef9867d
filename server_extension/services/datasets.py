"""Datasets: browse, preview and transfer what the user may see in S3, and register datasets.

A user sees two roots of the bucket: their own ``users/<user>/`` (their home)
and the shared ``datasets/``; every key and prefix is checked against them
before any S3 request (``kubelab.core.datasets``), and the user's own scoped
credentials enforce the same again. Listings are one S3 request per page
(a delimiter listing with a continuation token, never a listing of a whole
prefix). Previews read byte ranges only (pyarrow over ``s3.RangeReader``,
within ``preview_max_bytes``): a Parquet footer and the first pages of the
first row group, the first lines of a CSV or JSON Lines file, the first
records of a JSON array. Registered datasets are ``Dataset`` objects in the
user's namespace; the shared ones (namespace ``kubelab-datasets``) are listed
alongside. Uploads and downloads between the home and S3 are multipart
transfers that run in background threads, their progress polled by id.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import threading
import time
import uuid
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any, Callable, Iterator, Mapping

from traitlets import Any as AnyTrait
from traitlets import Instance, Int, Unicode
from traitlets.config import LoggingConfigurable

from kubelab.core import datasets as D
from kubelab.core.names import is_dns_label

from ..kube import KubeError
from ..s3 import MiB, S3, S3Error
from .errors import BadRequest, Conflict, Forbidden, NotFound, ServiceError, Unavailable, from_kube
from .workspace import Workspace

GiB = 1024 * MiB
PARQUET_BUFFER = 256 * 1024     # pyarrow reads column chunks through a buffer of this size
FIRST_READ = 64 * 1024          # the first range of a CSV or JSON file; then x4 until enough rows
TRANSFER_ID_PREFIX = "tr-"
DIRECTIONS = ("upload", "download")
TRANSFER_FIELDS = frozenset({"direction", "path", "key", "overwrite"})


class TooLarge(ServiceError):
    code = 413


class TooMany(ServiceError):
    code = 429


def from_s3(e: S3Error) -> ServiceError:
    """The S3 layer's one-line error as a service error."""
    if e.status in (400, 416):
        return BadRequest(e.message)
    if e.status == 403:
        return Forbidden(e.message)
    if e.status == 404:
        return NotFound(e.message)
    if e.status == 413:
        return TooLarge(e.message)
    if e.status in (401, 503):
        return Unavailable(e.message)
    return ServiceError(e.message, 502)


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class DatasetService(LoggingConfigurable):
    """Browse, preview, transfer and register datasets in S3."""

    workspace = Instance(Workspace)
    s3 = AnyTrait(None, help="The S3 client layer; made from the server's environment on first use.")

    page_size = Int(
        100, min=1,
        config=True,
        help="""
        Entries per page of a listing when the request gives no page_size.

        Example::

            c.DatasetService.page_size = 200
        """,
    )
    max_page_size = Int(
        1000, min=1, max=1000,
        config=True,
        help="""
        The largest page a listing may ask for (S3 answers at most 1000 keys per request).

        Example::

            c.DatasetService.max_page_size = 500
        """,
    )
    preview_rows = Int(
        20, min=1,
        config=True,
        help="""
        Rows a preview shows when the request gives no count.

        Example::

            c.DatasetService.preview_rows = 50
        """,
    )
    max_preview_rows = Int(
        1000, min=1,
        config=True,
        help="""
        The most rows a preview may ask for.

        Example::

            c.DatasetService.max_preview_rows = 200
        """,
    )
    preview_max_bytes = Int(
        32 * MiB, min=64 * 1024,
        config=True,
        help="""
        The most bytes one preview reads from S3 (byte ranges: a Parquet footer and
        the first pages, the first lines of a CSV or JSON file). A preview that would
        need more is refused (413) rather than read.

        Example::

            c.DatasetService.preview_max_bytes = 64 * 1024 * 1024
        """,
    )
    shared_namespace = Unicode(
        D.SHARED_NAMESPACE,
        config=True,
        help="""
        Namespace of the shared datasets' Dataset records, readable by every user
        (deploy/rbac/shared-datasets.yaml); listed alongside the user's own. Empty
        lists the user's own only.

        Example::

            c.DatasetService.shared_namespace = "team-datasets"
        """,
    )
    max_transfer_bytes = Int(
        100 * GiB, min=1,
        config=True,
        help="""
        The largest file one upload or download may move.

        Example::

            c.DatasetService.max_transfer_bytes = 20 * 1024**3
        """,
    )
    max_concurrent_transfers = Int(
        2, min=1,
        config=True,
        help="""
        Transfers that run at the same time in this server (each a background
        thread with up to 4 parts in flight); later ones wait their turn.

        Example::

            c.DatasetService.max_concurrent_transfers = 4
        """,
    )
    max_queued_transfers = Int(
        20, min=1,
        config=True,
        help="""
        Unfinished (running and waiting) transfers a server accepts; more are refused (429).

        Example::

            c.DatasetService.max_queued_transfers = 50
        """,
    )
    transfer_history = Int(
        100, min=1,
        config=True,
        help="""
        Finished transfers whose status the server keeps (in memory) for polling.

        Example::

            c.DatasetService.transfer_history = 20
        """,
    )
    multipart_threshold = Int(
        64 * MiB, min=5 * MiB,
        config=True,
        help="""
        Files from this size on move as multipart transfers (parts of 16 MiB, 4 at a time).

        Example::

            c.DatasetService.multipart_threshold = 8 * 1024 * 1024
        """,
    )

    def __init__(self, **kw: Any):
        super().__init__(**kw)
        self._lock = threading.Lock()
        self._local = threading.local()
        self._hooked: set[int] = set()
        self._transfers: OrderedDict[str, dict] = OrderedDict()
        self._executor: ThreadPoolExecutor | None = None

    @property
    def ws(self) -> Workspace:
        return self.workspace

    @property
    def user(self) -> str:
        return self.ws.settings.user

    # -- S3, with its requests counted per thread ---------------------------------------------------
    @property
    def store(self) -> S3:
        with self._lock:
            if self.s3 is None:
                self.s3 = S3(multipart_threshold=self.multipart_threshold)
            s3 = self.s3
            if id(s3) not in self._hooked:
                try:
                    events = s3.client.meta.events
                except S3Error as e:
                    raise from_s3(e) from None
                except AttributeError:  # a stand-in without botocore (tests)
                    events = None
                if events is not None:
                    events.register("before-call.s3", self._count_request)
                self._hooked.add(id(s3))
        return s3

    def _count_request(self, **kw: Any) -> None:
        count = getattr(self._local, "count", None)
        if count is not None:
            count.n += 1

    def count_request(self) -> None:
        """Count one S3 request of this thread (for stand-ins that do not emit botocore events)."""
        self._count_request()

    @contextlib.contextmanager
    def _counting(self) -> Iterator["_Count"]:
        """Counts the S3 requests this thread makes inside the block (``.n``)."""
        outer = getattr(self._local, "count", None)
        self._local.count = count = _Count()
        try:
            yield count
        finally:
            self._local.count = outer

    def _s3(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        try:
            return fn(*args, **kw)
        except S3Error as e:
            raise from_s3(e) from None

    def _check(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        """A check of kubelab.core.datasets; its error as a 400 or 403."""
        try:
            return fn(*args, **kw)
        except D.OutsideRoots as e:
            raise Forbidden(str(e)) from None
        except D.DatasetError as e:
            raise BadRequest(str(e)) from None

    def _uri(self, value: Any) -> Any:
        """``s3://<bucket>/<key>`` as its key (keys and prefixes may be given either way)."""
        if isinstance(value, str) and value.startswith("s3://"):
            bucket = self.store.bucket
            if not value.startswith(f"s3://{bucket}/") and value != f"s3://{bucket}":
                raise Forbidden(f"{value!r} is not in the kubelab bucket (s3://{bucket}/)")
            return value[len(f"s3://{bucket}/"):]
        return value

    def _key(self, key: Any, folder: bool | None = False) -> str:
        user = self.user
        return self._check(D.check_key, self._uri(key), user, "key", folder)

    # -- browse -------------------------------------------------------------------------------------
    def roots(self) -> list[dict]:
        s = self.ws.settings
        mine, shared = D.roots(s.user)
        return [{"prefix": mine, "name": mine, "path": s.home_path, "writable": True,
                 "description": "your home"},
                {"prefix": shared, "name": shared, "path": s.datasets_path, "writable": False,
                 "description": "shared datasets (read-only)"}]

    def browse(self, prefix: Any = "", token: Any = None, page_size: Any = None, recursive: bool = False) -> dict:
        """One page of what is under ``prefix`` (folders first, then objects): one S3 request."""
        user = self.user
        prefix = self._check(D.check_prefix, self._uri(prefix), user)
        size = self._check(D.check_page_size, page_size, min(self.page_size, self.max_page_size),
                           self.max_page_size)
        token = self._check(D.check_token, token)
        if not prefix:
            if token:
                raise BadRequest("the list of roots has one page: no token")
            return {"prefix": "", "parent": None, "folders": [{"prefix": r["prefix"], "name": r["name"]}
                                                             for r in self.roots()],
                    "objects": [], "next_token": None, "page_size": size, "s3_requests": 0, "writable": False,
                    "roots": self.roots()}
        s3 = self.store
        with self._counting() as requests:
            try:
                page = s3.list_page(prefix, token, size, "" if recursive else "/")
            except S3Error as e:
                if token and e.status not in (401, 403, 404, 503):
                    raise BadRequest("token is not a continuation token of this listing: "
                                     "start again without one") from None
                raise from_s3(e) from None
        objects = [{"key": o["key"], "name": D.name_of(o["key"]), "size": o["size"], "etag": o["etag"],
                    "last_modified": o["last_modified"], "format": D.format_of(o["key"])}
                   for o in page["objects"] if not o["key"].endswith("/")]   # s3fs' folder markers
        folders = [{"prefix": p, "name": D.name_of(p)} for p in page["folders"]]
        return {"prefix": prefix, "parent": self._parent(prefix), "folders": folders, "objects": objects,
                "next_token": page["next_token"], "page_size": size, "s3_requests": requests.n,
                "writable": D.writable(prefix, user)}

    def _parent(self, prefix: str) -> str | None:
        if prefix in D.roots(self.user):
            return ""
        base = prefix[:-1] if prefix.endswith("/") else prefix
        return base.rsplit("/", 1)[0] + "/" if "/" in base else ""

    def object(self, key: Any) -> dict:
        """One object: size, ETag, version, type, where it is mounted and whether it can be previewed."""
        key = self._key(key)
        s3 = self.store
        with self._counting() as requests:
            head = self._s3(s3.head, key)
        fmt = D.format_of(key)
        return {**head, "name": D.name_of(key), "uri": f"s3://{s3.bucket}/{key}", "format": fmt,
                "path": D.mount_path(key, self.ws.settings), "writable": D.writable(key, self.user),
                "previewable": fmt in D.PREVIEWABLE, "s3_requests": requests.n}

    def snippet(self, key: Any) -> dict:
        """How to use an object (or a folder, ending in '/') in a notebook; it must exist."""
        key = self._key(key, folder=None)
        s3 = self.store
        if key.endswith("/"):
            page = self._s3(s3.list_page, key, None, 20, "")
            if not page["objects"]:
                raise NotFound(f"s3://{s3.bucket}/{key} holds no objects")
            formats = {D.format_of(o["key"]) for o in page["objects"] if not o["key"].endswith("/")}
            fmt = formats.pop() if len(formats) == 1 else "other"
        else:
            self._s3(s3.head, key)
            fmt = None
        return D.snippet(key, s3.bucket, self.ws.settings, fmt)

    # -- preview ------------------------------------------------------------------------------------
    def preview(self, key: Any, rows: Any = None) -> dict:
        """Schema, the first rows and column statistics of a CSV, Parquet or JSON object."""
        key = self._key(key)
        n = self._rows(rows)
        fmt = D.format_of(key)
        if fmt not in D.PREVIEWABLE:
            raise BadRequest(f"{D.name_of(key)!r} is not CSV, Parquet or JSON (by its extension): "
                             "no preview; see its details or snippet")
        s3 = self.store
        with self._counting() as requests:
            head = self._s3(s3.head, key)
            if head["size"] == 0:
                raise BadRequest(f"s3://{s3.bucket}/{key} is empty")
            reader = s3.open_range_reader(key, head["size"], self.preview_max_bytes)
            try:
                doc = PREVIEWERS[fmt](reader, n, key)
            except S3Error as e:
                if e.status == 413:
                    raise TooLarge(f"the first {n} rows of {D.name_of(key)!r} need more than "
                                   f"{self.preview_max_bytes // MiB} MiB: too large to preview; "
                                   "ask for fewer rows") from None
                raise from_s3(e) from None
            except ServiceError:
                raise
            except Exception as e:  # noqa: BLE001 - a file pyarrow cannot read is the user's to fix
                raise BadRequest(f"cannot read {D.name_of(key)!r} as {fmt}: {_one_line(e)}") from None
        doc.update(key=key, format=fmt, size=head["size"], etag=head["etag"], version_id=head.get("version_id"),
                   last_modified=head["last_modified"], uri=f"s3://{s3.bucket}/{key}",
                   bytes_read=reader.fetched, s3_requests=requests.n)
        return doc

    def _rows(self, rows: Any) -> int:
        if rows is None or rows == "":
            return min(self.preview_rows, self.max_preview_rows)
        try:
            n = int(rows) if not isinstance(rows, bool) else None
        except (TypeError, ValueError):
            n = None
        if n is None:
            raise BadRequest(f"rows must be a whole number between 1 and {self.max_preview_rows}")
        if n < 1:
            raise BadRequest(f"rows must be between 1 and {self.max_preview_rows}, not {n}")
        if n > self.max_preview_rows:
            raise TooLarge(f"a preview shows at most {self.max_preview_rows} rows, not {n}")
        return n

    # -- registered datasets ------------------------------------------------------------------------
    def _own(self) -> list[dict]:
        try:
            return self.ws.kube.items(D.API_VERSION, D.KIND)
        except KubeError as e:
            if e.status == 404:
                raise Unavailable("the Dataset custom resource is not installed in this cluster "
                                  "(deploy/crds/kubelab.io.yaml)") from None
            raise from_kube(e, "datasets") from None

    def _shared(self) -> tuple[list[dict], str | None]:
        ns = self.shared_namespace
        if not ns or ns == self.ws.namespace:
            return [], None
        try:
            return self.ws.kube.items(D.API_VERSION, D.KIND, namespace=ns), None
        except KubeError as e:
            self.log.warning("kubelab: cannot list shared datasets in %s: %s", ns, e.message)
            return [], f"shared datasets (namespace {ns}) could not be listed: {e.message}"

    def registered(self, q: Any = None, tag: Any = None, scope: Any = None) -> dict:
        """The user's registered datasets and the shared ones, filtered by words and a tag."""
        if q is not None and (not isinstance(q, str) or len(q) > 256):
            raise BadRequest("q must be a few words (at most 256 characters)")
        if tag is not None and (not isinstance(tag, str) or len(tag) > 63):
            raise BadRequest("tag must be a tag of at most 63 characters")
        scope = scope or "all"
        if scope not in ("all", "mine", "shared"):
            raise BadRequest("scope must be all, mine or shared")
        bucket = self._bucket()
        views, warnings = [], []
        if scope in ("all", "mine"):
            views += [D.dataset_view(o, False, bucket) for o in self._own()]
        if scope in ("all", "shared"):
            shared, warning = self._shared()
            views += [D.dataset_view(o, True, bucket) for o in shared]
            if warning:
                warnings.append(warning)
        views = [v for v in views if D.matches(v, q or None, tag or None)]
        views.sort(key=lambda v: (v["shared"], v["name"] or ""))
        return {"datasets": views, "warnings": warnings}

    def _bucket(self) -> str:
        try:
            return self.store.bucket
        except ServiceError:
            return os.environ.get("KUBELAB_S3_BUCKET", "")

    def get_registered(self, name: str) -> dict:
        if not is_dns_label(name, D.MAX_DATASET_NAME):
            raise NotFound(f"dataset {name!r} not found")
        bucket = self._bucket()
        own = self.ws.call(self.ws.kube.get, D.API_VERSION, D.KIND, name, what=f"dataset {name}")
        if own is not None:
            return D.dataset_view(own, False, bucket)
        shared = self._get_shared(name)
        if shared is not None:
            return D.dataset_view(shared, True, bucket)
        raise NotFound(f"dataset {name!r} not found")

    def _get_shared(self, name: str) -> dict | None:
        ns = self.shared_namespace
        if not ns or ns == self.ws.namespace:
            return None
        try:
            return self.ws.kube.get(D.API_VERSION, D.KIND, name, namespace=ns)
        except KubeError:
            return None

    def unregister(self, name: str) -> None:
        """Delete the user's record of a dataset (never the data)."""
        if not is_dns_label(name, D.MAX_DATASET_NAME):
            raise NotFound(f"dataset {name!r} not found")
        if self.ws.call(self.ws.kube.delete, D.API_VERSION, D.KIND, name, what=f"dataset {name}"):
            return
        if self._get_shared(name) is not None:
            raise Forbidden(f"dataset {name!r} is shared: your admins manage it")
        raise NotFound(f"dataset {name!r} not found")

    def register(self, req: Mapping[str, Any]) -> dict:
        """Record a dataset: its location (checked to exist, the version pinned), metadata and schema."""
        settings = self.ws.settings
        s3 = self.store
        spec = self._check(D.parse_registration, req, settings, s3.bucket)
        if self.ws.call(self.ws.kube.get, D.API_VERSION, D.KIND, spec.name, what=f"dataset {spec.name}"):
            raise Conflict(f"a dataset named {spec.name!r} already exists")
        extra: dict[str, Any] = {}
        if spec.folder:
            page = self._s3(s3.list_page, spec.key, None, 1000, "")
            objs = [o for o in page["objects"] if not o["key"].endswith("/")]
            if not objs:
                raise NotFound(f"{spec.uri} holds no objects")
            if not page["next_token"]:
                extra.update(objects=len(objs), bytes=sum(o["size"] for o in objs))
        else:
            head = self._head_version(spec.key, spec.version_id)
            if spec.etag and spec.etag != head["etag"]:
                raise Conflict(f"{spec.uri} has ETag {head['etag']}, not {spec.etag}: it changed")
            extra.update(etag=head["etag"], version_id=head.get("version_id") or spec.version_id or "",
                         objects=1, bytes=head["size"])
            if not spec.schema and spec.format in D.PREVIEWABLE and D.format_of(spec.key) == spec.format:
                try:
                    cols = self.preview(spec.key, 1)["columns"]
                    extra["schema"] = tuple({"name": c["name"], "type": c["type"], "nullable": c["nullable"]}
                                            for c in cols)
                except ServiceError as e:  # a schema is a convenience: register without one
                    self.log.info("kubelab: no schema for %s: %s", spec.uri, e.message)
        spec = replace(spec, **extra)
        obj = self.ws.call(self.ws.kube.create, D.dataset_object(settings, spec), what=f"dataset {spec.name}")
        return D.dataset_view(obj, False, s3.bucket)

    def _head_version(self, key: str, version_id: str) -> dict:
        s3 = self.store
        if not version_id:
            return self._s3(s3.head, key)
        r = self._s3(s3.call, "head_object", Bucket=s3.bucket, Key=key, VersionId=version_id)
        return {"key": key, "size": r["ContentLength"], "etag": r.get("ETag", "").strip('"'),
                "version_id": r.get("VersionId") or version_id}

    # -- transfers ----------------------------------------------------------------------------------
    def start_transfer(self, req: Mapping[str, Any]) -> dict:
        """Start an upload (home file -> S3 key) or a download (S3 key -> home file) in the background."""
        if not isinstance(req, Mapping):
            raise BadRequest("the request body must be a JSON object")
        extra = sorted(set(req) - TRANSFER_FIELDS)
        if extra:
            raise BadRequest(f"unknown transfer field(s): {', '.join(extra)}")
        direction = req.get("direction")
        if direction not in DIRECTIONS:
            raise BadRequest("direction must be upload (home -> S3) or download (S3 -> home)")
        overwrite = req.get("overwrite", False)
        if not isinstance(overwrite, bool):
            raise BadRequest("overwrite must be true or false")
        path = req.get("path")
        if not isinstance(path, str):
            raise BadRequest("path (a file in your home) is required")
        user = self.user
        key = self._key(req.get("key"), folder=None)
        s3 = self.store
        if direction == "upload":
            rel, local = self.ws.home_path(path, "path")
            if not os.path.isfile(local):
                raise BadRequest(f"path {rel!r} is not a file in your home")
            if key.endswith("/"):
                key = self._key(key + os.path.basename(local))
            if not D.writable(key, user):
                raise Forbidden(f"{D.DATASETS_PREFIX} is read-only for you: upload under {D.roots(user)[0]}")
            total = os.path.getsize(local)
            if total > self.max_transfer_bytes:
                raise TooLarge(f"{rel!r} is {total} bytes; the most one transfer moves is "
                               f"{self.max_transfer_bytes} bytes")
            if not overwrite and self._exists(key):
                raise Conflict(f"s3://{s3.bucket}/{key} exists: set overwrite to replace it")
        else:
            if key.endswith("/"):
                raise BadRequest(f"key {key!r} is a folder: download one object at a time")
            target = path
            if path.endswith("/") or os.path.isdir(self.ws.home_path(path, "path")[1]):
                target = path.rstrip("/") + "/" + D.name_of(key)
            rel, local = self.ws.home_path(target, "path")
            if D.mount_path(D.roots(user)[0] + rel, self.ws.settings) is None:
                raise BadRequest(f"path {rel!r} is inside ~/datasets, which is read-only")
            if os.path.isdir(local):
                raise BadRequest(f"path {rel!r} is a folder")
            if os.path.exists(local) and not overwrite:
                raise Conflict(f"{rel!r} exists in your home: set overwrite to replace it")
            head = self._s3(s3.head, key)
            total = head["size"]
            if total > self.max_transfer_bytes:
                raise TooLarge(f"s3://{s3.bucket}/{key} is {total} bytes; the most one transfer moves is "
                               f"{self.max_transfer_bytes} bytes")
        with self._lock:
            active = sum(1 for t in self._transfers.values() if t["status"] in ("queued", "running"))
            if active >= self.max_queued_transfers:
                raise TooMany(f"{active} transfers are unfinished; wait for some to end")
            tid = TRANSFER_ID_PREFIX + uuid.uuid4().hex[:16]
            t = {"id": tid, "direction": direction, "path": rel, "key": key, "uri": f"s3://{s3.bucket}/{key}",
                 "status": "queued", "bytes_total": total, "bytes_done": 0, "percent": 0.0,
                 "multipart": total >= self.multipart_threshold, "error": None, "etag": None,
                 "created": _now(), "started": None, "finished": None, "seconds": None}
            self._transfers[tid] = t
            self._trim()
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self.max_concurrent_transfers,
                                                    thread_name_prefix="kubelab-transfer")
            executor = self._executor
        executor.submit(self._run_transfer, tid, local)
        return self._transfer_view(t)

    def _exists(self, key: str) -> bool:
        try:
            self.store.head(key)
            return True
        except S3Error as e:
            if e.status == 404:
                return False
            raise from_s3(e) from None

    def _trim(self) -> None:
        done = [k for k, t in self._transfers.items() if t["status"] in ("succeeded", "failed")]
        for k in done[:max(0, len(done) - self.transfer_history)]:
            del self._transfers[k]

    def _run_transfer(self, tid: str, local: str) -> None:
        t = self._transfers[tid]
        lock = threading.Lock()
        t0 = time.monotonic()

        def progress(n: int) -> None:
            with lock:
                t["bytes_done"] = min(t["bytes_total"], t["bytes_done"] + n)
                t["percent"] = _percent(t["bytes_done"], t["bytes_total"])

        t["status"], t["started"] = "running", _now()
        s3 = self.s3
        try:
            if t["direction"] == "upload":
                s3.upload_file(local, t["key"], progress)
                t["etag"] = s3.head(t["key"])["etag"]
            else:
                os.makedirs(os.path.dirname(local), exist_ok=True)
                s3.download_file(t["key"], local, progress)
                t["etag"] = None
            with lock:
                t["bytes_done"] = t["bytes_total"]
                t["percent"] = 100.0
                t["status"] = "succeeded"
        except S3Error as e:
            t["status"], t["error"] = "failed", e.message
        except OSError as e:
            t["status"], t["error"] = "failed", f"{t['path']}: {e.strerror or e}"
        except Exception as e:  # noqa: BLE001 - recorded on the transfer, never lost in a thread
            self.log.exception("kubelab: transfer %s failed", tid)
            t["status"], t["error"] = "failed", f"transfer failed: {_one_line(e)}"
        finally:
            t["finished"] = _now()
            t["seconds"] = round(time.monotonic() - t0, 3)

    def _transfer_view(self, t: dict) -> dict:
        return dict(t)

    def transfer(self, tid: str) -> dict:
        t = self._transfers.get(tid) if isinstance(tid, str) else None
        if t is None:
            raise NotFound(f"transfer {tid!r} not found (this server keeps its recent transfers only)")
        return self._transfer_view(t)

    def transfers(self) -> list[dict]:
        """This server's recent transfers, newest first."""
        return [self._transfer_view(t) for t in reversed(list(self._transfers.values()))]

    def wait_transfer(self, tid: str, timeout: float | None = None, interval: float = 0.2,
                      on_progress: Callable[[dict], None] | None = None) -> dict:
        """Poll a transfer until it ends (for the magics)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            t = self.transfer(tid)
            if on_progress:
                on_progress(t)
            if t["status"] in ("succeeded", "failed") or (deadline and time.monotonic() > deadline):
                return t
            time.sleep(interval)


class _Count:
    n = 0


def _percent(done: int, total: int) -> float:
    return 100.0 if total <= 0 else round(min(100.0, 100.0 * done / total), 1)


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or e.__class__.__name__
    return text[:300]


# -- previews: byte ranges through pyarrow --------------------------------------------------------
class _Prefix:
    """The beginning of an object, read through the range reader as it is needed."""

    def __init__(self, reader: Any):
        self.reader, self.data = reader, b""

    @property
    def complete(self) -> bool:
        return len(self.data) >= self.reader.size

    def grow(self, target: int) -> bool:
        """Have at least the first ``target`` bytes (or the whole object); True when it is all there."""
        end = min(target, self.reader.size)
        while len(self.data) < end:
            self.reader.seek(len(self.data))
            chunk = self.reader.read(end - len(self.data))
            if not chunk:
                break
            self.data += chunk
        return self.complete


def _grow_until(reader: Any, enough: Callable[[bytes, bool], Any]) -> Any:
    """Read more of the object (64 KiB, then x4) until ``enough(data, complete)`` returns a result.

    The range reader's budget ends it: past the budget it raises S3Error(413)."""
    prefix = _Prefix(reader)
    target = FIRST_READ
    while True:
        budget_left = reader.budget - reader.fetched
        complete = prefix.grow(min(target, len(prefix.data) + budget_left))
        result = enough(prefix.data, complete)
        if result is not None:
            return result
        if complete:
            raise ValueError("the data ended unexpectedly")
        if reader.budget - reader.fetched <= 0:
            raise S3Error(413, "preview budget spent")
        target *= 4


def _schema(schema: Any) -> list[dict]:
    return [{"name": f.name, "type": str(f.type), "nullable": bool(f.nullable)} for f in schema]


def column_stats(table: Any) -> dict[str, dict]:
    """count, nulls, and min/max/mean (numbers), min/max (times), distinct (text), true (booleans)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    out: dict[str, dict] = {}
    for name, col in zip(table.column_names, table.columns):
        nulls = col.null_count
        s: dict[str, Any] = {"count": len(col) - nulls, "nulls": nulls}
        t = col.type
        try:
            if s["count"] and (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)):
                mm = pc.min_max(col)
                s["min"], s["max"] = D.json_safe(mm["min"].as_py()), D.json_safe(mm["max"].as_py())
                s["mean"] = D.json_safe(pc.mean(col).as_py())
            elif s["count"] and pa.types.is_boolean(t):
                s["true"] = pc.sum(col).as_py() or 0
            elif s["count"] and pa.types.is_temporal(t):
                mm = pc.min_max(col)
                s["min"], s["max"] = D.json_safe(mm["min"].as_py()), D.json_safe(mm["max"].as_py())
            elif s["count"] and (pa.types.is_string(t) or pa.types.is_large_string(t)
                                 or pa.types.is_string_view(t) or pa.types.is_dictionary(t)):
                s["distinct"] = pc.count_distinct(col, mode="only_valid").as_py()
                if not pa.types.is_dictionary(t):
                    mm = pc.min_max(col)
                    s["min"], s["max"] = D.json_safe(mm["min"].as_py()), D.json_safe(mm["max"].as_py())
        except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError):
            pass
        out[name] = s
    return out


def _finish(table: Any, n: int, more: bool, total_rows: int | None) -> dict:
    """The common part of a preview: schema, rows, statistics (of the rows shown)."""
    total_columns = table.num_columns
    if total_columns > D.MAX_PREVIEW_COLUMNS:
        table = table.select(list(range(D.MAX_PREVIEW_COLUMNS)))
    table = table.slice(0, n)
    return {"columns": _schema(table.schema), "rows": [D.json_safe(r) for r in table.to_pylist()],
            "row_count": table.num_rows, "total_rows": total_rows,
            "truncated": bool(more or total_columns > table.num_columns),
            "total_columns": total_columns, "columns_truncated": total_columns > table.num_columns,
            "stats": column_stats(table), "stats_scope": "rows", "file_stats": None, "row_groups": None}


def preview_parquet(reader: Any, n: int, key: str = "") -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(reader, buffer_size=PARQUET_BUFFER, pre_buffer=False)
    md = pf.metadata
    names = pf.schema_arrow.names[:D.MAX_PREVIEW_COLUMNS]
    batches, got = [], 0
    if md.num_rows:
        for batch in pf.iter_batches(batch_size=n, columns=names, use_threads=False):
            batches.append(batch.slice(0, n - got))
            got += min(batch.num_rows, n - got)
            if got >= n:
                break
    schema = pf.schema_arrow
    table = pa.Table.from_batches(batches) if batches else schema.empty_table().select(names)
    doc = _finish(table, n, md.num_rows > got, md.num_rows)
    doc["total_columns"] = len(schema.names)
    doc["columns_truncated"] = len(schema.names) > len(names)
    doc["columns"] = _schema(pa.schema([schema.field(nm) for nm in names]))
    doc["truncated"] = md.num_rows > got or doc["columns_truncated"]
    doc["row_groups"] = md.num_row_groups
    doc["file_stats"] = parquet_file_stats(md, set(names))
    return doc


def parquet_file_stats(md: Any, names: set[str]) -> dict[str, dict]:
    """Nulls, min and max of each top-level column over the whole file, from the footer's
    row-group statistics (no data read); None where a row group has none."""
    out: dict[str, dict] = {}
    for ci in range(md.num_columns):
        path = md.schema.column(ci).path
        if path not in names:
            continue
        nulls: int | None = 0
        lo = hi = None
        minmax_ok = True
        for rg in range(md.num_row_groups):
            group = md.row_group(rg)
            st = group.column(ci).statistics
            if st is None:
                nulls, minmax_ok = None, False
                break
            if st.has_null_count and nulls is not None:
                nulls += st.null_count
            else:
                nulls = None
            if st.has_min_max:
                try:
                    lo = st.min if lo is None else min(lo, st.min)
                    hi = st.max if hi is None else max(hi, st.max)
                except TypeError:
                    minmax_ok = False
            elif group.num_rows > (st.null_count if st.has_null_count else 0):
                minmax_ok = False
        out[path] = {"nulls": nulls, "min": D.json_safe(lo) if minmax_ok else None,
                     "max": D.json_safe(hi) if minmax_ok else None}
    return out


def _utf8(data: bytes, complete: bool) -> str:
    """Text of a beginning of an object: a character cut at the end waits for the next read."""
    if not complete:
        for cut in range(0, 4):
            try:
                return data[:len(data) - cut].decode("utf-8")
            except UnicodeDecodeError:
                continue
    return data.decode("utf-8", "replace")


def preview_csv(reader: Any, n: int, key: str = "") -> dict:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    def enough(data: bytes, complete: bool):
        text = data if complete else data[:data.rfind(b"\n") + 1]
        if not text or (not complete and text.count(b"\n") < n + 1):
            return None
        sample = _utf8(text[:65536], complete)
        delimiter = D.sniff_delimiter(sample, key)
        try:
            text.decode("utf-8")
        except UnicodeDecodeError:
            text = text.decode("utf-8", "replace").encode("utf-8")
        try:
            table = pacsv.read_csv(io.BytesIO(text),
                                   read_options=pacsv.ReadOptions(use_threads=False, block_size=len(text) + 1),
                                   parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True))
        except pa.ArrowInvalid:
            if complete:
                raise
            return None     # a quoted value with a line break was cut: read more
        if table.num_rows < n and not complete:
            return None
        doc = _finish(table, n, table.num_rows > n or not complete, table.num_rows if complete else None)
        doc["delimiter"] = delimiter
        return doc

    return _grow_until(reader, enough)


def _records_table(records: list[Any]) -> Any:
    import pyarrow as pa

    rows = [r if isinstance(r, dict) else {"value": r} for r in records]
    try:
        return pa.Table.from_pylist(rows)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError, ValueError):
        names: list[str] = []
        for r in rows:
            names += [k for k in r if k not in names]
        cols = {k: [None if r.get(k) is None else r[k] if isinstance(r.get(k), str) else json.dumps(r[k])
                    for r in rows] for k in names}
        return pa.table({k: pa.array(v, pa.string()) for k, v in cols.items()})


def _json_lines(text: str, n: int) -> list[Any]:
    out = []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except ValueError:
            raise ValueError(f"line {i} is not JSON") from None
        if len(out) >= n:
            break
    return out


def _records_doc(records: list[Any], n: int, more: bool, total: int | None) -> dict:
    doc = _finish(_records_table(records[:n]), n, more, total)
    doc["rows"] = [D.json_safe(r if isinstance(r, dict) else {"value": r}) for r in records[:n]]
    return doc


def preview_jsonl(reader: Any, n: int, key: str = "") -> dict:
    def enough(data: bytes, complete: bool):
        raw = data if complete else data[:data.rfind(b"\n") + 1]
        text = _utf8(raw, True)
        lines = [ln for ln in text.splitlines() if ln.strip()]
        if len(lines) < n and not complete:
            return None
        records = _json_lines(text, n)
        total = len(lines) if complete else None
        return _records_doc(records, n, len(lines) > n or not complete, total)

    return _grow_until(reader, enough)


def preview_json(reader: Any, n: int, key: str = "") -> dict:
    """A JSON array of records (read as far as needed), one JSON object, or JSON Lines in a .json file."""
    def enough(data: bytes, complete: bool):
        text = _utf8(data, complete)
        start = text.lstrip()[:1]
        if start == "[":
            records, ended = D.first_json_records(text, n, complete)
            if not ended and not complete:
                return None
            total = None
            if complete:
                whole = json.loads(text)
                total = len(whole) if isinstance(whole, list) else None
            return _records_doc(records, n, total is None or total > n, total)
        if start == "{":
            if complete:
                try:
                    return _records_doc([json.loads(text)], n, False, 1)
                except ValueError:
                    pass    # JSON Lines in a .json file
            head = text.split("\n", 1)
            if len(head) > 1 or complete:
                try:
                    json.loads(head[0])
                except ValueError:
                    if complete:
                        raise ValueError("not a JSON document or JSON Lines") from None
                    return None
                raw = data if complete else data[:data.rfind(b"\n") + 1]
                lines = [ln for ln in _utf8(raw, True).splitlines() if ln.strip()]
                if len(lines) < n and not complete:
                    return None
                return _records_doc(_json_lines(_utf8(raw, True), n), n, len(lines) > n or not complete,
                                    len(lines) if complete else None)
            return None
        if not complete:
            return None
        return _records_doc([json.loads(text)], n, False, 1)

    return _grow_until(reader, enough)


PREVIEWERS: dict[str, Callable[[Any, int, str], dict]] = {
    "parquet": preview_parquet, "csv": preview_csv, "json": preview_json, "jsonl": preview_jsonl}
