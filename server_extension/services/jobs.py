"""Training jobs: a script, a notebook or a cell's code as a Kubernetes Job.

More than one worker is an Indexed Job with a headless Service, so each
worker has a stable name and torchrun's env (MASTER_ADDR, RANK, ...). On a
cluster running Kubeflow's training operator, a PyTorchJob is created
instead; with Kueue installed, the Job carries the queue label.
"""
from __future__ import annotations

from typing import Any, Iterator, Mapping

from traitlets import Enum, Instance, Int, Unicode
from traitlets.config import LoggingConfigurable

from kubelab.core import workloads as W

from ..kube import KubeError
from .errors import BadRequest, Conflict, NotFound, ServiceError
from .workspace import Workspace, event_view

JOB = ("batch/v1", "Job")
PYTORCHJOB = ("kubeflow.org/v1", "PyTorchJob")
CANCELLED = W.CANCELLED_ANNOTATION


class JobService(LoggingConfigurable):
    """Submit, watch, cancel and delete training jobs."""

    workspace = Instance(Workspace)

    default_timeout_seconds = Int(
        6 * 3600,
        config=True,
        help="""
        Timeout of a job that gives none (the Job's activeDeadlineSeconds).

        Example::

            c.JobService.default_timeout_seconds = 24 * 3600
        """,
    )
    max_timeout_seconds = Int(
        7 * 86400,
        config=True,
        help="""
        The longest timeout a user may ask for.

        Example::

            c.JobService.max_timeout_seconds = 2 * 86400
        """,
    )
    max_retries = Int(
        5,
        config=True,
        help="""
        The most retries (Job backoffLimit) a user may ask for; the default is 0.

        Example::

            c.JobService.max_retries = 3
        """,
    )
    max_workers = Int(
        32,
        config=True,
        help="""
        The most workers of one distributed job.

        Example::

            c.JobService.max_workers = 8
        """,
    )
    master_port = Int(
        W.MASTER_PORT,
        config=True,
        help="""
        Rendezvous port of distributed jobs (MASTER_PORT).

        Example::

            c.JobService.master_port = 23456
        """,
    )
    training_operator = Enum(
        ["auto", "never", "always"], "auto",
        config=True,
        help="""
        Create distributed jobs as Kubeflow PyTorchJobs: ``auto`` when the
        kubeflow.org/v1 PyTorchJob API is served, ``never`` (Indexed Jobs
        only) or ``always``.

        Example::

            c.JobService.training_operator = "never"
        """,
    )
    default_queue = Unicode(
        "",
        config=True,
        help="""
        Kueue LocalQueue for jobs that name none, when Kueue is installed
        (empty: no queue label unless the user gives one).

        Example::

            c.JobService.default_queue = "user-queue"
        """,
    )
    default_kernel = Unicode(
        "python3",
        config=True,
        help="""
        Kernel that runs notebook jobs.

        Example::

            c.JobService.default_kernel = "python3"
        """,
    )

    @property
    def ws(self) -> Workspace:
        return self.workspace

    @property
    def defaults(self) -> W.TrainingDefaults:
        return W.TrainingDefaults(timeout_seconds=self.default_timeout_seconds,
                                  max_timeout_seconds=self.max_timeout_seconds, max_retries=self.max_retries,
                                  max_workers=self.max_workers, master_port=self.master_port,
                                  kernel=self.default_kernel)

    def _use_operator(self, spec: W.TrainingSpec) -> bool:
        if spec.workers < 2 or self.training_operator == "never":
            return False
        return self.training_operator == "always" or self.ws.kube.has_resource("kubeflow.org/v1", "pytorchjobs")

    def _kueue(self) -> bool:
        return self.ws.kube.has_resource("kueue.x-k8s.io/v1beta1", "localqueues")

    # -- submit -----------------------------------------------------------------------------------
    def submit(self, req: Mapping[str, Any]) -> dict:
        if isinstance(req, Mapping) and self.default_queue and not req.get("queue"):
            req = {**req, "queue": self.default_queue}
        try:
            spec = W.parse_training(req, self.ws.settings, self.defaults)
        except W.WorkloadError as e:
            raise BadRequest(str(e)) from None
        except PermissionError as e:
            raise ServiceError(str(e), 403) from None
        if spec.source in ("script", "notebook"):
            self.ws.require_file(spec.path, spec.source)
        if self._exists(spec.name):
            raise Conflict(f"a job named {spec.name!r} already exists; delete it or choose another name")
        if spec.source == "code":
            self.ws.write_in_home(spec.path, req["code"])
        kueue = bool(spec.queue) and self._kueue()
        try:
            if self._use_operator(spec):
                created = self.ws.call(self.ws.kube.create, W.pytorchjob(self.ws.settings, spec, kueue),
                                       what=f"job {spec.name}")
                return W.training_view(created)
            created = self.ws.call(self.ws.kube.create,
                                   W.training_job(self.ws.settings, spec, kueue, self.master_port),
                                   what=f"job {spec.name}")
        except ServiceError:
            if spec.source == "code":
                self.ws.remove_in_home(spec.job_dir)
            raise
        if spec.workers > 1:
            svc = W.rendezvous_service(self.ws.settings, spec, created["metadata"], self.master_port)
            try:
                self.ws.call(self.ws.kube.create, svc, what=f"job {spec.name}")
            except ServiceError:  # nothing half-created: the job goes too
                try:
                    self.ws.kube.delete(*JOB, spec.name)
                except KubeError as e:
                    self.log.warning("could not remove job %s after a failed submit: %s", spec.name, e.message)
                raise
        return W.training_view(created)

    def _exists(self, name: str) -> bool:
        if self.ws.call(self.ws.kube.get, *JOB, name) is not None:
            return True
        return self.ws.kube.has_resource("kubeflow.org/v1", "pytorchjobs") and \
            self.ws.call(self.ws.kube.get, *PYTORCHJOB, name) is not None

    # -- read -------------------------------------------------------------------------------------
    def _get(self, name: str) -> dict:
        try:
            return self.ws.require(*JOB, name, (W.JOB_LABEL, name), "job")
        except NotFound:
            if not self.ws.kube.has_resource("kubeflow.org/v1", "pytorchjobs"):
                raise
            return self.ws.require(*PYTORCHJOB, name, (W.JOB_LABEL, name), "job")

    def _pods(self, name: str) -> list[dict]:
        pods = self.ws.pods(f"{W.JOB_LABEL}={name}")
        return sorted(pods, key=lambda p: (_worker(p), p["metadata"].get("creationTimestamp") or ""))

    def list(self) -> list[dict]:
        jobs = self.ws.call(self.ws.kube.items, *JOB, label_selector=W.JOB_LABEL)
        if self.ws.kube.has_resource("kubeflow.org/v1", "pytorchjobs"):
            jobs += self.ws.call(self.ws.kube.items, *PYTORCHJOB, label_selector=W.JOB_LABEL)
        pods = self.ws.pods(W.JOB_LABEL)
        views = []
        for job in jobs:
            name = job["metadata"]["name"]
            views.append(self._view(job, [p for p in pods if p["metadata"]["labels"].get(W.JOB_LABEL) == name]))
        views.sort(key=lambda v: v.get("created") or "", reverse=True)
        return views

    def _view(self, job: dict, pods: list[dict], events: list[dict] = ()) -> dict:
        view = W.training_view(job, pods, events)
        if job["metadata"].get("annotations", {}).get(CANCELLED) and view["status"] not in ("Succeeded", "Failed"):
            view["status"], view["reason"] = "Cancelled", "Cancelled"
            view["message"] = "cancelled by its user"
        return view

    def get(self, name: str) -> dict:
        job = self._get(name)
        pods = self._pods(name)
        events = self.ws.events_for({name, *(p["metadata"]["name"] for p in pods)},
                                    since=job["metadata"].get("creationTimestamp"))
        view = self._view(job, pods, events)
        view["events"] = [event_view(e) for e in events]
        return view

    def events(self, name: str) -> list[dict]:
        return self.get(name)["events"]

    def why_pending(self, name: str) -> dict:
        """Why the job (or one of its workers) is not running, in the cluster's own words."""
        view = self.get(name)
        reasons = [f"worker {p['worker'] if p['worker'] is not None else p['name']}: {p['pending_reason']}"
                   for p in view["pods"] if p.get("pending_reason")]
        if view["status"] == "Pending" and view.get("message") and not reasons:
            reasons.append(view["message"])
        return {"name": name, "status": view["status"], "pending": view["status"] == "Pending" or bool(reasons),
                "reasons": reasons}

    def logs(self, name: str, worker: int = 0, follow: bool = False,
             tail_lines: int | None = None) -> Iterator[bytes]:
        self._get(name)
        pods = [p for p in self._pods(name) if _worker(p) == worker]
        if not pods:
            raise Conflict(f"job {name!r} has no pod for worker {worker} (yet, or any more): see its events")
        pod = pods[-1]
        if not W.pod_started(pod):
            raise Conflict(f"worker {worker} of job {name!r} has not started: "
                           + (W.pending_reason([pod]) or "its pod is pending"))
        return self.ws.call(self.ws.kube.logs, pod["metadata"]["name"], follow=follow, tail_lines=tail_lines)

    # -- stop -------------------------------------------------------------------------------------
    def cancel(self, name: str) -> dict:
        """Stop the job's pods and keep its record (status Cancelled)."""
        job = self._get(name)
        if job["kind"] == "Job":
            self.ws.call(self.ws.kube.patch, *JOB, name, W.cancel_patch())
        else:  # the training operator has no suspend: delete the pods' owner
            self.ws.call(self.ws.kube.delete, *PYTORCHJOB, name)
        return self.get(name) if job["kind"] == "Job" else {"name": name, "status": "Cancelled"}

    def delete(self, name: str) -> None:
        job = self._get(name)
        api = JOB if job["kind"] == "Job" else PYTORCHJOB
        self.ws.call(self.ws.kube.delete, *api, name, propagation="Background")
        self.ws.remove_in_home(f"{W.STATE_DIR}/jobs/{name}")


def _worker(pod: dict) -> int:
    try:
        return int(pod["metadata"].get("annotations", {}).get(W.COMPLETION_INDEX_ANNOTATION, 0))
    except ValueError:
        return 0
