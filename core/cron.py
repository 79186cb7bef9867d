"""Kubernetes CronJob schedules: validate ``spec.schedule`` / ``spec.timeZone`` and preview runs.

Kubernetes parses ``spec.schedule`` with robfig/cron v3 ``ParseStandard`` and
the CronJob controller fires at ``SpecSchedule.Next`` of the last run.  This
module reimplements both in pure Python so that a schedule is refused (with a
one-line :class:`CronError`) before anything is sent to the cluster, and so
that :func:`next_runs` shows the times the controller will actually use.

What is accepted is what robfig/cron v3.0.1 + the apiserver accept:

* Exactly 5 whitespace-separated fields: minute (0-59), hour (0-23),
  day of month (1-31), month (1-12 or JAN-DEC), day of week (0-6 or SUN-SAT;
  7 is *not* Sunday).  Names are case-insensitive.
* Each field is a comma-separated list of ``*``, ``?``, ``N``, ``A-B``,
  ``*/S``, ``A-B/S`` and ``A/S`` (= ``A-max/S``).  Like robfig, ``?`` means
  ``*`` in *every* field, a leading ``+`` on a number is allowed, empty list
  items (``1,,2``) are ignored and anything after ``*-`` is ignored
  (``*-5`` is ``*``).  A range whose start is after its end, a step of 0 and a
  value outside the field's range are errors.
* Descriptors ``@yearly @annually @monthly @weekly @daily @midnight @hourly``
  (lower-case, the whole schedule).  ``@every`` (accepted by robfig) is refused
  here on purpose; ``@reboot`` is refused by robfig too.
* Anything containing ``TZ`` (``TZ=``/``CRON_TZ=`` prefixes) is refused, as the
  apiserver does for new CronJobs: the time zone goes in ``spec.timeZone``.

Day matching (robfig's ``dayMatches``): a day-of-month or day-of-week field is
"star" when one of its items is ``*`` or ``?`` with no step or step 1 (so
``*/1`` is star but ``*/2`` is not).  If either field is star the day must
match both (so the other one decides); if both are restricted the day matches
when *either* matches (vixie-cron OR: ``0 0 1 * MON`` fires on the 1st and on
every Monday).

Time zones and DST: :meth:`CronSchedule.next_after` is a line-by-line port of
robfig's ``SpecSchedule.Next`` working in the wall time of the zone, including
Go's ``time.Date`` normalisation of local times that do not exist.  In effect:

* a wall time skipped by spring-forward does not fire that day
  (``30 2 * * *`` in America/New_York skips 2024-03-10);
* a wall time repeated by fall-back fires twice, once in each offset
  (``30 1 * * *`` in America/New_York fires at 01:30 EDT and 01:30 EST on
  2024-11-03) -- that is what robfig and hence the CronJob controller do;
* a schedule with no run within 5 years of the start (``0 0 30 2 *``) raises
  ``CronError("schedule never fires ...")`` instead of returning robfig's zero time;
* where robfig would loop forever (a start just before a day that the zone
  skips entirely, like 2011-12-30 in Pacific/Apia) a CronError is raised.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["CronError", "CronSchedule", "parse", "validate_timezone", "next_runs"]


class CronError(ValueError):
    """One-line, user-facing message, e.g.
    "invalid cron expression '61 * * * *': minute 61 is out of range 0-59".

    Control characters from the input (tabs, newlines) are shown escaped, so the
    message stays on one line.
    """

    def __init__(self, message: str):
        if not message.isprintable():
            message = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in message)
        super().__init__(message)


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: dict[str, int] | None = None
    hint: str = ""


_MONTH_NAMES = {n: i + 1 for i, n in enumerate(
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"])}
_DOW_NAMES = {n: i for i, n in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}

_FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day of month", 1, 31),
    _Field("month", 1, 12, _MONTH_NAMES),
    _Field("day of week", 0, 6, _DOW_NAMES, " (Sunday is 0)"),
)
_FIELD_NAMES = "minute hour day-of-month month day-of-week"

# Go's strings.Fields splits on unicode.IsSpace, which (unlike str.split) does
# not include the ASCII separators \x1c-\x1f.
_GO_SPACE = re.compile("[\t\n\v\f\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+")
# strconv.Atoi: optional sign, ASCII digits, fits in int64.
_GO_INT = re.compile(r"[+-]?[0-9]+")
_INT64_MAX = 2**63 - 1

_DESCRIPTORS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")

# Go's time.LoadLocation never sees a name that fails this (apiserver validateTimeZone).
_TZ_PART = re.compile(r"[A-Za-z.\-_0-9+]{1,14}")

_YEARS_AHEAD = 5  # robfig gives up after five years
# robfig loops forever where a whole local day is skipped (Pacific/Apia on
# 2011-12-30); no real search needs more than a few thousand steps.
_MAX_STEPS = 100_000


@dataclass(frozen=True)
class CronSchedule:
    """A parsed schedule: the allowed values of each field.

    ``dom_star``/``dow_star`` are robfig's star bits for day of month and day of
    week (see the module docstring); they decide between AND and OR matching.
    """

    minutes: frozenset[int]
    hours: frozenset[int]
    days_of_month: frozenset[int]
    months: frozenset[int]
    days_of_week: frozenset[int]  # 0 = Sunday
    dom_star: bool
    dow_star: bool
    expr: str = field(default="", compare=False)

    def day_matches(self, day: date) -> bool:
        """True if the schedule may fire on ``day`` (robfig ``dayMatches``)."""
        dom = day.day in self.days_of_month
        dow = (day.weekday() + 1) % 7 in self.days_of_week
        if self.dom_star or self.dow_star:
            return dom and dow
        return dom or dow

    def next_after(self, dt: datetime) -> datetime:
        """The first firing strictly after ``dt``, in ``dt``'s time zone.

        ``dt`` must be timezone-aware; the schedule is read in its zone's wall
        time, as robfig does for a schedule without ``TZ=``.  Raises
        :class:`CronError` if there is no firing within 5 years.
        """
        if dt.tzinfo is None or dt.utcoffset() is None:
            raise ValueError("next_after needs a timezone-aware datetime")
        tz = dt.tzinfo
        # Start at the next whole second (robfig: t.Add(1s - nanoseconds)).
        start = (dt - _EPOCH) // timedelta(seconds=1) + 1
        try:
            found = self._next_unix(start, tz)
        except _Stuck:
            raise CronError(f"cannot compute the run of '{self.expr}' after {dt:%Y-%m-%d %H:%M} in {tz}: "
                            "the local calendar skips a day there (the CronJob controller gets stuck too)"
                            ) from None
        if found is None:
            raise CronError(f"schedule never fires: '{self.expr}' has no run within "
                            f"{_YEARS_AHEAD} years")
        return datetime.fromtimestamp(found, tz)

    def _never_fires(self) -> bool:
        if not (self.minutes and self.hours and self.months):
            return True
        if self.dom_star or self.dow_star:
            return not (self.days_of_month and self.days_of_week)
        return not (self.days_of_month or self.days_of_week)

    def _next_unix(self, t: int, tz: tzinfo) -> int | None:
        """Port of robfig/cron v3 ``SpecSchedule.Next`` on Unix seconds ``t`` in zone ``tz``."""
        if self._never_fires():  # robfig would spin for 5 years, then give up
            return None
        w = _wall(t, tz)
        year_limit = w.year + _YEARS_AHEAD
        added = False
        steps = 0
        while True:  # WRAP:
            w = _wall(t, tz)
            if w.year > year_limit:
                return None
            wrapped = False

            while w.month not in self.months:
                steps += 1
                if steps > _MAX_STEPS:
                    raise _Stuck
                if not added:
                    added = True
                    t = _go_date(w.year, w.month, 1, 0, 0, 0, tz)
                    w = _wall(t, tz)
                t = _go_date(w.year, w.month + 1, w.day, w.hour, w.minute, w.second, tz)  # AddDate(0, 1, 0)
                w = _wall(t, tz)
                if w.month == 1:
                    wrapped = True
                    break
            if wrapped:
                continue

            while not self.day_matches(w):
                steps += 1
                if steps > _MAX_STEPS:
                    raise _Stuck
                if not added:
                    added = True
                    t = _go_date(w.year, w.month, w.day, 0, 0, 0, tz)
                    w = _wall(t, tz)
                t = _go_date(w.year, w.month, w.day + 1, w.hour, w.minute, w.second, tz)  # AddDate(0, 0, 1)
                w = _wall(t, tz)
                # Midnight may not exist (DST at 00:00): go back or forward to it.
                if w.hour != 0:
                    t += (24 - w.hour) * 3600 if w.hour > 12 else -w.hour * 3600
                    w = _wall(t, tz)
                if w.day == 1:
                    wrapped = True
                    break
            if wrapped:
                continue

            while w.hour not in self.hours:
                steps += 1
                if steps > _MAX_STEPS:
                    raise _Stuck
                if not added:
                    added = True
                    t = _go_date(w.year, w.month, w.day, w.hour, 0, 0, tz)
                t += 3600
                w = _wall(t, tz)
                if w.hour == 0:
                    wrapped = True
                    break
            if wrapped:
                continue

            while w.minute not in self.minutes:
                steps += 1
                if steps > _MAX_STEPS:
                    raise _Stuck
                if not added:
                    added = True
                    t -= t % 60  # Truncate(time.Minute)
                t += 60
                w = _wall(t, tz)
                if w.minute == 0:
                    wrapped = True
                    break
            if wrapped:
                continue

            while w.second != 0:  # the standard parser's seconds field is "0"
                steps += 1
                if steps > _MAX_STEPS:
                    raise _Stuck
                added = True
                t += 1
                w = _wall(t, tz)
                if w.second == 0:
                    wrapped = True
                    break
            if wrapped:
                continue
            return t


class _Stuck(Exception):
    """robfig's search would not terminate."""


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def _wall(t: int, tz: tzinfo) -> datetime:
    return datetime.fromtimestamp(t, tz)


def _offset(t: int, tz: tzinfo) -> int:
    return _wall(t, tz).utcoffset() // timedelta(seconds=1)


def _go_date(year: int, month: int, day: int, hour: int, minute: int, second: int, tz: tzinfo) -> int:
    """Go's ``time.Date(...).Unix()``: out-of-range month/day roll over, and a
    local time that does not exist (or exists twice) is resolved as Go does:
    look up the offset at the wall time read as UTC, then at the resulting UTC
    instant, and use the latter."""
    year += (month - 1) // 12
    month = (month - 1) % 12 + 1
    unix = ((date(year, month, 1).toordinal() - _EPOCH_ORDINAL + day - 1) * 86400
            + hour * 3600 + minute * 60 + second)
    offset = _offset(unix, tz)
    if offset:
        unix -= _offset(unix - offset, tz)
    return unix


def _fail(expr: str, detail: str) -> CronError:
    return CronError(f"invalid cron expression '{expr}': {detail}")


def _number(expr: str, token: str, spec: _Field, item: str) -> int:
    if spec.names is not None and token.lower() in spec.names:
        return spec.names[token.lower()]
    if token == "":
        raise _fail(expr, f"{spec.name} '{item}' is missing a number")
    if not _GO_INT.fullmatch(token) or int(token) > _INT64_MAX:
        what = "a number or name" if spec.names is not None else "a number"
        raise _fail(expr, f"{spec.name} '{token}' is not {what}")
    value = int(token)
    if not spec.low <= value <= spec.high:
        raise _fail(expr, f"{spec.name} {value} is out of range {spec.low}-{spec.high}{spec.hint}")
    return value


def _item(expr: str, item: str, spec: _Field) -> tuple[set[int], bool]:
    """One list item (robfig ``getRange``): its values and whether it sets the star bit."""
    range_and_step = item.split("/")
    low_high = range_and_step[0].split("-")
    if len(range_and_step) > 2:
        raise _fail(expr, f"{spec.name} '{item}' has more than one '/'")
    star = low_high[0] in ("*", "?")
    if star:
        start, end = spec.low, spec.high  # robfig ignores anything after "*-"
    else:
        if len(low_high) > 2:
            raise _fail(expr, f"{spec.name} '{item}' has more than one '-'")
        start = _number(expr, low_high[0], spec, item)
        end = _number(expr, low_high[1], spec, item) if len(low_high) == 2 else start
    step = 1
    if len(range_and_step) == 2:
        token = range_and_step[1]
        if not _GO_INT.fullmatch(token) or int(token) > _INT64_MAX:
            raise _fail(expr, f"{spec.name} step '{token}' in '{item}' is not a number")
        step = int(token)
        if step < 1:
            raise _fail(expr, f"{spec.name} step in '{item}' must be at least 1")
        if len(low_high) == 1:
            end = spec.high  # "N/S" means "N-max/S"
        if step > 1:
            star = False
    if start > end:
        raise _fail(expr, f"{spec.name} range '{item}' starts after it ends")
    return set(range(start, end + 1, step)), star


def _field(expr: str, text: str, spec: _Field) -> tuple[frozenset[int], bool]:
    values: set[int] = set()
    star = False
    for item in text.split(","):
        if item == "":
            continue  # robfig's FieldsFunc drops empty items
        item_values, item_star = _item(expr, item, spec)
        values |= item_values
        star = star or item_star
    return frozenset(values), star


def _all(spec: _Field) -> frozenset[int]:
    return frozenset(range(spec.low, spec.high + 1))


def _descriptor(expr: str) -> CronSchedule:
    name = expr.strip()
    if name.startswith("@every"):
        raise _fail(expr, "@every is not supported; use a 5-field schedule")
    if name == "@reboot":
        raise _fail(expr, "@reboot is not supported; use a 5-field schedule")
    if name in _DESCRIPTORS and name != expr:
        raise _fail(expr, f"remove the spaces around '{name}'")
    if name not in _DESCRIPTORS:
        if name.lower() in _DESCRIPTORS:
            raise _fail(expr, f"descriptors are lower-case: use '{name.lower()}'")
        raise _fail(expr, f"unknown descriptor '{name}'; use one of {', '.join(_DESCRIPTORS)} "
                          "or a 5-field schedule")
    minute, hour, dom, month, dow = _FIELDS
    zero = frozenset({0})
    one = frozenset({1})
    if name in ("@yearly", "@annually"):
        return CronSchedule(zero, zero, one, one, _all(dow), False, True, expr)
    if name == "@monthly":
        return CronSchedule(zero, zero, one, _all(month), _all(dow), False, True, expr)
    if name == "@weekly":
        return CronSchedule(zero, zero, _all(dom), _all(month), zero, True, False, expr)
    if name in ("@daily", "@midnight"):
        return CronSchedule(zero, zero, _all(dom), _all(month), _all(dow), True, True, expr)
    return CronSchedule(zero, _all(hour), _all(dom), _all(month), _all(dow), True, True, expr)  # @hourly


def parse(expr: str) -> CronSchedule:
    """Parse a CronJob ``spec.schedule`` as Kubernetes does; raise :class:`CronError` if it would refuse it."""
    if not isinstance(expr, str):
        raise CronError(f"invalid cron expression {expr!r}: the schedule must be a string")
    if expr.strip() == "":
        raise _fail(expr, f"the schedule is empty; write 5 fields: {_FIELD_NAMES}")
    if "TZ" in expr or re.match(r"\s*(cron_)?tz=", expr, re.IGNORECASE):
        raise _fail(expr, "use the time zone field instead of TZ= in the schedule")
    if expr.lstrip().startswith("@"):
        return _descriptor(expr)
    fields = [f for f in _GO_SPACE.split(expr) if f]
    if len(fields) != 5:
        extra = " (there is no seconds field)" if len(fields) == 6 else ""
        raise _fail(expr, f"found {len(fields)} fields; Kubernetes schedules have 5: "
                          f"{_FIELD_NAMES}{extra}")
    parsed = [_field(expr, text, spec) for text, spec in zip(fields, _FIELDS)]
    (minutes, _), (hours, _), (doms, dom_star), (months, _), (dows, dow_star) = parsed
    return CronSchedule(minutes, hours, doms, months, dows, dom_star, dow_star, expr)


def validate_timezone(tz: str) -> str:
    """Return ``tz`` if Kubernetes accepts it as ``spec.timeZone``; raise :class:`CronError` otherwise.

    Like the apiserver: an IANA name made of parts of 1-14 characters from
    ``A-Za-z0-9._-+`` that the tz database knows; ``""`` and ``Local`` are refused.
    """
    if not isinstance(tz, str):
        raise CronError(f"time zone must be a string such as 'Europe/Berlin', not {type(tz).__name__}")
    if tz == "":
        raise CronError("time zone must not be empty; use an IANA name such as 'Europe/Berlin' or 'UTC'")
    if tz.lower() == "local":
        raise CronError(f"time zone '{tz}' is not allowed; use an IANA name such as 'Europe/Berlin' or 'UTC'")
    unknown = CronError(f"unknown time zone '{tz}'")
    for part in tz.split("/"):
        if part in (".", "..") or part.startswith("-") or not _TZ_PART.fullmatch(part):
            raise unknown
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise unknown from None
    return tz


def next_runs(expr: str, tz: str = "UTC", n: int = 5, after: datetime | None = None) -> list[datetime]:
    """The next ``n`` firings of ``expr`` in time zone ``tz``, strictly after ``after`` (default now).

    Returns timezone-aware datetimes in ``tz``.  A naive ``after`` is read as
    wall time in ``tz``.  Raises :class:`CronError` for a bad schedule or time
    zone, or if the schedule never fires.
    """
    schedule = parse(expr)
    zone = ZoneInfo(validate_timezone(tz))
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if after is None:
        after = datetime.now(timezone.utc)
    elif after.tzinfo is None or after.utcoffset() is None:
        after = after.replace(tzinfo=zone)
    runs: list[datetime] = []
    current = after.astimezone(zone)
    for _ in range(n):
        current = schedule.next_after(current)
        runs.append(current)
    return runs
