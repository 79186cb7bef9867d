"""The model registry: Model and ModelVersion custom resources in the user's
namespace, artifacts in S3 under ``users/<user>/.kubelab/models/<name>/<version>/``.

Registration validates first (format detected and confirmed, pickles scanned
against an import allowlist and refused unless configuration allows them, the
model loaded in a sandboxed subprocess with the serving runtime) and stores
nothing for an invalid model.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any, Mapping

from traitlets import Bool, Instance, Int, List, Unicode
from traitlets.config import LoggingConfigurable

from kubelab.core import models as M
from kubelab.core.workloads import WorkloadError

from ..s3 import S3, S3Error, parse_uri
from ..serving.fetch import digest, files_of
from .errors import BadRequest, Conflict, NotFound, ServiceError
from .workspace import Workspace

MODEL = (M.API_VERSION, "Model")
VERSION = (M.API_VERSION, "ModelVersion")
FIELDS = frozenset({"name", "path", "uri", "format", "description", "tags", "metrics", "lineage", "aliases"})


def s3_error(e: S3Error) -> ServiceError:
    return ServiceError(e.message, e.status if 400 <= e.status < 600 else 502)


class ModelService(LoggingConfigurable):
    """Register, list, alias and delete models and their versions."""

    workspace = Instance(Workspace)

    allow_pickle = Bool(
        False,
        config=True,
        help="""
        Accept pickle-based artifacts (scikit-learn's joblib/pickle files).
        Even then, every pickle is scanned without being loaded, and any import
        outside ``pickle_allowlist`` is refused; only then is it loaded, in a
        sandboxed subprocess. Off (the default): pickles are refused.

        Example::

            c.ModelService.allow_pickle = True
        """,
    )
    pickle_allowlist = List(
        Unicode(),
        config=True,
        help="""
        More imports a pickle may make when ``allow_pickle`` is on, added to
        kubelab's list (numpy, scipy, sklearn, xgboost/lightgbm estimators,
        joblib's array wrapper, safe builtins). An entry ending in ``.`` allows
        a module and everything under it; others allow one exact name.
        Dangerous modules (os, subprocess, builtins.eval, ...) are refused
        whatever this says.

        Example::

            c.ModelService.pickle_allowlist = ["mycompany.features."]
        """,
    )
    validation_timeout = Int(
        120,
        config=True,
        help="""
        Seconds the sandboxed load of a model may take at registration.

        Example::

            c.ModelService.validation_timeout = 300
        """,
    )
    validation_memory_mb = Int(
        4096,
        config=True,
        help="""
        Address-space limit (MiB) of the sandboxed load at registration.

        Example::

            c.ModelService.validation_memory_mb = 8192
        """,
    )
    max_artifact_bytes = Int(
        10 * 1024 ** 3,
        config=True,
        help="""
        The largest model (all files) a user may register.

        Example::

            c.ModelService.max_artifact_bytes = 50 * 1024**3
        """,
    )

    def __init__(self, **kw: Any):
        super().__init__(**kw)
        self._s3: S3 | None = None

    @property
    def ws(self) -> Workspace:
        return self.workspace

    @property
    def s3(self) -> S3:
        if self._s3 is None:
            self._s3 = S3()
        return self._s3

    # -- read -------------------------------------------------------------------------------------
    def _model(self, name: str) -> dict:
        return self.ws.require(*MODEL, name, (M.MODEL_LABEL, name), "model")

    def _versions(self, name: str) -> list[dict]:
        return self.ws.call(self.ws.kube.items, *VERSION, label_selector=f"{M.MODEL_LABEL}={name}")

    def list(self) -> list[dict]:
        models = self.ws.call(self.ws.kube.items, *MODEL, label_selector=M.MODEL_LABEL)
        versions = self.ws.call(self.ws.kube.items, *VERSION, label_selector=M.MODEL_LABEL)
        out = []
        for m in sorted(models, key=lambda m: m["metadata"]["name"]):
            mine = [v for v in versions if v["spec"].get("model") == m["metadata"]["name"]]
            out.append(M.model_view(m, mine))
        return out

    def get(self, name: str) -> dict:
        return M.model_view(self._model(name), self._versions(name))

    def version(self, name: str, ref: Any) -> dict:
        """One version by number, ``v<N>`` or alias."""
        model = self._model(name)
        try:
            n = M.resolve_version(model, ref)
        except WorkloadError as e:
            raise NotFound(str(e)) from None
        v = self.ws.call(self.ws.kube.get, *VERSION, M.version_name(name, n))
        if v is None:
            raise NotFound(f"model {name!r} has no version {n}")
        return M.version_view(v)

    # -- register ---------------------------------------------------------------------------------
    def register(self, req: Mapping[str, Any]) -> dict:
        if not isinstance(req, Mapping):
            raise BadRequest("the request body must be a JSON object")
        extra = sorted(set(req) - FIELDS)
        if extra:
            raise BadRequest(f"unknown model field(s): {', '.join(extra)}")
        try:
            name = M.check_model_name(req.get("name"))
            fmt = M.check_format(req["format"]) if req.get("format") else None
            tags, metrics = M.parse_tags(req.get("tags")), M.parse_metrics(req.get("metrics"))
            lineage = M.parse_lineage(req.get("lineage"))
            aliases = [M.check_alias(a) for a in (req.get("aliases") or [])]
        except WorkloadError as e:
            raise BadRequest(str(e)) from None
        description = req.get("description") or ""
        if not isinstance(description, str) or len(description) > 10000:
            raise BadRequest("description must be a string of at most 10000 characters")
        if bool(req.get("path")) == bool(req.get("uri")):
            raise BadRequest("give exactly one of path (a file or folder in your home) or uri (s3://...)")
        with tempfile.TemporaryDirectory(prefix="kubelab-model-") as tmp:
            staged = os.path.join(tmp, "model")
            self._stage(req, staged)
            verdict = self._validate(staged, fmt)
            if verdict["status"] != "valid":
                raise BadRequest(f"model {name!r} was not registered: {verdict['status']}: {verdict['reason']}")
            return self._store(name, staged, verdict, description, tags, metrics, lineage, aliases)

    def _stage(self, req: Mapping[str, Any], dest: str) -> None:
        """Copy the artifact (file or folder) into ``dest`` (a folder), checking its size."""
        os.makedirs(dest)
        if req.get("path"):
            _rel, local = self.ws.home_path(req["path"], "path")
            if not os.path.exists(local):
                raise BadRequest(f"path {req['path']!r} was not found in your home")
            files = [local] if os.path.isfile(local) else [
                os.path.join(d, f) for d, _, fs in os.walk(local) for f in fs]
            total = sum(os.path.getsize(f) for f in files)
            self._check_size(total, len(files))
            if os.path.isfile(local):
                shutil.copyfile(local, os.path.join(dest, os.path.basename(local)))
            else:
                shutil.copytree(local, dest, dirs_exist_ok=True)
            return
        uri = req["uri"]
        if not isinstance(uri, str):
            raise BadRequest("uri must be an s3:// URI")
        try:
            bucket, key = parse_uri(uri)
            objs = [{"key": key, "size": self.s3.head(key, bucket)["size"]}] if not key.endswith("/") \
                else list(self.s3.iter_keys(key, bucket))
            self._check_size(sum(o["size"] for o in objs), len(objs))
            for o in objs:
                rel = os.path.basename(o["key"]) if not key.endswith("/") else o["key"][len(key):]
                if not rel or ".." in rel.split("/"):
                    continue
                target = os.path.join(dest, rel)
                os.makedirs(os.path.dirname(target), exist_ok=True)
                self.s3.download_file(o["key"], target, bucket=bucket)
        except S3Error as e:
            raise s3_error(e) from None

    def _check_size(self, total: int, count: int) -> None:
        if count == 0:
            raise BadRequest("the model has no files")
        if total > self.max_artifact_bytes:
            raise ServiceError(f"the model is {total / 1024 ** 2:.0f} MiB; the limit is "
                               f"{self.max_artifact_bytes / 1024 ** 2:.0f} MiB", 413)

    def _validate(self, staged: str, fmt: str | None) -> dict:
        from ..modelcheck import validate

        kw: dict[str, Any] = {"declared_format": fmt, "allow_pickle": self.allow_pickle,
                              "timeout": self.validation_timeout, "memory_mb": self.validation_memory_mb}
        if self.pickle_allowlist:
            from ..modelcheck import DEFAULT_ALLOWLIST

            kw["allowlist"] = list(DEFAULT_ALLOWLIST) + list(self.pickle_allowlist)
        return validate(staged, **kw).to_dict()

    def _store(self, name: str, staged: str, verdict: dict, description: str, tags: tuple[str, ...],
               metrics: dict, lineage: dict, aliases: list[str]) -> dict:
        settings = self.ws.settings
        model = self.ws.call(self.ws.kube.get, *MODEL, name)
        if model is None:
            model = self.ws.call(self.ws.kube.create, M.model_object(settings, name, description, tags),
                                 what=f"model {name}")
        existing = [v["spec"]["version"] for v in self._versions(name)]
        files = files_of(staged)
        sha256, size = digest(staged, files)
        for attempt in range(5):  # concurrent registrations take the next number
            n = max(existing, default=0) + 1 + attempt
            prefix = M.models_prefix(settings.user, name, n)
            uri = f"s3://{self.s3.bucket}/{prefix}"
            rec = M.VersionRecord(model=name, version=n, format=verdict["format"], artifact_uri=uri,
                                  files=tuple(files), bytes=size, sha256=sha256, verdict=verdict,
                                  framework_versions=verdict.get("framework_versions") or {},
                                  signature=verdict.get("signature"), metrics=metrics, lineage=lineage, tags=tags,
                                  description=description)
            try:
                created = self.ws.call(self.ws.kube.create,
                                       M.version_object(settings, rec, model["metadata"]["uid"]),
                                       what=f"model {name} version {n}")
            except Conflict:
                continue
            try:
                for f in files:
                    self.s3.upload_file(os.path.join(staged, f), prefix + f)
            except S3Error as e:  # nothing half-created: the record goes with the upload
                self.ws.kube.delete(*VERSION, created["metadata"]["name"])
                try:
                    self.s3.delete_prefix(prefix)
                except S3Error:
                    pass
                raise s3_error(e) from None
            if aliases:
                self._set_aliases(name, {a: n for a in aliases})
            return M.version_view(created)
        raise Conflict(f"too many versions of {name!r} registered at once; try again")

    # -- aliases and deletion -----------------------------------------------------------------------
    def _set_aliases(self, name: str, changes: Mapping[str, int | None]) -> dict:
        patch = {"spec": {"aliases": dict(changes)}}  # merge patch: None removes an alias
        return self.ws.call(self.ws.kube.patch, *MODEL, name, patch, what=f"model {name}")

    def set_alias(self, name: str, alias: str, ref: Any) -> dict:
        try:
            M.check_alias(alias)
        except WorkloadError as e:
            raise BadRequest(str(e)) from None
        v = self.version(name, ref)
        self._set_aliases(name, {alias: v["version"]})
        return self.get(name)

    def remove_alias(self, name: str, alias: str) -> dict:
        model = self._model(name)
        if alias not in (model["spec"].get("aliases") or {}):
            raise NotFound(f"model {name!r} has no alias {alias!r}")
        self._set_aliases(name, {alias: None})
        return self.get(name)

    def delete(self, name: str, served_by: list[str] = ()) -> None:
        """Delete a model, its versions and its artifacts; refused while a service serves it."""
        self._model(name)
        if served_by:
            raise Conflict(f"model {name!r} is served by {', '.join(served_by)}; delete those services first")
        self.ws.call(self.ws.kube.delete, *MODEL, name)
        for v in self._versions(name):
            self.ws.call(self.ws.kube.delete, *VERSION, v["metadata"]["name"])
        try:
            self.s3.delete_prefix(M.models_prefix(self.ws.settings.user, name))
        except S3Error as e:
            raise s3_error(e) from None
