"""The kubelet HTTPS endpoint of one node: /healthz and /containerLogs.

TLS with the shared kubelet serving certificate; clients (the apiserver) must
present a certificate signed by the cluster CA.
"""
from __future__ import annotations

import logging
import select
import socket
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Protocol

from .logs import LogOptions, parse_rfc3339, stream_log

log = logging.getLogger(__name__)

UNSUPPORTED = ("/exec/", "/attach/", "/portForward/", "/run/", "/cri/")


class LogNotAvailable(Exception):
    """A log request that cannot be served (HTTP status and message)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class LogSource:
    """Where a container's log is and how to tell that it will not grow any more."""

    path: Path
    finished: Callable[[], bool]


class LogFinder(Protocol):
    def find_log(self, namespace: str, pod: str, container: str, previous: bool) -> LogSource: ...


def parse_log_options(query: str) -> LogOptions:
    """LogOptions from the query string of GET /containerLogs (ValueError when malformed)."""
    q = {k: v[-1] for k, v in urllib.parse.parse_qs(query).items()}

    def flag(name: str) -> bool:
        return q.get(name, "false").lower() in ("true", "1")

    def number(name: str) -> int | None:
        if name not in q:
            return None
        value = int(q[name])
        if value < 0:
            raise ValueError(f"{name} must not be negative")
        return value

    since = None
    if "sinceTime" in q:
        since = parse_rfc3339(q["sinceTime"])
    elif "sinceSeconds" in q:
        since = time.time() - (number("sinceSeconds") or 0)
    return LogOptions(follow=flag("follow"), tail_lines=number("tailLines"), timestamps=flag("timestamps"),
                      since_time=since, limit_bytes=number("limitBytes"), previous=flag("previous"))


def _client_gone(sock: socket.socket) -> bool:
    """True once the peer closed the connection (it sends nothing after its request)."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        sock.settimeout(0.05)
        try:
            return sock.recv(1) == b""
        finally:
            sock.settimeout(None)
    except (OSError, ValueError):
        return True


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_TLSServer"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s: " + format, self.server.name, *args)

    def _text(self, status: int, body: str) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        if url.path in ("/healthz", "/healthz/ping", "/readyz", "/livez"):
            self._text(200, "ok")
        elif url.path.startswith("/containerLogs/"):
            self._logs(url)
        elif url.path.startswith(UNSUPPORTED):
            self._text(501, f"{url.path.split('/')[1]} is not supported by the devcluster node agent\n")
        else:
            self._text(404, "404 page not found\n")

    do_POST = do_GET

    def _logs(self, url: urllib.parse.SplitResult) -> None:
        parts = [urllib.parse.unquote(p) for p in url.path.split("/")[2:]]
        if len(parts) != 3 or not all(parts):
            self._text(400, "expected /containerLogs/{namespace}/{pod}/{container}\n")
            return
        try:
            opts = parse_log_options(url.query)
            source = self.server.finder.find_log(parts[0], parts[1], parts[2], opts.previous)
        except ValueError as e:
            self._text(400, f"invalid log options: {e}\n")
            return
        except LogNotAvailable as e:
            self._text(e.status, f"{e}\n")
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.close_connection = True
        try:
            for chunk in stream_log(source.path, opts, source.finished):
                if not chunk:
                    if _client_gone(self.connection):
                        return
                    continue
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            return


class _TLSServer(ThreadingHTTPServer):
    """Handshakes in the request thread, so a slow client cannot stall accept()."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, context: ssl.SSLContext, finder: LogFinder, name: str):
        super().__init__(("0.0.0.0", port), _Handler)
        self.context = context
        self.finder = finder
        self.name = name

    def finish_request(self, request: Any, client_address: Any) -> None:
        try:
            request.settimeout(30)
            tls = self.context.wrap_socket(request, server_side=True)
            tls.settimeout(None)
        except (ssl.SSLError, OSError) as e:
            log.debug("%s: TLS handshake with %s failed: %s", self.name, client_address, e)
            return
        try:
            super().finish_request(tls, client_address)
        finally:
            try:
                tls.close()
            except OSError:
                pass


class KubeletServer:
    """The HTTPS endpoint of one node, served from a background thread."""

    def __init__(self, name: str, port: int, cert: Path, key: Path, ca: Path, finder: LogFinder):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(cert), str(key))
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(str(ca))
        self.httpd = _TLSServer(port, context, finder, name)
        self.thread = threading.Thread(target=self.httpd.serve_forever, name=f"kubelet-server-{name}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def shutdown(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
