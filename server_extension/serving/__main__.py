"""``python -m kubelab.server_extension.serving --model-dir DIR --model-name NAME --format FMT``

Loads the model first (without importing kserve), so a model that cannot be
loaded fails fast: exit status 1 and ONE line on stderr (also written to the
container's termination log, where Kubernetes shows it in the pod status)::

    kubelab-serving: cannot load model 'iris' (onnx): onnx: model.onnx is not a valid ONNX model: ...
"""

from __future__ import annotations

import argparse
import os
import sys
import time

PROG = "kubelab-serving"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from .loaders import FORMATS

    p = argparse.ArgumentParser(prog="python -m kubelab.server_extension.serving",
                                description="Serve one model with KServe's ModelServer (V1 + V2 REST).")
    p.add_argument("--model-dir", required=True, help="directory holding the model file")
    p.add_argument("--model-name", required=True, help="name in the URLs (/v2/models/NAME/infer)")
    p.add_argument("--format", required=True, help=", ".join(FORMATS))
    p.add_argument("--http-port", type=int, default=8080)
    p.add_argument("--workers", type=int, default=1,
                   help="uvicorn worker processes (each loads its own copy of the model)")
    p.add_argument("--grpc-port", type=int, default=None, help="also serve V2 over gRPC on this port")
    p.add_argument("--drain-seconds", type=float, default=2.0,
                   help="after SIGTERM, keep serving this long with readiness 503 before shutting down")
    p.add_argument("--grace-period", type=int, default=20,
                   help="then wait at most this long for in-flight requests")
    p.add_argument("--termination-log", default="/dev/termination-log",
                   help="where to write the load error too, if that file exists")
    return p.parse_args(argv)


def fail(args: argparse.Namespace, reason: str) -> None:
    line = f"{PROG}: cannot load model {args.model_name!r} ({args.format}): {reason}"
    if args.termination_log and os.path.exists(args.termination_log):
        try:
            with open(args.termination_log, "w") as f:
                f.write(line + "\n")
        except OSError:
            pass
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
    sys.exit(1)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    # kserve's model_server parses sys.argv when it is imported (and again in
    # each spawned worker): keep our flags away from it.
    sys.argv = sys.argv[:1]

    from . import loaders

    start = time.perf_counter()
    try:
        if args.format == "sklearn":  # pickle-based: scan again with this image's allowlist before loading
            from ..modelcheck import scan

            verdict = scan(loaders.model_file(args.format, args.model_dir))
            if not verdict.safe:
                raise loaders.LoadError(f"sklearn: refused to load: {verdict.reason}")
        loaded = loaders.load(args.format, args.model_dir)
        if not loaded.servable:
            raise loaders.LoadError(f"{loaded.format}: {loaded.NOT_SERVABLE}")
    except loaders.LoadError as exc:
        fail(args, str(exc))
    except Exception as exc:  # a framework failing in an unexpected way: still one line
        fail(args, f"{type(exc).__name__}: {loaders.one_line(exc)}")
    load_seconds = time.perf_counter() - start

    from .runtime import serve

    serve(loaded, model_dir=os.path.abspath(args.model_dir), model_name=args.model_name, fmt=args.format,
          http_port=args.http_port, workers=args.workers, grpc_port=args.grpc_port,
          drain_seconds=args.drain_seconds, grace_period=args.grace_period, load_seconds=load_seconds)


if __name__ == "__main__":
    main()
