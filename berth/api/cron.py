"""CronJob schedules: the grammar kube accepts, parsed and iterated with croniter.

kube-apiserver and kube-controller-manager parse ``spec.schedule`` with robfig/cron's standard
parser: five fields (minute, hour, day of month, month, day of week; ``*``, lists, ranges,
steps, ``?``, month and weekday names), a macro (``@yearly``, ``@annually``, ``@monthly``,
``@weekly``, ``@daily``, ``@midnight``, ``@hourly``) or ``@every <duration>``, optionally
prefixed by ``TZ=<zone>`` or ``CRON_TZ=<zone>``. croniter understands a superset (seconds
fields, ``L``, ``#``, ``H``), so the grammar is checked here first: what kube refuses is
refused, and croniter only ever sees what kube would have parsed. Both the API server
(validation) and the CronJob controller (iteration) use this module, so they cannot disagree.

croniter (with dateutil) is imported where a schedule is parsed or iterated, not with this
module: the controller manager imports this for its CronJob controller, and without CronJobs
it does not pay the 1 MiB of RSS they take beside what it imports anyway.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_NAMES = {
    3: ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"),
    4: ("sun", "mon", "tue", "wed", "thu", "fri", "sat"),
}
_EVERY = re.compile(r"^@every\s+(\S{1,64})$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {
    "ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0
}  # fmt: skip
_FIELD = re.compile(r"^[0-9A-Za-z*?,/-]{1,100}$")
_WORD = re.compile(r"[A-Za-z]+")
_ZONE = re.compile(r"^[A-Za-z0-9_+\-]+(/[A-Za-z0-9_+\-]+)*$")
MAX_SCHEDULE = 1024
"""Longest schedule accepted (a bound on parsing work; real schedules are a few dozen bytes)."""


class ScheduleError(ValueError):
    """The schedule or time zone is not one kube accepts (the message says why)."""


def load_zone(name: str) -> tzinfo:
    """The IANA zone ``name`` (kube: ``time.LoadLocation``; ``Local`` is refused, as it means
    whatever zone the controller's host runs in)."""
    if name.lower() == "local":
        raise ScheduleError(
            "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones"
        )
    if name == "UTC":
        return UTC
    if len(name) > 255 or not _ZONE.match(name) or ".." in name:
        raise ScheduleError(f"unknown time zone {name}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ScheduleError(f"unknown time zone {name}") from None


def split_tz(schedule: str) -> tuple[str | None, str]:
    """``(zone, rest)`` of a schedule with a ``TZ=``/``CRON_TZ=`` prefix, else ``(None, s)``."""
    s = schedule.strip()
    for prefix in ("CRON_TZ=", "TZ="):
        if s.startswith(prefix):
            zone, _, rest = s[len(prefix) :].partition(" ")
            return zone, rest.strip()
    return None, s


def _check_field(i: int, text: str) -> None:
    if not _FIELD.match(text):
        raise ScheduleError(f"failed to parse field {text!r}")
    names = _NAMES.get(i)
    for word in _WORD.findall(text):
        if names is None or word.lower() not in names:
            raise ScheduleError(f"failed to parse int from {word}")


def every_seconds(expr: str) -> int | None:
    """The period of an ``@every <Go duration>`` schedule in whole seconds (robfig/cron
    truncates to the second, at least one), None for any other schedule."""
    m = _EVERY.match(expr)
    if m is None:
        return None
    text, pos, total = m.group(1), 0, 0.0
    while pos < len(text):
        part = _DURATION_PART.match(text, pos)
        if part is None:
            raise ScheduleError(f"failed to parse duration @every {text}: time: invalid duration")
        total += float(part.group(1)) * _UNIT_SECONDS[part.group(2)]
        pos = part.end()
    if total > 100 * 365 * 86400:
        raise ScheduleError(f"failed to parse duration @every {text}: out of range")
    return max(1, int(total))


def normalize(expr: str) -> str:
    """The five-field form of ``expr`` (a macro expanded); raises :class:`ScheduleError`."""
    if len(expr) > MAX_SCHEDULE:
        raise ScheduleError(f"must be no more than {MAX_SCHEDULE} characters")
    if expr.startswith("@"):
        five = MACROS.get(expr.lower())
        if five is None:
            raise ScheduleError(f"unrecognized descriptor: {expr}")
        return five
    fields = expr.split()
    if len(fields) != 5:
        raise ScheduleError(f"expected exactly 5 fields, found {len(fields)}: {fields}")
    for i, f in enumerate(fields):
        _check_field(i, f)
    five = " ".join(f.replace("?", "*") for f in fields)
    from croniter import croniter  # noqa: PLC0415 - lazy (docstring)

    if not croniter.is_valid(five):
        raise ScheduleError(f"invalid schedule {expr!r}")
    return five


@dataclass(frozen=True, slots=True)
class Schedule:
    """A parsed schedule in its zone: iterate the times it fires."""

    expr: str
    zone: tzinfo
    every: int = 0
    """Seconds between firings of an ``@every`` schedule (0: a cron expression)."""

    def next_after(self, t: datetime) -> datetime | None:
        """The first firing strictly after ``t`` (UTC), or None if it never fires (Feb 30)."""
        if self.every:
            return t.astimezone(UTC).replace(microsecond=0) + timedelta(seconds=self.every)
        from croniter import CroniterBadDateError, croniter  # noqa: PLC0415 - lazy (docstring)

        it = croniter(self.expr, t.astimezone(self.zone))
        try:
            nxt: datetime = it.get_next(datetime)
        except CroniterBadDateError:
            return None
        return nxt.astimezone(UTC)

    def latest_at_or_before(self, t: datetime) -> datetime | None:
        """The last firing at or before ``t`` (UTC), None if there is none (and for
        ``@every``, whose firings are anchored by the caller's start, not by the clock)."""
        if self.every:
            return None
        from croniter import CroniterBadDateError, croniter  # noqa: PLC0415 - lazy (docstring)

        it = croniter(self.expr, (t + timedelta(seconds=1)).astimezone(self.zone))
        try:
            prev: datetime = it.get_prev(datetime)
        except CroniterBadDateError:
            return None
        return prev.astimezone(UTC)

    def times_between(self, start: datetime, end: datetime) -> Iterator[datetime]:
        """Firings in ``(start, end]``, oldest first (UTC)."""
        t: datetime | None = start
        while t is not None:
            t = self.next_after(t)
            if t is None or t > end:
                return
            yield t

    def period(self, around: datetime) -> timedelta | None:
        """Gap between two consecutive firings after ``around`` (for missed-run bounds)."""
        a = self.next_after(around)
        b = self.next_after(a) if a is not None else None
        return b - a if a is not None and b is not None else None


def parse(schedule: str, time_zone: str | None = None) -> Schedule:
    """Parse ``spec.schedule`` with ``spec.timeZone``; raises :class:`ScheduleError`."""
    embedded, expr = split_tz(schedule)
    if embedded is not None and time_zone is not None:
        raise ScheduleError("cannot use both timeZone field and TZ or CRON_TZ in schedule")
    zone_name = time_zone if time_zone is not None else embedded
    zone: tzinfo = UTC if zone_name is None else load_zone(zone_name)
    if len(expr) > MAX_SCHEDULE:
        raise ScheduleError(f"must be no more than {MAX_SCHEDULE} characters")
    every = every_seconds(expr)
    if every is not None:
        return Schedule("", zone, every)
    from croniter import CroniterBadCronError  # noqa: PLC0415 - lazy (docstring)

    try:
        return Schedule(normalize(expr), zone)
    except CroniterBadCronError as exc:
        raise ScheduleError(str(exc)) from None
