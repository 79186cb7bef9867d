"""Model serving: deploy a registered model version (or alias) as an inference
service in the user's namespace, explain its state, switch versions with a
rolling update, roll back, scale, delete, and predict through it.
"""
from __future__ import annotations

from typing import Any, Iterator, Mapping

import requests
from traitlets import Enum, Instance, Int, Unicode
from traitlets.config import LoggingConfigurable

from kubelab.core import models as M
from kubelab.core import workloads as W
from kubelab.core.workloads import WorkloadError

from .errors import BadRequest, Conflict, NotFound, ServiceError, Unavailable
from .models import ModelService
from .workspace import Workspace, event_view

DEPLOYMENT = ("apps/v1", "Deployment")
SERVICE = ("v1", "Service")
ISVC = ("serving.kserve.io/v1beta1", "InferenceService")
FIELDS = frozenset({"name", "model", "version", "resource_group", "size", "gpus", "replicas"})
PREVIOUS = f"{M.L.GROUP}/previous-version"


class ServingService(LoggingConfigurable):
    """Deploy, inspect, update, scale and delete inference services."""

    workspace = Instance(Workspace)
    models = Instance(ModelService)

    image = Unicode(
        "",
        config=True,
        help="""
        Image of the model servers (it runs ``python -m
        kubelab.server_extension.serving``). Empty (the default) uses the
        user's server image, which has the serving runtime.

        Example::

            c.ServingService.image = "ghcr.io/example/kubelab-serving:0.1.0"
        """,
    )
    kserve = Enum(
        ["auto", "never", "always"], "auto",
        config=True,
        help="""
        Deploy as a KServe InferenceService: ``auto`` when the cluster serves
        serving.kserve.io/v1beta1, ``never`` (a Deployment and Service) or ``always``.

        Example::

            c.ServingService.kserve = "never"
        """,
    )
    max_replicas = Int(
        10,
        config=True,
        help="""
        The most replicas one inference service may ask for.

        Example::

            c.ServingService.max_replicas = 4
        """,
    )
    predict_timeout = Int(
        60,
        config=True,
        help="""
        Seconds a prediction through an inference service may take.

        Example::

            c.ServingService.predict_timeout = 10
        """,
    )

    @property
    def ws(self) -> Workspace:
        return self.workspace

    def _use_kserve(self) -> bool:
        return self.kserve == "always" or (self.kserve == "auto" and
                                           self.ws.kube.has_resource("serving.kserve.io/v1beta1",
                                                                     "inferenceservices"))

    # -- deploy -----------------------------------------------------------------------------------
    def _spec(self, req: Mapping[str, Any], current: Mapping[str, Any] | None = None) -> M.ServingSpec:
        if not isinstance(req, Mapping):
            raise BadRequest("the request body must be a JSON object")
        extra = sorted(set(req) - FIELDS)
        if extra:
            raise BadRequest(f"unknown service field(s): {', '.join(extra)}")
        merged = {**(current or {}), **req}
        try:
            name = M.check_service_name(merged.get("name"))
            model_name = M.check_model_name(merged.get("model"))
            compute = W.Compute.from_request(merged, self.ws.settings)
            replicas = W.check_int(merged.get("replicas", 1), "replicas", 0, self.max_replicas)
        except WorkloadError as e:
            raise BadRequest(str(e)) from None
        except PermissionError as e:
            raise ServiceError(str(e), 403) from None
        ref = merged.get("version") if merged.get("version") not in (None, "") else "latest"
        model = self.models.get(model_name)
        if ref == "latest":
            if not model["versions"]:
                raise BadRequest(f"model {model_name!r} has no versions")
            version = model["versions"][-1]
        else:
            version = self.models.version(model_name, ref)
        if version["validation"].get("status") != "valid":
            raise BadRequest(f"version {version['version']} of {model_name!r} did not pass validation: "
                             f"{version['validation'].get('reason', 'no verdict')}")
        return M.ServingSpec(name=name, model=model_name, version=version["version"], format=version["format"],
                             artifact_uri=version["artifact"]["uri"], sha256=version["artifact"].get("sha256") or "",
                             compute=compute, replicas=replicas,
                             alias=str(ref) if not str(ref).lstrip("v").isdigit() else "")

    def _objects(self, spec: M.ServingSpec) -> list[dict]:
        if self._use_kserve():
            return [M.inference_service(self.ws.settings, spec)]
        try:
            return M.serving_objects(self.ws.settings, spec, self.image or self.ws.settings.image)
        except WorkloadError as e:  # a version record that points outside the user's models
            raise BadRequest(str(e)) from None

    def deploy(self, req: Mapping[str, Any]) -> dict:
        spec = self._spec(req)
        if self._find(spec.name) is not None:
            raise Conflict(f"an inference service named {spec.name!r} already exists; update or delete it")
        created = []
        try:
            for obj in self._objects(spec):
                created.append(self.ws.call(self.ws.kube.create, obj, what=f"service {spec.name}"))
        except ServiceError:
            for obj in created:  # nothing half-created
                self.ws.kube.delete(obj["apiVersion"], obj["kind"], obj["metadata"]["name"])
            raise
        return self.status(spec.name)

    def update(self, name: str, changes: Mapping[str, Any]) -> dict:
        """Switch version/alias, scale or move: a rolling update with no failed requests."""
        obj = self._require(name)
        rec = M.serving_record(obj)
        if "name" in (changes or {}) and changes["name"] != name:
            raise BadRequest("a service cannot be renamed")
        current = {"name": name, "model": rec.get("model"), "version": rec.get("alias") or rec.get("version"),
                   "resource_group": rec.get("resource_group"), "size": rec.get("size"), "gpus": rec.get("gpus"),
                   "replicas": rec.get("replicas", 1)}
        spec = self._spec(changes, current)
        for new in self._objects(spec):
            if new["kind"] in ("Deployment", "InferenceService") and rec.get("version") != spec.version:
                new["metadata"]["annotations"][PREVIOUS] = str(rec.get("version"))
            elif new["kind"] in ("Deployment", "InferenceService"):
                prev = obj["metadata"].get("annotations", {}).get(PREVIOUS)
                if prev:
                    new["metadata"]["annotations"][PREVIOUS] = prev
            self.ws.call(self.ws.kube.apply, new, what=f"service {name}")
        return self.status(name)

    def rollback(self, name: str) -> dict:
        obj = self._require(name)
        prev = obj["metadata"].get("annotations", {}).get(PREVIOUS)
        if not prev:
            raise Conflict(f"service {name!r} has no previous version to roll back to")
        return self.update(name, {"version": int(prev)})

    def scale(self, name: str, replicas: Any) -> dict:
        return self.update(name, {"replicas": replicas})

    def delete(self, name: str) -> None:
        obj = self._require(name)
        self.ws.call(self.ws.kube.delete, obj["apiVersion"], obj["kind"], name)
        if obj["kind"] == "Deployment":
            self.ws.call(self.ws.kube.delete, *SERVICE, name)

    # -- read -------------------------------------------------------------------------------------
    def _find(self, name: str) -> dict | None:
        if not M.is_valid_name(name):
            return None
        for api in (DEPLOYMENT, ISVC):
            if api is ISVC and not self.ws.kube.has_resource("serving.kserve.io/v1beta1", "inferenceservices"):
                continue
            obj = self.ws.call(self.ws.kube.get, *api, name)
            if obj is not None and obj["metadata"].get("labels", {}).get(M.SERVICE_LABEL) == name:
                return obj
        return None

    def _require(self, name: str) -> dict:
        obj = self._find(name)
        if obj is None:
            raise NotFound(f"inference service {name!r} not found")
        return obj

    def list(self) -> list[dict]:
        objs = self.ws.call(self.ws.kube.items, *DEPLOYMENT, label_selector=M.SERVICE_LABEL)
        if self.ws.kube.has_resource("serving.kserve.io/v1beta1", "inferenceservices"):
            objs += self.ws.call(self.ws.kube.items, *ISVC, label_selector=M.SERVICE_LABEL)
        return [self._summary(o) for o in sorted(objs, key=lambda o: o["metadata"]["name"])]

    def served_by(self, model: str) -> list[dict]:
        """Which services run which versions of ``model``."""
        return [s for s in self.list() if s["model"] == model]

    def model(self, name: str) -> dict:
        """A model with its versions, and which services serve which of them."""
        view = self.models.get(name)
        services = self.served_by(name)
        view["served_by"] = [{"service": s["name"], "version": s["version"], "alias": s["alias"]} for s in services]
        for v in view["versions"]:
            v["served_by"] = [s["name"] for s in services if s["version"] == v["version"]]
        return view

    def delete_model(self, name: str) -> None:
        self.models.delete(name, [s["name"] for s in self.served_by(name)])

    def _summary(self, obj: dict) -> dict:
        rec = M.serving_record(obj)
        st = obj.get("status", {})
        name = obj["metadata"]["name"]
        ready = (st.get("readyReplicas") or 0) if obj["kind"] == "Deployment" else \
            int(any(c.get("type") == "Ready" and c.get("status") == "True" for c in st.get("conditions", [])))
        return {"name": name, "kind": obj["kind"], "model": rec.get("model"), "version": rec.get("version"),
                "alias": rec.get("alias") or None, "format": rec.get("format"),
                "resource_group": rec.get("resource_group"), "gpus": rec.get("gpus"),
                "replicas": rec.get("replicas"), "ready_replicas": ready,
                "previous_version": int(p) if (p := obj["metadata"].get("annotations", {}).get(PREVIOUS)) else None,
                "url": f"http://{name}.{self.ws.namespace}.svc/v2/models/{name}/infer"}

    def status(self, name: str) -> dict:
        """State and, when it is not serving, why: init container (fetch) logs, load errors, events."""
        obj = self._require(name)
        view = self._summary(obj)
        if obj["kind"] != "Deployment":
            view["state"] = "Ready" if view["ready_replicas"] else "NotReady"
            view["conditions"] = obj.get("status", {}).get("conditions", [])
            return view
        pods = self.ws.pods(f"{M.SERVICE_LABEL}={name}")
        events = self.ws.events_for({name, *(p["metadata"]["name"] for p in pods), *_replicasets(pods)},
                                    since=obj["metadata"].get("creationTimestamp"))
        st = obj.get("status", {})
        want = obj["spec"].get("replicas", 1)
        updated = st.get("updatedReplicas") or 0
        problems = []
        for p in pods:
            problems += _pod_problems(p)
        if want == 0:
            state = "Stopped"
        elif view["ready_replicas"] >= want and updated >= want and (st.get("replicas") or 0) == want:
            state = "Ready"
        elif problems:
            state = "Failing"
        elif view["ready_replicas"]:
            state = "Updating"
        else:
            state = "Starting"
        pending = W.pending_reason([p for p in pods if p.get("status", {}).get("phase") == "Pending"],
                                   [e for e in events if e.get("type") == "Warning"])
        view.update({"state": state, "problems": problems + ([pending] if pending and state != "Ready" else []),
                     "pods": [{**W.pod_view(p), "version": p["metadata"].get("labels", {}).get(M.VERSION_LABEL),
                               "ready": any(c.get("type") == "Ready" and c.get("status") == "True"
                                            for c in p.get("status", {}).get("conditions", []))} for p in pods],
                     "events": [event_view(e) for e in events[-20:]]})
        return view

    def logs(self, name: str, follow: bool = False, tail_lines: int | None = None) -> Iterator[bytes]:
        """The model server's log in the newest started replica (the one a switch just brought up)."""
        obj = self._require(name)
        if obj["kind"] == "Deployment":
            pods, container = self.ws.pods(f"{M.SERVICE_LABEL}={name}"), "server"
        else:  # KServe names its pods' label and container itself
            pods, container = self.ws.pods(f"serving.kserve.io/inferenceservice={name}"), "kserve-container"
        started = sorted((p for p in pods if W.pod_started(p)), key=lambda p: p["metadata"].get("creationTimestamp") or "")
        if not started:
            why = W.pending_reason(pods) if pods else "it has no replica"
            raise Conflict(f"inference service {name!r} has no started replica yet: {why or 'its pods are starting'}")
        return self.ws.call(self.ws.kube.logs, started[-1]["metadata"]["name"], container=container,
                            follow=follow, tail_lines=tail_lines)

    # -- predict ----------------------------------------------------------------------------------
    def predict(self, name: str, body: Mapping[str, Any]) -> dict:
        """POST to the service: ``{"data": [[...], ...]}`` (a V2 request is built from the
        stored signature), or ``{"inputs": [...]}`` (a V2 request as is)."""
        if not isinstance(body, Mapping) or not (("data" in body) ^ ("inputs" in body)):
            raise BadRequest("send {\"data\": [[...], ...]} or a V2 request {\"inputs\": [...]}")
        view = self._summary(self._require(name))  # one GET: no pod/event listing on the hot path
        if not view["ready_replicas"]:
            raise Conflict(f"inference service {name!r} is not ready (see GET services/{name})")
        if "data" in body:
            version = self.models.version(view["model"], view["version"])
            try:
                payload = M.v2_request(version.get("signature"), body["data"])
            except WorkloadError as e:
                raise BadRequest(str(e)) from None
        else:
            payload = dict(body)
        try:
            r = requests.post(view["url"], json=payload, timeout=self.predict_timeout)
        except requests.RequestException as e:
            raise Unavailable(f"inference service {name!r} did not answer: {e.__class__.__name__}") from None
        try:
            doc = r.json()
        except ValueError:
            doc = {"error": r.text[:500]}
        if r.status_code >= 400:
            msg = doc.get("error") or doc.get("detail") or r.text[:300]
            raise ServiceError(f"the model answered {r.status_code}: {msg}", 400 if r.status_code < 500 else 502)
        outputs = {o["name"]: o.get("data") for o in doc.get("outputs", [])}
        return {"service": name, "model": view["model"], "version": view["version"], "outputs": outputs,
                "response": doc}


def _replicasets(pods: list[dict]) -> set[str]:
    return {o["name"] for p in pods for o in p["metadata"].get("ownerReferences", []) if o.get("kind") == "ReplicaSet"}


def _pod_problems(pod: dict) -> list[str]:
    """Why a server pod is not serving: fetch (init container) failures with their log, load errors."""
    out = []
    st = pod.get("status", {})
    for cs in (st.get("initContainerStatuses") or []) + (st.get("containerStatuses") or []):
        state = cs.get("state") or {}
        last = cs.get("lastState") or {}
        term = state.get("terminated") or last.get("terminated")
        waiting = state.get("waiting") or {}
        if term and term.get("exitCode", 0) != 0:
            msg = (term.get("message") or "").strip().splitlines()
            out.append(f"{cs['name']} failed: {msg[-1] if msg else 'exit code ' + str(term.get('exitCode'))}")
        elif waiting.get("reason") in ("CrashLoopBackOff", "ErrImagePull", "ImagePullBackOff",
                                       "CreateContainerConfigError", "InvalidImageName"):
            out.append(f"{cs['name']}: {waiting['reason']}: {waiting.get('message', '').strip()}")
    return out

