"""The model server: one registered model version behind ``kserve.ModelServer``.

``KubelabModel`` is a ``kserve.Model`` (as KServe's own sklearnserver and
friends are) wrapping a :class:`~.loaders.LoadedModel`; ``kserve.ModelServer``
serves it over REST (FastAPI + uvicorn):

- Open Inference Protocol V2: ``POST /v2/models/{name}/infer`` (JSON, and the
  binary tensor extension that kserve's own client uses), ``GET
  /v2/models/{name}`` (metadata: the loader's signature as inputs/outputs),
  ``GET /v2/models/{name}/ready``, ``/v2/health/ready``, ``/v2/health/live``.
- V1: ``POST /v1/models/{name}:predict`` with ``{"instances": [[...], ...]}``
  (rows, or row dicts by input/feature name) -> ``{"predictions": [...]}``
  (the model's first output).
- ``GET /metrics``: Prometheus text. kserve's histograms
  ``request_preprocess_seconds``, ``request_predict_seconds``,
  ``request_postprocess_seconds`` (label ``model_name``; ``_count`` is the
  request count), the Python process collectors, and ours:
  ``kubelab_serving_requests_total{model_name,protocol,outcome}`` (outcome
  ok / invalid_input / error) and ``kubelab_serving_model_load_seconds``.
- gRPC (V2) only when a gRPC port is given.

Bad inputs (wrong name, shape or datatype) are answered 400 with
``{"error": "..."}``; the model is run in the event loop's thread pool so a
slow prediction does not stall health checks.

Shutdown (what kserve 0.21 does, and what we add). With one worker, uvicorn
owns SIGTERM/SIGINT: it closes the listening socket at once (new connections
are refused), lets requests in flight finish (up to ``grace_period``), closes
idle keep-alive connections, then kserve unloads the model and the process
exits 0. With several workers, kserve's parent gets the signal and sends
SIGTERM to each worker, which does the same. Neither keeps serving while the
endpoint leaves the Service's proxies, so on SIGTERM we first *drain*: for
``drain_seconds`` readiness (``/v2/health/ready``, ``/v2/models/{name}/ready``,
``GET /v1/models/{name}``) answers 503 while inference goes on, every response
carries ``Connection: close`` (kube-proxy keeps routing established
keep-alive connections to a terminating pod: this moves clients off it), and
only then hand the signal to uvicorn/kserve. A repeated SIGTERM is ignored; SIGINT
(Ctrl-C) is not delayed. Keep the pod's
``terminationGracePeriodSeconds`` above preStop + drain + grace.

(``Connection: close`` also covers a uvicorn race seen in the tests: a
connection accepted in the same instant the listener closes misses uvicorn's
one pass that closes idle connections, and a keep-alive client then held the
shutdown open for the whole grace period.)
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import multiprocessing
import re
import signal
import time
import uuid
import warnings
from typing import Any

import numpy as np
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer
from kserve.errors import InferenceError, InvalidInput
from prometheus_client import Counter, Gauge

from . import loaders

# A child of kserve's logger: same handler and format as kserve's own lines.
logger = logging.getLogger("kserve.kubelab")

REQUESTS = Counter(
    "kubelab_serving_requests_total",
    "Inference requests that reached the model, by protocol and outcome (ok, invalid_input, error)",
    ["model_name", "protocol", "outcome"])
LOAD_SECONDS = Gauge(
    "kubelab_serving_model_load_seconds", "Seconds the model took to load", ["model_name", "format"])


class _ClientErrorFilter(logging.Filter):
    """kserve logs every 4xx it answers (bad input, unknown model) at ERROR
    with a traceback; make those one WARNING line: they are the client's
    mistake, and tracebacks would bury real errors in the pod's log."""

    HANDLERS = {"invalid_input_handler": 400, "model_not_found_handler": 404}

    def filter(self, record: logging.LogRecord) -> bool:
        status = self.HANDLERS.get(record.funcName)
        if status and record.exc_info:
            exc = record.exc_info[1]
            record.msg, record.args = "%d %s: %s", (status, type(exc).__name__, loaders.one_line(exc))
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def configure_process() -> None:
    """Per-process logging/warning setup (the server and each spawned worker)."""
    kserve_logger = logging.getLogger("kserve")
    if not any(isinstance(f, _ClientErrorFilter) for f in kserve_logger.filters):
        kserve_logger.addFilter(_ClientErrorFilter())
    # kserve 0.21 still answers with ORJSONResponse, which FastAPI >= 0.120 deprecates.
    warnings.filterwarnings("ignore", message="ORJSONResponse is deprecated")


# --- draining ----------------------------------------------------------------------


class DrainState:
    """Set once SIGTERM arrives; shared with uvicorn worker processes."""

    def __init__(self):
        # A spawn-context Event travels to kserve's (spawned) workers with the model.
        self._event = multiprocessing.get_context("spawn").Event()

    def start(self) -> None:
        self._event.set()

    @property
    def draining(self) -> bool:
        return self._event.is_set()


_READINESS = re.compile(r"^/(v2/health/ready|v2/models/[^/]+(/versions/[^/]+)?/ready|v1/models/[^/:]+)/?$")


class DrainMiddleware:
    """ASGI middleware: while draining, readiness answers 503 and every response
    says ``Connection: close``; all else is served as usual.

    Closing connections matters as much as readiness: kube-proxy keeps sending
    an established (keep-alive) connection to the terminating pod, so clients
    must be told to reconnect (to another pod) before the server stops."""

    def __init__(self, app, drain: DrainState):
        self.app = app
        self.drain = drain

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not self.drain.draining:
            return await self.app(scope, receive, send)
        if scope.get("method") in ("GET", "HEAD") and _READINESS.match(scope.get("path", "")):
            body = b'{"error":"shutting down"}'
            await send({"type": "http.response.start", "status": 503,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode()),
                                    (b"connection", b"close")]})
            await send({"type": "http.response.body", "body": body})
            return

        async def send_closing(message):
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive, send_closing)


def install_drain_middleware(drain: DrainState) -> None:
    """Add DrainMiddleware to kserve's FastAPI app (once per process)."""
    from kserve import model_server

    app = model_server.app
    if getattr(app.state, "kubelab_drain", None) is None:
        app.add_middleware(DrainMiddleware, drain=drain)
        app.state.kubelab_drain = drain


# --- the model ---------------------------------------------------------------------


class KubelabModel(Model):
    """A kserve Model serving one :class:`~.loaders.LoadedModel`."""

    def __init__(self, name: str, model_dir: str, fmt: str,
                 loaded: loaders.LoadedModel | None = None, drain: DrainState | None = None):
        super().__init__(name)
        self.model_dir = model_dir
        self.fmt = fmt
        self.drain = drain
        self.loaded = loaded
        self.load_seconds: float | None = None
        if loaded is not None:
            self.ready = True

    def load(self) -> bool:
        """Load (or reload) from ``model_dir``; raises loaders.LoadError."""
        start = time.perf_counter()
        loaded = loaders.load(self.fmt, self.model_dir)
        check_servable(loaded)
        self.loaded = loaded
        self.load_seconds = time.perf_counter() - start
        LOAD_SECONDS.labels(self.name, self.fmt).set(self.load_seconds)
        self.ready = True
        return self.ready

    # kserve's multi-worker server pickles the registered models into spawned
    # worker processes; framework sessions (onnxruntime) do not pickle, so a
    # worker reloads the model from disk instead.
    def __getstate__(self):
        state = self.__dict__.copy()
        state["loaded"] = None
        state["ready"] = False
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        configure_process()
        self.load()
        if self.drain is not None:
            install_drain_middleware(self.drain)

    def get_input_types(self) -> list[dict]:
        return _metadata(self.loaded.signature.inputs if self.loaded.signature else [])

    def get_output_types(self) -> list[dict]:
        return _metadata(self.loaded.signature.outputs if self.loaded.signature else [])

    async def predict(self, payload: dict | InferRequest, headers: dict | None = None,
                      response_headers: dict | None = None) -> dict | InferResponse:
        protocol = "v2" if isinstance(payload, InferRequest) else "v1"
        try:
            if protocol == "v2":
                inputs = _v2_inputs(payload)
                wanted = [o.name for o in payload.request_outputs] if payload.request_outputs else None
            else:
                inputs, wanted = _v1_inputs(payload), None
            loop = asyncio.get_running_loop()
            result = await loop.run_in_executor(None, functools.partial(self.loaded.predict, inputs, wanted))
        except (loaders.InputError, InvalidInput) as exc:
            REQUESTS.labels(self.name, protocol, "invalid_input").inc()
            raise InvalidInput(str(exc)) from None
        except loaders.LoadError as exc:
            REQUESTS.labels(self.name, protocol, "error").inc()
            raise InferenceError(str(exc)) from None
        except Exception:
            REQUESTS.labels(self.name, protocol, "error").inc()
            raise
        REQUESTS.labels(self.name, protocol, "ok").inc()
        if protocol == "v1":
            first = next((n for n in self.loaded.output_names if n in result), next(iter(result)))
            return {"predictions": _jsonable(result[first])}
        outputs = []
        for name, value in result.items():
            arr = np.asarray(value)
            if arr.dtype.kind in "US":
                arr = arr.astype(object)
            out = InferOutput(name=name, shape=list(arr.shape), datatype=loaders.v2_datatype(arr.dtype))
            out.set_data_from_numpy(arr, binary_data=payload.use_binary_outputs)
            outputs.append(out)
        return InferResponse(response_id=payload.id or str(uuid.uuid4()), model_name=self.name,
                             infer_outputs=outputs, use_binary_outputs=payload.use_binary_outputs,
                             requested_outputs=payload.request_outputs)


def check_servable(loaded: loaders.LoadedModel) -> None:
    if not loaded.servable:
        raise loaders.LoadError(f"{loaded.format}: {getattr(loaded, 'NOT_SERVABLE', 'cannot be served here')}")


def _metadata(tensors: list[dict]) -> list[dict]:
    return [{"name": t["name"], "datatype": t["datatype"], "shape": list(t["shape"])} for t in tensors]


def _v2_inputs(request: InferRequest) -> dict[str, np.ndarray]:
    if not request.inputs:
        raise InvalidInput("the request has no inputs")
    inputs = {}
    for tensor in request.inputs:
        if loaders.numpy_dtype(tensor.datatype) is None:
            raise InvalidInput(f"input {tensor.name!r} has unknown datatype {tensor.datatype!r}; "
                               f"use one of {', '.join(loaders.V2_DATATYPES)}")
        try:
            inputs[tensor.name] = tensor.as_numpy()
        except InvalidInput:
            raise
        except Exception as exc:
            raise InvalidInput(
                f"input {tensor.name!r} ({tensor.datatype}, shape {tensor.shape}): "
                f"the data does not fit: {loaders.one_line(exc)}") from None
    return inputs


def _v1_inputs(body: Any) -> dict[str, np.ndarray]:
    if isinstance(body, (bytes, str)):  # sent without content-type: application/json
        try:
            body = json.loads(body)
        except ValueError as exc:
            raise InvalidInput(f"the body is not JSON: {loaders.one_line(exc)}") from None
    if not isinstance(body, dict):
        raise InvalidInput('V1 predict takes a JSON object {"instances": [...]}')
    rows = body.get("instances", body.get("inputs"))
    if not isinstance(rows, list) or not rows:
        raise InvalidInput('V1 predict takes {"instances": [...]}: a non-empty list of instances')
    if all(isinstance(r, dict) for r in rows):
        keys = list(rows[0])
        if any(list(r) != keys and set(r) != set(keys) for r in rows):
            raise InvalidInput("every instance must have the same keys")
        try:
            return {k: np.asarray([r[k] for r in rows]) for k in keys}
        except ValueError as exc:
            raise InvalidInput(f"instances: {loaders.one_line(exc)}") from None
    try:
        return {loaders.DEFAULT_INPUT: np.asarray(rows)}
    except ValueError as exc:
        raise InvalidInput(f"instances are not a rectangular array: {loaders.one_line(exc)}") from None


def _jsonable(arr: np.ndarray) -> Any:
    arr = np.asarray(arr)
    if arr.dtype.kind == "S":
        arr = np.char.decode(arr, "utf-8")
    return arr.tolist()


# --- the server --------------------------------------------------------------------


class KubelabModelServer(ModelServer):
    """kserve.ModelServer plus a drain before the graceful shutdown (see module doc)."""

    def __init__(self, *, drain: DrainState, drain_seconds: float, **kwargs):
        super().__init__(**kwargs)
        self.drain = drain
        self.drain_seconds = max(0.0, float(drain_seconds))
        self._next_handler = None
        self._drain_started: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def register_signal_handler(self):
        super().register_signal_handler()
        self._kserve_handler = signal.getsignal(signal.SIGTERM)
        # Runs inside asyncio.run() with the servers (kserve gathers self.servers).
        self.servers.append(self._wrap_sigterm())

    async def _wrap_sigterm(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self._rest_server is not None:
            # One worker: uvicorn installs its own handlers when it starts
            # serving (replacing kserve's); wrap whichever is current then.
            deadline = self._loop.time() + 120
            while signal.getsignal(signal.SIGTERM) is self._kserve_handler and self._loop.time() < deadline:
                await asyncio.sleep(0.01)
        self._next_handler = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, self._on_sigterm)

    def _on_sigterm(self, sig, frame) -> None:
        if self._drain_started is not None:
            # A forwarded duplicate (e.g. from a wrapper) must not cut the
            # drain short; SIGINT still stops at once.
            logger.info("SIGTERM again: already draining")
            return
        self._drain_started = time.monotonic()
        self.drain.start()
        logger.info("SIGTERM: draining for %.1fs (readiness 503, still serving), then graceful shutdown",
                    self.drain_seconds)
        self._loop.call_soon_threadsafe(self._loop.call_later, self.drain_seconds, self._shutdown, sig)

    def _shutdown(self, sig) -> None:
        handler, self._next_handler = self._next_handler, None
        if callable(handler):
            logger.info("drain over: stopping the server (in-flight requests finish, up to %ss)",
                        self.grace_period)
            handler(sig, None)


def serve(loaded: loaders.LoadedModel, *, model_dir: str, model_name: str, fmt: str,
          http_port: int = 8080, workers: int = 1, grpc_port: int | None = None,
          drain_seconds: float = 2.0, grace_period: int = 20, load_seconds: float | None = None) -> None:
    """Serve ``loaded`` until SIGTERM/SIGINT (blocks)."""
    drain = DrainState()
    model = KubelabModel(model_name, model_dir, fmt, loaded=loaded, drain=drain)
    if load_seconds is not None:
        model.load_seconds = load_seconds
        LOAD_SECONDS.labels(model_name, fmt).set(load_seconds)
    install_drain_middleware(drain)
    configure_process()
    server = KubelabModelServer(
        drain=drain, drain_seconds=drain_seconds, http_port=http_port, workers=workers,
        enable_grpc=grpc_port is not None, grpc_port=grpc_port or 8081, grace_period=grace_period)
    versions = ", ".join(f"{k} {v}" for k, v in loaded.framework_versions.items())
    logger.info("model %r (%s: %s; %s) loaded in %.2fs; serving V1/V2 REST on :%d%s",
                model_name, fmt, loaded.file_name, versions, load_seconds or 0, http_port,
                f" and gRPC on :{grpc_port}" if grpc_port else "")
    for w in loaded.warnings:
        logger.warning("while loading %s: %s", loaded.file_name, w)
    server.start([model])
