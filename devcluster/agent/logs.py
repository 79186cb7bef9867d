"""Container log files (CRI format, written by the shim) and the kubelet's log options."""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO, Callable, Iterator


@dataclass(frozen=True)
class LogLine:
    """One record: ``<RFC3339Nano> <stream> <P|F> <content>``."""

    timestamp: str
    stream: str
    partial: bool
    content: bytes

    @property
    def time(self) -> float:
        return parse_rfc3339(self.timestamp)


@dataclass(frozen=True)
class LogOptions:
    """The query of GET /containerLogs."""

    follow: bool = False
    tail_lines: int | None = None
    timestamps: bool = False
    since_time: float | None = None
    limit_bytes: int | None = None
    previous: bool = False


def parse_rfc3339(text: str) -> float:
    """Seconds since the epoch of an RFC3339 time with up to nanosecond precision."""
    text = text.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    main, frac, offset = text, "", ""
    if "." in text:
        main, rest = text.split(".", 1)
        digits = len(rest) - len(rest.lstrip("0123456789"))
        frac, offset = rest[:digits], rest[digits:]
    else:
        main, offset = text[:19], text[19:]
    base = datetime.fromisoformat(main + (offset or "+00:00"))
    return base.timestamp() + (int(frac) / 10 ** len(frac) if frac else 0.0)


def format_rfc3339nano(seconds: float) -> str:
    """Go's RFC3339Nano in UTC (trailing zeros of the fraction dropped)."""
    ns = int(round(seconds * 1e9))
    base = datetime.fromtimestamp(ns // 10**9, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    frac = f"{ns % 10**9:09d}".rstrip("0")
    return f"{base}.{frac}Z" if frac else f"{base}Z"


def parse_line(raw: bytes) -> LogLine | None:
    """Parse one line of a log file (without its newline); None when malformed."""
    parts = raw.split(b" ", 3)
    if len(parts) < 3:
        return None
    content = parts[3] if len(parts) == 4 else b""
    try:
        ts = parts[0].decode()
        parse_rfc3339(ts)
    except ValueError:
        return None
    return LogLine(ts, parts[1].decode(errors="replace"), parts[2] == b"P", content)


def render(line: LogLine, timestamps: bool) -> bytes:
    """What the client sees for one record."""
    out = line.content if line.partial else line.content + b"\n"
    return (line.timestamp.encode() + b" " + out) if timestamps else out


def select_lines(lines: list[LogLine], opts: LogOptions) -> list[LogLine]:
    """Apply sinceTime/sinceSeconds then tailLines (a partial record counts with its line)."""
    if opts.since_time is not None:
        lines = [ln for ln in lines if ln.time >= opts.since_time]
    if opts.tail_lines is not None:
        if opts.tail_lines <= 0:
            return []
        count, start = 0, len(lines)
        for i in range(len(lines) - 1, -1, -1):
            if not lines[i].partial:
                count += 1
                if count > opts.tail_lines:
                    break
            start = i
        lines = lines[start:]
    return lines


class ByteBudget:
    """limitBytes: how much more may be written."""

    def __init__(self, limit: int | None):
        self.left = limit

    def take(self, data: bytes) -> bytes:
        if self.left is None:
            return data
        data = data[: self.left]
        self.left -= len(data)
        return data

    @property
    def exhausted(self) -> bool:
        return self.left is not None and self.left <= 0


def _read_records(f: BinaryIO, pending: bytes) -> tuple[list[LogLine], bytes]:
    data = pending + f.read()
    *complete, rest = data.split(b"\n")
    lines = [ln for ln in (parse_line(r) for r in complete) if ln is not None]
    return lines, rest


def stream_log(path: Path, opts: LogOptions, finished: Callable[[], bool],
               poll: float = 0.25) -> Iterator[bytes]:
    """Yield the log's output chunks; with ``follow``, until the container has exited.

    While following an idle log, empty chunks are yielded every ``poll``
    seconds so the caller can notice a client that went away.
    """
    budget = ByteBudget(opts.limit_bytes)
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return
    with f:
        lines, pending = _read_records(f, b"")
        for line in select_lines(lines, opts):
            chunk = budget.take(render(line, opts.timestamps))
            if chunk:
                yield chunk
            if budget.exhausted:
                return
        if not opts.follow:
            return
        while True:
            done = finished()
            lines, pending = _read_records(f, pending)
            for line in lines:
                if opts.since_time is not None and line.time < opts.since_time:
                    continue
                chunk = budget.take(render(line, opts.timestamps))
                if chunk:
                    yield chunk
                if budget.exhausted:
                    return
            if done and not lines:
                return
            if not lines:
                yield b""
                time.sleep(poll)
