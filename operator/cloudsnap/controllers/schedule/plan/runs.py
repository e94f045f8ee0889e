"""Which run is due, how late each source's create may start, and what its child is called.

Pure functions of the spec, the recorded status and the current time: the controller passes
``now``, tests pass a fake one.

- **Due run.** The candidate is the latest slot in (last handled slot, now], where the last
  handled slot is the later of status.lastScheduleTime and status.lastMissedTime, or the
  schedule's creation before its first run. Earlier slots in that window are counted as missed,
  never run: after downtime (or a suspension) at most one catch-up run is made, and only if it
  is within ``startingDeadlineSeconds``; otherwise it is missed too.
- **Suspend.** While suspended nothing is due and nothing is counted; on resume the window above
  decides (as for a Kubernetes CronJob).
- **Jitter.** Each source's create waits a delay in [0, jitterSeconds] fixed by a digest of the
  schedule, the source and the slot: the same on every replica and after every restart.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

from cloudsnap.controllers.schedule.plan.cron import Cron

# Missed slots are counted up to this many in one look (a per-minute schedule down for a year
# would otherwise enumerate half a million slots to report a number).
MISSED_COUNT_LIMIT = 10_000
NAME_MAX_LENGTH = 63
LABEL_VALUE_MAX_LENGTH = 63
_DIGEST_LENGTH = 8
_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


@dataclass(frozen=True)
class RunPlan:
    """What one look at the clock decided."""

    slot: datetime | None
    """The slot to run now, if any."""
    missed: int
    """Slots skipped in this look (not run, and never to be run)."""
    latest_missed: datetime | None
    """The latest of those, recorded so that they are not counted again."""
    next_slot: datetime | None
    """The first slot after now; None while suspended."""


def plan_run(
    cron: Cron,
    zone: tzinfo,
    *,
    now: datetime,
    handled_until: datetime,
    suspended: bool,
    starting_deadline: timedelta | None,
) -> RunPlan:
    """Decide the run due at ``now`` given the last slot already handled (run or missed)."""
    if suspended:
        return RunPlan(None, 0, None, None)
    next_slot = cron.next_after(now, zone)
    latest = cron.latest_at_or_before(now, zone)
    if latest is None or latest <= handled_until:
        return RunPlan(None, 0, None, next_slot)
    earlier = cron.count_between(handled_until, latest, zone, limit=MISSED_COUNT_LIMIT + 1) - 1
    if starting_deadline is not None and now - latest > starting_deadline:
        return RunPlan(None, earlier + 1, latest, next_slot)
    previous = cron.latest_at_or_before(latest - timedelta(microseconds=1), zone)
    return RunPlan(latest, earlier, previous if earlier else None, next_slot)


def jitter_delay(schedule: str, source: str, slot: datetime, jitter_seconds: int) -> int:
    """Seconds after ``slot`` at which ``source``'s create is due, in [0, jitter_seconds]."""
    if jitter_seconds <= 0:
        return 0
    key = f"{schedule}\0{source}\0{slot.astimezone(UTC).isoformat()}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") % (jitter_seconds + 1)


def child_name(schedule: str, source_name: str, slot: datetime) -> str:
    """The child's name: schedule, source and slot (UTC), as a DNS-1123 label of at most 63
    characters, with a digest of the schedule and source so that cutting keeps it unique."""
    digest = _digest(f"{schedule}\0{source_name}")
    suffix = f"-{digest}-{slot.astimezone(UTC):%Y%m%d-%H%M}"
    prefix = re.sub(r"[^a-z0-9-]", "-", f"{schedule}-{source_name}".lower())
    prefix = prefix[: NAME_MAX_LENGTH - len(suffix)].strip("-") or "x"
    return prefix + suffix


def label_value(text: str) -> str:
    """``text`` as a label value: itself if it fits, else cut with a digest of the whole."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "-", text)
    if cleaned == text and len(text) <= LABEL_VALUE_MAX_LENGTH:
        return text
    room = LABEL_VALUE_MAX_LENGTH - _DIGEST_LENGTH - 1
    head = cleaned[:room].strip("-_.") or "x"
    return f"{head}-{_digest(text)}"


def parse_duration(text: str) -> timedelta:
    """A duration such as 168h, 1h30m or 90s; ValueError for anything else or zero."""
    match = _DURATION.match(text)
    if not text or match is None:
        raise ValueError(f"{text!r} is not a duration in hours, minutes and seconds (e.g. 168h)")
    hours, minutes, seconds = (int(group or 0) for group in match.groups())
    duration = timedelta(hours=hours, minutes=minutes, seconds=seconds)
    if duration <= timedelta(0):
        raise ValueError(f"{text!r} is not a positive duration")
    return duration


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:_DIGEST_LENGTH]
