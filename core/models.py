"""The model registry and model serving as Kubernetes objects (pure).

A registered model is a ``Model`` custom resource (group kubelab.io) with one
``ModelVersion`` per version, both in the user's namespace; the artifacts live
in S3 under ``users/<user>/.kubelab/models/<name>/<version>/`` (kubelab's own
folder in the home, so deleting a model never touches the user's own files). A
deployed model is a ``Deployment`` (an init container copies the version from
the node's read-only S3 mount of the home and checks its digest; the server
container runs ``kubelab.server_extension.serving``,
a KServe ModelServer speaking the Open Inference Protocol V1 and V2) plus a
``Service``, or a KServe ``InferenceService`` where KServe is installed.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from . import labels as L
from .names import is_dns_label
from .s3layout import user_prefix
from .settings import WorkspaceSettings
from .workloads import Compute, WorkloadError, _labels, check_name

API_VERSION = f"{L.GROUP}/v1alpha1"
FORMATS = ("sklearn", "xgboost", "lightgbm", "onnx", "torchscript", "safetensors")
MODEL_LABEL = f"{L.GROUP}/model"
VERSION_LABEL = f"{L.GROUP}/model-version"
SERVICE_LABEL = f"{L.GROUP}/inference-service"
SERVING_MODULE = "kubelab.server_extension.serving"
FETCH_MODULE = "kubelab.server_extension.serving.fetch"
MODELS_DIR = ".kubelab/models"  # the registry's artifacts, in the user's home
HOME_RO_DIR = "/mnt/home"  # the user's home in the node's S3 mount, read-only (where versions are stored)
HTTP_PORT = 8080
MODEL_DIR = "/mnt/models"
MAX_MODEL_NAME = 50      # <model>-v<version> must stay a DNS label
ALIAS = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
# KServe's model format names for our formats (InferenceService predictor.model.modelFormat.name).
KSERVE_FORMATS = {"sklearn": "sklearn", "xgboost": "xgboost", "lightgbm": "lightgbm", "onnx": "onnx",
                  "torchscript": "pytorch", "safetensors": "huggingface"}


def models_prefix(user: str, name: str, version: int | None = None) -> str:
    """``users/<user>/.kubelab/models/<name>/[<version>/]`` in the bucket."""
    base = f"{user_prefix(user)}{MODELS_DIR}/{name}/"
    return f"{base}{version}/" if version is not None else base


def version_name(model: str, version: int) -> str:
    return f"{model}-v{version}"


def check_model_name(name: Any) -> str:
    return check_name(name, "model", MAX_MODEL_NAME)


def check_alias(alias: Any) -> str:
    if not isinstance(alias, str) or not ALIAS.match(alias) or alias.startswith("v") and alias[1:].isdigit():
        raise WorkloadError(f"alias {alias!r} is invalid: use lowercase letters, digits and '-' (e.g. production), "
                            "not a version like v2")
    return alias


def check_format(fmt: Any) -> str:
    if fmt not in FORMATS:
        raise WorkloadError(f"unknown model format {fmt!r}; supported: {', '.join(FORMATS)}")
    return fmt


# -- registry records ------------------------------------------------------------------------------
def model_object(settings: WorkspaceSettings, name: str, description: str = "", tags: list[str] = (),
                 aliases: Mapping[str, int] | None = None) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": "Model",
            "metadata": {"name": name, "namespace": settings.namespace,
                         "labels": _labels(settings, "model", {MODEL_LABEL: name})},
            "spec": {"description": description, "tags": list(tags), "aliases": dict(aliases or {})}}


@dataclass(frozen=True)
class VersionRecord:
    model: str
    version: int
    format: str
    artifact_uri: str
    files: tuple[str, ...]
    bytes: int
    sha256: str
    verdict: dict[str, Any]
    framework_versions: dict[str, str] = field(default_factory=dict)
    signature: dict[str, Any] | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    lineage: dict[str, str] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    description: str = ""


def version_object(settings: WorkspaceSettings, rec: VersionRecord, owner_uid: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": version_name(rec.model, rec.version), "namespace": settings.namespace,
        "labels": _labels(settings, "model-version", {MODEL_LABEL: rec.model, VERSION_LABEL: str(rec.version)})}
    if owner_uid:
        meta["ownerReferences"] = [{"apiVersion": API_VERSION, "kind": "Model", "name": rec.model,
                                    "uid": owner_uid, "blockOwnerDeletion": True}]
    spec: dict[str, Any] = {
        "model": rec.model, "version": rec.version, "format": rec.format, "description": rec.description,
        "tags": list(rec.tags), "frameworkVersions": dict(rec.framework_versions), "metrics": dict(rec.metrics),
        "lineage": {k: v for k, v in rec.lineage.items() if v},
        "artifact": {"uri": rec.artifact_uri, "files": list(rec.files), "bytes": rec.bytes, "sha256": rec.sha256}}
    if rec.signature:
        spec["signature"] = rec.signature
    return {"apiVersion": API_VERSION, "kind": "ModelVersion", "metadata": meta, "spec": spec,
            "status": {"validation": dict(rec.verdict)}}


def parse_metrics(value: Any) -> dict[str, float]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, (int, float))
                                              and not isinstance(v, bool) for k, v in value.items()):
        raise WorkloadError("metrics must be an object of names to numbers, e.g. {\"accuracy\": 0.93}")
    return {k: float(v) for k, v in value.items()}


def parse_lineage(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    allowed = {"dataset", "job", "notebook", "environment"}
    if not isinstance(value, dict) or set(value) - allowed or not all(isinstance(v, str) for v in value.values()):
        raise WorkloadError(f"lineage must be an object with some of {', '.join(sorted(allowed))} (strings)")
    return dict(value)


def parse_tags(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(t, str) and 0 < len(t) <= 63 for t in value):
        raise WorkloadError("tags must be a list of short strings")
    return tuple(value)


def resolve_version(model: Mapping[str, Any], ref: Any) -> int:
    """A version number from ``3``, ``"3"``, ``"v3"`` or an alias of the model."""
    if isinstance(ref, int) and not isinstance(ref, bool) and ref > 0:
        return ref
    if isinstance(ref, str):
        r = ref[1:] if ref.startswith("v") and ref[1:].isdigit() else ref
        if r.isdigit() and int(r) > 0:
            return int(r)
        aliases = model.get("spec", {}).get("aliases") or {}
        if ref in aliases:
            return int(aliases[ref])
    name = model.get("metadata", {}).get("name", "?")
    raise WorkloadError(f"model {name!r} has no version or alias {ref!r}")


def model_view(model: Mapping[str, Any], versions: list[Mapping[str, Any]] = ()) -> dict[str, Any]:
    spec = model.get("spec", {})
    vs = sorted((version_view(v) for v in versions), key=lambda v: v["version"])
    return {"name": model["metadata"]["name"], "description": spec.get("description", ""),
            "tags": spec.get("tags", []), "aliases": spec.get("aliases", {}),
            "created": model["metadata"].get("creationTimestamp"),
            "latest_version": vs[-1]["version"] if vs else None, "versions": vs}


def version_view(v: Mapping[str, Any]) -> dict[str, Any]:
    spec = v.get("spec", {})
    return {"model": spec.get("model"), "version": spec.get("version"), "name": v["metadata"]["name"],
            "format": spec.get("format"), "description": spec.get("description", ""),
            "tags": spec.get("tags", []), "framework_versions": spec.get("frameworkVersions", {}),
            "signature": spec.get("signature"), "metrics": spec.get("metrics", {}),
            "lineage": spec.get("lineage", {}), "artifact": spec.get("artifact", {}),
            "validation": v.get("status", {}).get("validation", {}),
            "created": v["metadata"].get("creationTimestamp")}


# -- serving -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ServingSpec:
    name: str                # the inference service's name
    model: str
    version: int
    format: str
    artifact_uri: str
    compute: Compute
    replicas: int = 1
    alias: str = ""          # what the user asked for (e.g. production), recorded
    image: str = ""
    sha256: str = ""         # the digest taken at registration; a replica checks its copy against it


def artifact_path(settings: WorkspaceSettings, uri: str) -> str:
    """Where a registered version's files are in the user's home
    (``.kubelab/models/<name>/<n>``); only the user's own registered versions qualify."""
    prefix = uri.split("/", 3)[3] if uri.startswith("s3://") and uri.count("/") >= 3 else ""
    home = user_prefix(settings.user)
    rel = prefix[len(home):].rstrip("/") if prefix.startswith(f"{home}{MODELS_DIR}/") else ""
    parts = rel[len(MODELS_DIR) + 1:].split("/")
    if not rel or len(parts) != 2 or "" in parts or ".." in parts:
        raise WorkloadError(f"{uri!r} is not one of your registered model versions")
    return rel


def check_service_name(name: Any) -> str:
    return check_name(name, "service", 63)


def serving_objects(settings: WorkspaceSettings, spec: ServingSpec, image: str,
                    grace_seconds: int = 30) -> list[dict[str, Any]]:
    """Deployment + Service serving one model version (rolling updates lose no requests:
    maxUnavailable 0, a readiness probe on the model, and a preStop pause so the
    endpoint leaves every proxy before the server stops).

    The init container copies the version from the node's S3 mount (the user's
    home, read-only) and checks its digest: the pod holds no S3
    credentials, so nothing expires under a service that runs for months."""
    sel = {SERVICE_LABEL: spec.name}
    labels = {**_labels(settings, "inference-service", sel), MODEL_LABEL: spec.model,
              VERSION_LABEL: str(spec.version), L.RESOURCE_GROUP: spec.compute.group.name}
    volume_mount = {"name": "model", "mountPath": MODEL_DIR}
    # The home's subPath, as the admission policy allows (no deeper subPaths: see deploy/admission).
    home = {"name": "kubelab-s3", "mountPath": HOME_RO_DIR, "readOnly": True, "subPath": settings.home_subpath}
    source = f"{HOME_RO_DIR}/{artifact_path(settings, spec.artifact_uri)}"
    fetch = {"name": "fetch-model", "image": image, "imagePullPolicy": settings.image_pull_policy,
             "command": ["python", "-m", FETCH_MODULE, source, MODEL_DIR]
             + (["--sha256", spec.sha256] if spec.sha256 else []),
             "volumeMounts": [volume_mount, home],
             "terminationMessagePolicy": "FallbackToLogsOnError",
             "resources": {"requests": {"cpu": "100m", "memory": "256Mi"},
                           "limits": {"cpu": "1", "memory": "1Gi"}}}
    ready = {"httpGet": {"path": f"/v2/models/{spec.name}/ready", "port": HTTP_PORT},
             "periodSeconds": 1, "failureThreshold": 2, "successThreshold": 1}
    server = {"name": "server", "image": image, "imagePullPolicy": settings.image_pull_policy,
              "command": ["python", "-m", SERVING_MODULE, "--model-dir", MODEL_DIR, "--model-name", spec.name,
                          "--format", spec.format, "--http-port", str(HTTP_PORT)],
              "ports": [{"name": "http", "containerPort": HTTP_PORT}],
              "env": [{"name": "HOME", "value": "/tmp"}], "volumeMounts": [volume_mount],
              "resources": spec.compute.resources(), "readinessProbe": ready,
              "startupProbe": {**ready, "failureThreshold": 300},
              "lifecycle": {"preStop": {"sleep": {"seconds": 3}}},
              "terminationMessagePolicy": "FallbackToLogsOnError"}
    pod: dict[str, Any] = {"automountServiceAccountToken": False, "enableServiceLinks": False,
                           "terminationGracePeriodSeconds": grace_seconds,
                           "initContainers": [fetch], "containers": [server],
                           "volumes": [{"name": "model", "emptyDir": {}},
                                       {"name": "kubelab-s3", "hostPath": {"path": settings.s3_mount_host_path,
                                                                           "type": "Directory"}}]}
    sc = {k: v for k, v in (("runAsUser", settings.uid), ("runAsGroup", settings.gid)) if v is not None}
    if sc:
        pod["securityContext"] = sc
    if spec.compute.group.node_selector:
        pod["nodeSelector"] = dict(spec.compute.group.node_selector)
    if spec.compute.group.tolerations:
        pod["tolerations"] = [dict(t) for t in spec.compute.group.tolerations]
    record = {"model": spec.model, "version": spec.version, "alias": spec.alias, "format": spec.format,
              **spec.compute.to_dict(), "replicas": spec.replicas}
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": spec.name, "namespace": settings.namespace, "labels": labels,
                     "annotations": {f"{L.GROUP}/serving": json.dumps(record, sort_keys=True)}},
        "spec": {"replicas": spec.replicas, "selector": {"matchLabels": dict(sel)},
                 "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
                 "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600,
                 "template": {"metadata": {"labels": labels,
                                           "annotations": {"prometheus.io/scrape": "true",
                                                           "prometheus.io/port": str(HTTP_PORT),
                                                           "prometheus.io/path": "/metrics"}},
                              "spec": pod}}}
    service = {"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": spec.name, "namespace": settings.namespace,
                            "labels": _labels(settings, "inference-service", sel)},
               "spec": {"selector": dict(sel),
                        "ports": [{"name": "http", "port": 80, "targetPort": HTTP_PORT}]}}
    return [deployment, service]


def inference_service(settings: WorkspaceSettings, spec: ServingSpec) -> dict[str, Any]:
    """A KServe InferenceService (serving.kserve.io/v1beta1) for clusters running KServe.

    KServe's storage initializer fetches ``storageUri`` with the credentials of
    the ``kubelab-s3`` Secret, which KServe reads through the ServiceAccount's
    annotations; the cluster's KServe must be configured for that S3 endpoint.
    """
    labels = {**_labels(settings, "inference-service", {SERVICE_LABEL: spec.name}), MODEL_LABEL: spec.model,
              VERSION_LABEL: str(spec.version)}
    predictor: dict[str, Any] = {
        "minReplicas": spec.replicas, "maxReplicas": spec.replicas,
        "model": {"modelFormat": {"name": KSERVE_FORMATS[spec.format]}, "protocolVersion": "v2",
                  "storageUri": spec.artifact_uri, "resources": spec.compute.resources()}}
    if spec.compute.group.node_selector:
        predictor["nodeSelector"] = dict(spec.compute.group.node_selector)
    if spec.compute.group.tolerations:
        predictor["tolerations"] = [dict(t) for t in spec.compute.group.tolerations]
    record = {"model": spec.model, "version": spec.version, "alias": spec.alias, "format": spec.format,
              **spec.compute.to_dict(), "replicas": spec.replicas}
    return {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": spec.name, "namespace": settings.namespace, "labels": labels,
                         "annotations": {f"{L.GROUP}/serving": json.dumps(record, sort_keys=True)}},
            "spec": {"predictor": predictor}}


def serving_record(obj: Mapping[str, Any]) -> dict[str, Any]:
    try:
        return json.loads(obj["metadata"].get("annotations", {}).get(f"{L.GROUP}/serving") or "{}")
    except ValueError:
        return {}


def v2_request(signature: Mapping[str, Any] | None, data: Any) -> dict[str, Any]:
    """An Open Inference Protocol V2 request from rows (``[[...], ...]``) and the stored signature."""
    inputs = (signature or {}).get("inputs") or [{"name": "input-0", "datatype": "FP64"}]
    if len(inputs) != 1:
        raise WorkloadError("this model has several inputs: send a V2 request with each input by name")
    if not isinstance(data, list) or not data:
        raise WorkloadError("data must be a non-empty list of rows, e.g. [[5.1, 3.5, 1.4, 0.2]]")
    rows = data if isinstance(data[0], list) else [data]
    width = len(rows[0])
    if any(not isinstance(r, list) or len(r) != width for r in rows):
        raise WorkloadError("every row must be a list of the same length")
    inp = inputs[0]
    flat = [x for r in rows for x in r]
    return {"inputs": [{"name": inp["name"], "datatype": inp.get("datatype", "FP64"), "shape": [len(rows), width],
                        "data": flat}]}


def is_valid_name(name: str) -> bool:
    return is_dns_label(name)
