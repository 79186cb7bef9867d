"""Scheduled notebooks and training jobs as Kubernetes objects (pure).

Requests from the REST API and the magics are checked here (names, paths,
cron, sizes) into specs; the specs are built into CronJobs, Jobs and
headless Services; and cluster objects are turned back into the views the API
returns. Nothing here talks to a cluster: the service layer applies and reads.

The CronJob is the record of a schedule: everything the API shows about a
schedule is on the CronJob (its spec and ``kubelab.io/*`` annotations), so a
schedule keeps running, and stays listed, while its user's server is stopped.
"""
from __future__ import annotations

import hashlib
import json
import posixpath
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping

from . import cron
from . import labels as L
from . import resource_groups as rg
from .names import is_dns_label
from .settings import WorkspaceSettings

RUNNER_MODULE = "kubelab.server_extension.runner"
SCHEDULE_LABEL = f"{L.GROUP}/schedule"
JOB_LABEL = f"{L.GROUP}/job"
TRIGGER_ANNOTATION = f"{L.GROUP}/trigger"
IDEMPOTENCY_ANNOTATION = f"{L.GROUP}/idempotency-key"
PARAMETERS_SHA_ANNOTATION = f"{L.GROUP}/parameters-sha256"
CANCELLED_ANNOTATION = f"{L.GROUP}/cancelled"
CANCELLED_BY_ANNOTATION = f"{L.GROUP}/cancelled-by"
SPEC_ANNOTATION = f"{L.GROUP}/spec"
PARAMETERS_ENV = "KUBELAB_PARAMETERS"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
COMPLETION_INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
MAX_SCHEDULE_NAME = 52  # the CronJob controller appends -<minutes> to Job names (63 max)
MAX_JOB_NAME = 52       # pods of an Indexed Job are <job>-<index>-<suffix>
MASTER_PORT = 29500
STATE_DIR = ".kubelab"
RUNTIME_DIR = "/tmp/jupyter-runtime"  # kernels' connection files: private files the S3 home cannot hold
CONCURRENCY_POLICIES = ("Forbid", "Allow", "Replace")


class WorkloadError(ValueError):
    """A user's request is invalid; the message is one line, meant for them."""


# -- checks at the edge ---------------------------------------------------------------------------
def check_name(name: Any, what: str, max_len: int) -> str:
    if not isinstance(name, str) or not name:
        raise WorkloadError(f"{what} name is required")
    if len(name) > max_len:
        raise WorkloadError(f"{what} name {name!r} is too long ({len(name)} > {max_len} characters)")
    if not is_dns_label(name, max_len):
        raise WorkloadError(f"{what} name {name!r} is invalid: use lowercase letters, digits and '-', "
                            "starting and ending with a letter or digit")
    return name


def home_relative(path: Any, home: str, what: str = "path") -> str:
    """A path inside the user's home, as a clean relative path; refuses escapes.

    Accepts ``analysis/a.ipynb``, ``./a.ipynb`` and ``/home/jovyan/a.ipynb``
    (when ``home`` is /home/jovyan).
    """
    if not isinstance(path, str) or not path.strip():
        raise WorkloadError(f"{what} is required")
    if "\x00" in path:
        raise WorkloadError(f"{what} {path!r} is invalid")
    p = path.strip()
    home = home.rstrip("/")
    if p.startswith("/"):
        norm = posixpath.normpath(p)
        if norm != home and not norm.startswith(home + "/"):
            raise WorkloadError(f"{what} {path!r} is outside your home {home}")
        rel = norm[len(home):].lstrip("/")
    else:
        rel = posixpath.normpath(p)
    if rel in ("", ".") or rel == ".." or rel.startswith("../"):
        raise WorkloadError(f"{what} {path!r} is outside your home {home}")
    return rel


def check_int(value: Any, what: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise WorkloadError(f"{what} must be a whole number between {lo} and {hi}")
    try:
        n = int(value)
    except ValueError:
        raise WorkloadError(f"{what} must be a whole number between {lo} and {hi}, not {value!r}") from None
    if not lo <= n <= hi:
        raise WorkloadError(f"{what} must be between {lo} and {hi}, not {n}")
    return n


def _bool(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise WorkloadError(f"{what} must be true or false")
    return value


def _str_map(value: Any, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, (str, int, float, bool))
                                              for k, v in value.items()):
        raise WorkloadError(f"{what} must be an object of names to strings")
    for k in value:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k):
            raise WorkloadError(f"{what}: {k!r} is not a valid environment variable name")
    return {k: str(v) for k, v in value.items()}


def _str_list(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise WorkloadError(f"{what} must be a list of strings")
    return list(value)


def _parameters(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise WorkloadError("parameters must be an object of names to values")
    for k in value:
        if not isinstance(k, str) or not k.isidentifier():
            raise WorkloadError(f"parameter {k!r} is not a valid Python name")
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        raise WorkloadError("parameters must be JSON values") from None
    return dict(value)


def _webhook(value: Any) -> str:
    if value in (None, ""):
        return ""
    if not isinstance(value, str) or not re.match(r"^https?://[^\s/]+", value) or len(value) > 2048:
        raise WorkloadError("webhook must be an http:// or https:// URL")
    return value


def _notify(value: Any) -> tuple[str, ...]:
    if value is None:
        return ("failure",)
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(v in ("failure", "success") for v in items) or not items:
        raise WorkloadError("notify must be a list of 'failure' and/or 'success'")
    return tuple(dict.fromkeys(items))


@dataclass(frozen=True)
class Compute:
    """Where and how big: a resource group, one of its sizes, and GPUs per worker."""

    group: rg.ResourceGroup
    size: rg.Size
    gpus: int

    @classmethod
    def from_request(cls, req: Mapping[str, Any], settings: WorkspaceSettings) -> "Compute":
        try:
            group = settings.group(req.get("resource_group") or None)
        except KeyError as e:
            raise PermissionError(str(e).strip("'\"")) from None
        try:
            size = group.size(req.get("size") or None)
        except ValueError as e:
            raise WorkloadError(str(e)) from None
        raw = req.get("gpus")
        gpus = (1 if group.has_gpus else 0) if raw is None else check_int(raw, "gpus", 0, 64)
        try:
            group.check_gpus(gpus)
        except ValueError as e:
            raise WorkloadError(str(e)) from None
        return cls(group, size, gpus)

    def resources(self) -> dict[str, Any]:
        req = {"cpu": self.size.cpu, "memory": self.size.memory}
        limits = dict(req)
        if self.gpus:
            limits[self.group.gpu_resource] = str(self.gpus)
            req = {**req, self.group.gpu_resource: str(self.gpus)}
        return {"requests": req, "limits": limits}

    def to_dict(self) -> dict[str, Any]:
        return {"resource_group": self.group.name, "size": self.size.name, "gpus": self.gpus}


@dataclass(frozen=True)
class ScheduleDefaults:
    """Operator-configurable defaults (traits of the schedule service)."""

    timezone: str = "UTC"
    concurrency_policy: str = "Forbid"
    starting_deadline_seconds: int = 300
    timeout_seconds: int = 3600
    max_timeout_seconds: int = 86400
    successful_history: int = 5
    failed_history: int = 5
    max_retries: int = 5
    kernel: str = "python3"


@dataclass(frozen=True)
class ScheduleSpec:
    name: str
    notebook: str                     # relative to home
    schedule: str
    timezone: str
    compute: Compute
    parameters: dict[str, Any] = field(default_factory=dict)
    suspend: bool = False
    timeout_seconds: int = 3600
    retries: int = 0
    concurrency_policy: str = "Forbid"
    webhook: str = ""
    notify: tuple[str, ...] = ("failure",)
    kernel: str = "python3"
    description: str = ""

    @property
    def snapshot(self) -> str:
        """The notebook copy runs execute, relative to home."""
        return f"{STATE_DIR}/schedules/{self.name}/{posixpath.basename(self.notebook)}"

    @property
    def output_root(self) -> str:
        return f"{STATE_DIR}/runs/{self.name}"

    def editable(self) -> dict[str, Any]:
        """The request fields as stored on the CronJob (what update merges into)."""
        return {"name": self.name, "notebook": self.notebook, "schedule": self.schedule, "timezone": self.timezone,
                **self.compute.to_dict(), "parameters": self.parameters, "suspend": self.suspend,
                "timeout_seconds": self.timeout_seconds, "retries": self.retries,
                "concurrency_policy": self.concurrency_policy, "webhook": self.webhook,
                "notify": list(self.notify), "kernel": self.kernel, "description": self.description}


SCHEDULE_FIELDS = frozenset({"name", "notebook", "schedule", "timezone", "resource_group", "size", "gpus",
                             "parameters", "suspend", "timeout_seconds", "retries", "concurrency_policy",
                             "webhook", "notify", "kernel", "description"})


def _unknown(req: Mapping[str, Any], allowed: frozenset[str], what: str) -> None:
    extra = sorted(set(req) - allowed)
    if extra:
        raise WorkloadError(f"unknown {what} field(s): {', '.join(extra)}")


def parse_schedule(req: Mapping[str, Any], settings: WorkspaceSettings, defaults: ScheduleDefaults) -> ScheduleSpec:
    """Check a create (or merged update) request; raises WorkloadError / PermissionError."""
    if not isinstance(req, Mapping):
        raise WorkloadError("the request body must be a JSON object")
    _unknown(req, SCHEDULE_FIELDS, "schedule")
    name = check_name(req.get("name"), "schedule", MAX_SCHEDULE_NAME)
    notebook = home_relative(req.get("notebook"), settings.home_path, "notebook")
    if not notebook.endswith(".ipynb"):
        raise WorkloadError(f"notebook {notebook!r} is not a .ipynb file")
    expr = req.get("schedule")
    if not isinstance(expr, str):
        raise WorkloadError("schedule is required, e.g. '0 6 * * *' (every day at 06:00)")
    tzname = req.get("timezone") or defaults.timezone
    try:
        cron.parse(expr)
        cron.validate_timezone(tzname if isinstance(tzname, str) else "")
    except cron.CronError as e:
        raise WorkloadError(str(e)) from None
    policy = req.get("concurrency_policy") or defaults.concurrency_policy
    if policy not in CONCURRENCY_POLICIES:
        raise WorkloadError(f"concurrency_policy must be one of {', '.join(CONCURRENCY_POLICIES)}")
    kernel = req.get("kernel") or defaults.kernel
    if not isinstance(kernel, str) or not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", kernel):
        raise WorkloadError("kernel must be a kernel name such as python3")
    desc = req.get("description") or ""
    if not isinstance(desc, str) or len(desc) > 1000:
        raise WorkloadError("description must be a string of at most 1000 characters")
    return ScheduleSpec(
        name=name, notebook=notebook, schedule=expr.strip(), timezone=tzname,
        compute=Compute.from_request(req, settings), parameters=_parameters(req.get("parameters")),
        suspend=_bool(req.get("suspend", False), "suspend"),
        timeout_seconds=check_int(req.get("timeout_seconds", defaults.timeout_seconds), "timeout_seconds",
                             60, defaults.max_timeout_seconds),
        retries=check_int(req.get("retries", 0), "retries", 0, defaults.max_retries),
        concurrency_policy=policy, webhook=_webhook(req.get("webhook")), notify=_notify(req.get("notify")),
        kernel=kernel, description=desc)


# -- pod templates --------------------------------------------------------------------------------
def _labels(settings: WorkspaceSettings, component: str, extra: Mapping[str, str]) -> dict[str, str]:
    return {**L.user_labels(settings.user, component), **extra}


def pod_spec(settings: WorkspaceSettings, container: dict[str, Any], compute: Compute,
             datasets: bool = True) -> dict[str, Any]:
    """The pod every workload of this user runs in: home (and datasets) mounted
    like the user's server, the group's nodes, no API token."""
    mounts = [{"name": "kubelab-s3", "mountPath": settings.home_path, "subPath": settings.home_subpath}]
    if datasets:
        mounts.append({"name": "kubelab-s3", "mountPath": settings.datasets_path,
                       "subPath": settings.datasets_subpath, "readOnly": True})
    env = [{"name": "HOME", "value": settings.home_path}, {"name": "JUPYTER_RUNTIME_DIR", "value": RUNTIME_DIR},
           {"name": "KUBELAB_NAMESPACE", "value": settings.namespace},
           {"name": "KUBELAB_RUN_ID", "valueFrom": {"fieldRef": {"fieldPath": f"metadata.labels['{JOB_NAME_LABEL}']"}}},
           {"name": "KUBELAB_RESOURCE_GROUP", "value": compute.group.name}]
    env += [{"name": k, "value": v} for k, v in settings.env.items()]
    c = {"imagePullPolicy": settings.image_pull_policy, "workingDir": settings.home_path,
         "resources": compute.resources(), "terminationMessagePolicy": "FallbackToLogsOnError",
         **container}
    c["env"] = env + list(container.get("env", []))
    c["volumeMounts"] = mounts + list(container.get("volumeMounts", []))
    spec: dict[str, Any] = {
        "restartPolicy": "Never", "automountServiceAccountToken": False, "enableServiceLinks": False,
        "containers": [c],
        "volumes": [{"name": "kubelab-s3", "hostPath": {"path": settings.s3_mount_host_path, "type": "Directory"}}],
    }
    sc = {k: v for k, v in (("runAsUser", settings.uid), ("runAsGroup", settings.gid)) if v is not None}
    if sc:
        spec["securityContext"] = sc
    if compute.group.node_selector:
        spec["nodeSelector"] = dict(compute.group.node_selector)
    if compute.group.tolerations:
        spec["tolerations"] = [dict(t) for t in compute.group.tolerations]
    return spec


def runner_args(settings: WorkspaceSettings, notebook: str, output_root: str, name: str, kind: str,
                kernel: str, webhook: str = "", notify: tuple[str, ...] = ()) -> list[str]:
    home = settings.home_path
    args = ["python", "-m", RUNNER_MODULE, "--notebook", f"{home}/{notebook}",
            "--output-root", f"{home}/{output_root}", "--parameters-json", f"$({PARAMETERS_ENV})",
            "--kernel", kernel, "--cwd", posixpath.dirname(f"{home}/{notebook}"), "--name", name, "--kind", kind]
    if webhook:
        args += ["--webhook", webhook, "--notify", ",".join(notify)]
    return args


def schedule_cronjob(settings: WorkspaceSettings, spec: ScheduleSpec,
                     defaults: ScheduleDefaults = ScheduleDefaults()) -> dict[str, Any]:
    labels = _labels(settings, "schedule", {SCHEDULE_LABEL: spec.name, L.RESOURCE_GROUP: spec.compute.group.name})
    run_labels = {**_labels(settings, "schedule-run", {SCHEDULE_LABEL: spec.name}),
                  L.RESOURCE_GROUP: spec.compute.group.name}
    container = {"name": "notebook", "image": settings.image,
                 "command": runner_args(settings, spec.snapshot, spec.output_root, spec.name, "schedule",
                                        spec.kernel, spec.webhook, spec.notify),
                 "env": [{"name": PARAMETERS_ENV, "value": json.dumps(spec.parameters, sort_keys=True)}]}
    return {
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": spec.name, "namespace": settings.namespace, "labels": labels,
                     "annotations": {SPEC_ANNOTATION: json.dumps(spec.editable(), sort_keys=True)}},
        "spec": {
            "schedule": spec.schedule, "timeZone": spec.timezone, "suspend": spec.suspend,
            "concurrencyPolicy": spec.concurrency_policy,
            "startingDeadlineSeconds": defaults.starting_deadline_seconds,
            "successfulJobsHistoryLimit": defaults.successful_history,
            "failedJobsHistoryLimit": defaults.failed_history,
            "jobTemplate": {
                "metadata": {"labels": run_labels},
                "spec": {"backoffLimit": spec.retries, "activeDeadlineSeconds": spec.timeout_seconds,
                         "template": {"metadata": {"labels": run_labels},
                                      "spec": pod_spec(settings, container, spec.compute)}},
            },
        },
    }


def run_job_from_cronjob(cronjob: dict[str, Any], run_name: str, trigger: str = "manual",
                         parameters: Mapping[str, Any] | None = None,
                         extra_annotations: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A Job from the CronJob's template, owned by it (like ``kubectl create job --from``).

    ``parameters`` override the schedule's (merged over them) for this run only.
    """
    overrides = _parameters(parameters)
    tmpl = json.loads(json.dumps(cronjob["spec"]["jobTemplate"]))
    meta = tmpl.get("metadata", {})
    annotations = {**meta.get("annotations", {}), "cronjob.kubernetes.io/instantiate": "manual",
                   TRIGGER_ANNOTATION: trigger, **(extra_annotations or {})}
    if overrides:
        for c in tmpl["spec"]["template"]["spec"]["containers"]:
            for e in c.get("env", []):
                if e.get("name") == PARAMETERS_ENV:
                    merged = {**json.loads(e.get("value") or "{}"), **overrides}
                    e["value"] = json.dumps(merged, sort_keys=True)
    m = cronjob["metadata"]
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": run_name, "namespace": m["namespace"], "labels": dict(meta.get("labels", {})),
                         "annotations": annotations,
                         "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": m["name"],
                                              "uid": m["uid"], "controller": True,
                                              "blockOwnerDeletion": True}]},
            "spec": tmpl["spec"]}


def manual_run_name(schedule: str, now: datetime) -> str:
    """``<schedule>-<unix seconds>``: unique per second, <= 63 characters."""
    return f"{schedule}-{int(now.timestamp())}"


def triggered_run_name(schedule: str, idempotency_key: str) -> str:
    """``<schedule>-<10 hex>``, the same for the same key: a repeated key names the
    same Job, so the apiserver refuses a second one (race-safe), <= 63 characters."""
    digest = hashlib.sha256(f"{schedule}\0{idempotency_key}".encode("utf-8")).hexdigest()
    return f"{schedule}-{digest[:10]}"


def parameters_digest(parameters: Mapping[str, Any] | None) -> str:
    return hashlib.sha256(json.dumps(parameters or {}, sort_keys=True).encode("utf-8")).hexdigest()


def run_parameters(job: dict[str, Any]) -> dict[str, Any]:
    """The parameters a run's Job passes to the notebook (the schedule's, with overrides merged)."""
    for c in job.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
        for e in c.get("env", []):
            if e.get("name") == PARAMETERS_ENV:
                try:
                    return json.loads(e.get("value") or "{}")
                except ValueError:
                    return {}
    return {}


def cancel_patch(by: str = "") -> dict[str, Any]:
    """Merge patch stopping a Job's pods while keeping its record (status Cancelled)."""
    annotations = {CANCELLED_ANNOTATION: "true"}
    if by:
        annotations[CANCELLED_BY_ANNOTATION] = by
    return {"metadata": {"annotations": annotations}, "spec": {"suspend": True}}


# -- training jobs --------------------------------------------------------------------------------
TRAINING_FIELDS = frozenset({"name", "script", "notebook", "code", "command", "args", "image", "env",
                             "resource_group", "size", "gpus", "workers", "timeout_seconds", "retries",
                             "datasets", "output_model", "parameters", "queue", "kernel"})


@dataclass(frozen=True)
class TrainingDefaults:
    timeout_seconds: int = 6 * 3600
    max_timeout_seconds: int = 7 * 86400
    max_retries: int = 5
    max_workers: int = 32
    master_port: int = MASTER_PORT
    kernel: str = "python3"


@dataclass(frozen=True)
class TrainingSpec:
    name: str
    source: str              # "script" | "notebook" | "code" | "command"
    path: str                # script/notebook relative to home; for code, where the service writes it
    compute: Compute
    image: str
    args: tuple[str, ...] = ()
    command: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    workers: int = 1
    timeout_seconds: int = 6 * 3600
    retries: int = 0
    datasets: bool = True
    output_model: str = ""   # relative to home
    parameters: dict[str, Any] = field(default_factory=dict)
    queue: str = ""
    kernel: str = "python3"

    @property
    def job_dir(self) -> str:
        return f"{STATE_DIR}/jobs/{self.name}"

    def record(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "path": self.path, **self.compute.to_dict(),
                "image": self.image, "args": list(self.args), "command": list(self.command), "env": self.env,
                "workers": self.workers, "timeout_seconds": self.timeout_seconds, "retries": self.retries,
                "datasets": self.datasets, "output_model": self.output_model, "parameters": self.parameters,
                "queue": self.queue, "kernel": self.kernel}


def parse_training(req: Mapping[str, Any], settings: WorkspaceSettings, defaults: TrainingDefaults) -> TrainingSpec:
    if not isinstance(req, Mapping):
        raise WorkloadError("the request body must be a JSON object")
    _unknown(req, TRAINING_FIELDS, "job")
    name = check_name(req.get("name"), "job", MAX_JOB_NAME)
    sources = [k for k in ("script", "notebook", "code", "command") if req.get(k)]
    if len(sources) != 1:
        raise WorkloadError("give exactly one of script, notebook, code or command")
    source = sources[0]
    command: tuple[str, ...] = ()
    if source == "code":
        if not isinstance(req["code"], str) or len(req["code"]) > 1_000_000:
            raise WorkloadError("code must be a string of at most 1 MB")
        path = f"{STATE_DIR}/jobs/{name}/main.py"
    elif source == "command":
        command = tuple(_str_list(req["command"], "command"))
        path = ""
    else:
        path = home_relative(req[source], settings.home_path, source)
        if source == "notebook" and not path.endswith(".ipynb"):
            raise WorkloadError(f"notebook {path!r} is not a .ipynb file")
    image = req.get("image") or settings.image
    if not isinstance(image, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._/:@+-]{0,254}", image):
        raise WorkloadError("image must be an image reference such as python:3.12")
    output_model = req.get("output_model") or ""
    if output_model:
        output_model = home_relative(output_model, settings.home_path, "output_model")
    queue = req.get("queue") or ""
    if queue:
        check_name(queue, "queue", 63)
    kernel = req.get("kernel") or defaults.kernel
    if not isinstance(kernel, str) or not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", kernel):
        raise WorkloadError("kernel must be a kernel name such as python3")
    return TrainingSpec(
        name=name, source=source, path=path, compute=Compute.from_request(req, settings), image=image,
        args=tuple(_str_list(req.get("args"), "args")), command=command, env=_str_map(req.get("env"), "env"),
        workers=check_int(req.get("workers", 1), "workers", 1, defaults.max_workers),
        timeout_seconds=check_int(req.get("timeout_seconds", defaults.timeout_seconds), "timeout_seconds", 10,
                             defaults.max_timeout_seconds),
        retries=check_int(req.get("retries", 0), "retries", 0, defaults.max_retries),
        datasets=_bool(req.get("datasets", True), "datasets"), output_model=output_model,
        parameters=_parameters(req.get("parameters")), queue=queue, kernel=kernel)


def _training_command(settings: WorkspaceSettings, spec: TrainingSpec) -> list[str]:
    home = settings.home_path
    if spec.source == "command":
        return list(spec.command) + list(spec.args)
    if spec.source == "notebook":
        return runner_args(settings, spec.path, f"{spec.job_dir}/runs", spec.name, "job", spec.kernel)
    return ["python", f"{home}/{spec.path}", *spec.args]


def distributed_env(spec: TrainingSpec, namespace: str, master_port: int = MASTER_PORT) -> list[dict[str, Any]]:
    """torchrun-compatible rendezvous env for worker ``RANK`` of an Indexed Job."""
    index = {"valueFrom": {"fieldRef": {"fieldPath": f"metadata.annotations['{COMPLETION_INDEX_ANNOTATION}']"}}}
    return [{"name": "MASTER_ADDR", "value": f"{spec.name}-0.{spec.name}.{namespace}.svc"},
            {"name": "MASTER_PORT", "value": str(master_port)},
            {"name": "WORLD_SIZE", "value": str(spec.workers)},
            {"name": "RANK", **index}, {"name": "NODE_RANK", **index},
            {"name": "LOCAL_RANK", "value": "0"}, {"name": "LOCAL_WORLD_SIZE", "value": "1"},
            {"name": "KUBELAB_WORKERS", "value": str(spec.workers)}]


def training_job(settings: WorkspaceSettings, spec: TrainingSpec, kueue: bool = False,
                 master_port: int = MASTER_PORT) -> dict[str, Any]:
    """The Job (Indexed with a subdomain for more than one worker)."""
    labels = _labels(settings, "training-job", {JOB_LABEL: spec.name, L.RESOURCE_GROUP: spec.compute.group.name})
    if kueue and spec.queue:
        labels["kueue.x-k8s.io/queue-name"] = spec.queue
    env = [{"name": k, "value": v} for k, v in spec.env.items()]
    env.append({"name": PARAMETERS_ENV, "value": json.dumps(spec.parameters, sort_keys=True)})
    if spec.output_model:
        env.append({"name": "KUBELAB_OUTPUT_MODEL", "value": f"{settings.home_path}/{spec.output_model}"})
    env += distributed_env(spec, settings.namespace, master_port)
    container = {"name": "worker", "image": spec.image, "command": _training_command(settings, spec), "env": env}
    if spec.workers > 1:
        container["ports"] = [{"name": "rendezvous", "containerPort": master_port}]
    pod = pod_spec(settings, container, spec.compute, spec.datasets)
    job_spec: dict[str, Any] = {"backoffLimit": spec.retries, "activeDeadlineSeconds": spec.timeout_seconds,
                                "completions": spec.workers, "parallelism": spec.workers,
                                "completionMode": "Indexed",
                                "template": {"metadata": {"labels": dict(labels)}, "spec": pod}}
    if spec.workers > 1:
        pod["subdomain"] = spec.name
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": spec.name, "namespace": settings.namespace, "labels": labels,
                         "annotations": {SPEC_ANNOTATION: json.dumps(spec.record(), sort_keys=True)}},
            "spec": job_spec}


def rendezvous_service(settings: WorkspaceSettings, spec: TrainingSpec, owner: Mapping[str, Any],
                       master_port: int = MASTER_PORT) -> dict[str, Any]:
    """Headless Service giving workers stable names (<job>-<index>.<job>), owned by the Job."""
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": spec.name, "namespace": settings.namespace,
                         "labels": _labels(settings, "training-job", {JOB_LABEL: spec.name}),
                         "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": owner["name"],
                                              "uid": owner["uid"], "controller": True,
                                              "blockOwnerDeletion": True}]},
            "spec": {"clusterIP": "None", "publishNotReadyAddresses": True,
                     "selector": {JOB_NAME_LABEL: spec.name},
                     "ports": [{"name": "rendezvous", "port": master_port, "targetPort": master_port}]}}


def pytorchjob(settings: WorkspaceSettings, spec: TrainingSpec, kueue: bool = False) -> dict[str, Any]:
    """A Kubeflow PyTorchJob (kubeflow.org/v1) for clusters running the training operator.

    The operator sets MASTER_ADDR/PORT, WORLD_SIZE and RANK itself.
    """
    job = training_job(settings, spec, kueue)
    pod = job["spec"]["template"]
    c = pod["spec"]["containers"][0]
    c["name"] = "pytorch"
    c["env"] = [e for e in c["env"] if e["name"] not in {"MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK",
                                                         "NODE_RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE"}]
    replicas = {"Master": {"replicas": 1, "restartPolicy": "Never", "template": pod}}
    if spec.workers > 1:
        replicas["Worker"] = {"replicas": spec.workers - 1, "restartPolicy": "Never",
                              "template": json.loads(json.dumps(pod))}
    return {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": job["metadata"],
            "spec": {"runPolicy": {"backoffLimit": spec.retries, "activeDeadlineSeconds": spec.timeout_seconds},
                     "pytorchReplicaSpecs": replicas}}


# -- views: cluster objects -> what the API returns ------------------------------------------------
def _ts(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


def _iso(dt: datetime | None) -> str | None:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ") if dt else None


def pending_reason(pods: list[dict[str, Any]], events: list[dict[str, Any]] = ()) -> str | None:
    """Why work is not running yet, in the scheduler's/controller's own words."""
    for ev in events:
        if ev.get("reason") in ("FailedCreate", "FailedScheduling") and ev.get("type") == "Warning":
            return f"{ev['reason']}: {ev.get('message', '').strip()}"
    for p in pods:
        for cond in p.get("status", {}).get("conditions", []) or []:
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
                return f"{cond.get('reason', 'Unschedulable')}: {cond.get('message', '').strip()}"
        for cs in (p.get("status", {}).get("initContainerStatuses") or []) + \
                  (p.get("status", {}).get("containerStatuses") or []):
            waiting = (cs.get("state") or {}).get("waiting")
            if waiting and waiting.get("reason") not in (None, "ContainerCreating", "PodInitializing"):
                return f"{waiting['reason']}: {waiting.get('message', '').strip()}"
    return None


def pod_started(pod: dict[str, Any]) -> bool:
    """Has any container of the pod run (so it has a log)?"""
    return any((cs.get("state") or {}).get("running") or (cs.get("state") or {}).get("terminated")
               for cs in pod.get("status", {}).get("containerStatuses") or [])


def _failure_message(pods: list[dict[str, Any]]) -> str | None:
    for p in pods:
        for cs in p.get("status", {}).get("containerStatuses") or []:
            term = (cs.get("state") or {}).get("terminated") or {}
            if term and term.get("exitCode", 0) != 0:
                msg = (term.get("message") or "").strip()
                return msg.splitlines()[-1] if msg else f"{cs['name']} exited with code {term.get('exitCode')}"
    return None


def job_status(job: dict[str, Any], pods: list[dict[str, Any]] = (),
               events: list[dict[str, Any]] = ()) -> dict[str, Any]:
    """Status, times and the reason of a Job (one run or one training job)."""
    st = job.get("status", {})
    conds = {c["type"]: c for c in st.get("conditions", []) or [] if c.get("status") == "True"}
    started = _ts(st.get("startTime"))
    finished = _ts(st.get("completionTime"))
    reason = message = None
    if conds.keys() & {"Complete", "SuccessCriteriaMet", "Succeeded"}:  # Succeeded: PyTorchJob
        status = "Succeeded"
    elif "Failed" in conds or "FailureTarget" in conds:
        c = conds.get("Failed") or conds["FailureTarget"]
        status, reason = "Failed", c.get("reason")
        message = _failure_message(pods) or c.get("message")
        finished = finished or _ts(c.get("lastTransitionTime"))
    elif job.get("metadata", {}).get("deletionTimestamp"):
        status = "Cancelling"
    elif job.get("spec", {}).get("suspend") or job.get("spec", {}).get("runPolicy", {}).get("suspend"):
        status, reason = "Suspended", "Suspended"
    elif any(p.get("status", {}).get("phase") == "Running" for p in pods):
        status = "Running"
    else:
        status = "Pending"
        pr = pending_reason(list(pods), list(events))
        if pr:
            reason, message = pr.split(":", 1)[0], pr
    duration = (finished - started).total_seconds() if started and finished else None
    return {"status": status, "started": _iso(started), "finished": _iso(finished),
            "duration_seconds": duration, "reason": reason, "message": message,
            "active": st.get("active", 0) or 0, "succeeded": st.get("succeeded", 0) or 0,
            "failed": st.get("failed", 0) or 0}


def pod_view(pod: dict[str, Any]) -> dict[str, Any]:
    st = pod.get("status", {})
    ann = pod["metadata"].get("annotations", {})
    return {"name": pod["metadata"]["name"], "phase": st.get("phase"), "node": pod.get("spec", {}).get("nodeName"),
            "worker": int(ann[COMPLETION_INDEX_ANNOTATION]) if COMPLETION_INDEX_ANNOTATION in ann else None,
            "pending_reason": pending_reason([pod]) if st.get("phase") == "Pending" else None}


def spec_of(obj: dict[str, Any]) -> dict[str, Any]:
    try:
        return json.loads(obj["metadata"].get("annotations", {}).get(SPEC_ANNOTATION) or "{}")
    except ValueError:
        return {}


def schedule_view(cronjob: dict[str, Any], now: datetime | None = None, n_next: int = 5) -> dict[str, Any]:
    spec, st = cronjob["spec"], cronjob.get("status", {})
    stored = spec_of(cronjob)
    view = {**stored, "name": cronjob["metadata"]["name"], "schedule": spec["schedule"],
            "timezone": spec.get("timeZone") or "UTC", "suspend": bool(spec.get("suspend")),
            "concurrency_policy": spec.get("concurrencyPolicy", "Allow"),
            "timeout_seconds": spec["jobTemplate"]["spec"].get("activeDeadlineSeconds"),
            "retries": spec["jobTemplate"]["spec"].get("backoffLimit", 6),
            "created": cronjob["metadata"].get("creationTimestamp"),
            "last_schedule": st.get("lastScheduleTime"), "last_success": st.get("lastSuccessfulTime"),
            "active_runs": [a["name"] for a in st.get("active", []) or []]}
    try:
        view["next_runs"] = [] if view["suspend"] else [
            _iso(t.astimezone(timezone.utc)) for t in cron.next_runs(spec["schedule"], view["timezone"], n_next, now)]
    except cron.CronError:
        view["next_runs"] = []
    return view


def run_view(job: dict[str, Any], pods: list[dict[str, Any]] = (), events: list[dict[str, Any]] = (),
             record: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One run of a schedule; ``record`` is the runner's run.json when found."""
    meta = job["metadata"]
    ann = meta.get("annotations", {})
    view = {"id": meta["name"], "schedule": meta.get("labels", {}).get(SCHEDULE_LABEL),
            "trigger": ann.get(TRIGGER_ANNOTATION) or ("schedule" if "batch.kubernetes.io/cronjob-scheduled-timestamp"
                                                      in ann else "manual"),
            "created": meta.get("creationTimestamp"), **job_status(job, list(pods), list(events)),
            "pods": [pod_view(p) for p in pods], "output_notebook": None, "output_html": None, "error": None}
    if record:
        view["output_notebook"] = record.get("output_notebook")
        view["output_html"] = record.get("output_html")
        view["parameters"] = record.get("parameters")
        err = record.get("error")
        if err:
            view["error"] = err
            if view["status"] == "Failed":
                cell = f"cell {err['cell']} failed: " if err.get("cell") is not None else ""
                view["message"] = f"{cell}{err.get('ename')}: {err.get('evalue')}"
    return view


def training_view(job: dict[str, Any], pods: list[dict[str, Any]] = (),
                  events: list[dict[str, Any]] = ()) -> dict[str, Any]:
    meta = job["metadata"]
    rec = spec_of(job)
    return {**rec, "name": meta["name"], "kind": job.get("kind", "Job"), "created": meta.get("creationTimestamp"),
            **job_status(job, list(pods), list(events)), "pods": [pod_view(p) for p in pods],
            "model_artifact": (meta.get("annotations", {}).get(f"{L.GROUP}/model-artifact")
                               or (rec.get("output_model") or None))}
