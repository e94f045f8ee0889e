"""`python -m bench.schedule`: one CloudSnapshotSchedule over N disks, one slot, timed and costed.

A per-minute schedule naming N fresh disks is applied against the whole real stack (control
plane, EVS simulator and operator as processes; the class has no rate ceiling, so the operator's
adaptive rate follows the simulator's gateway, which throttles only when told, `--throttle
create=10`). The first slot after the apply makes N children at once; the benchmark reports the
seconds from that slot until every child exists and until every child is Ready, the EVS calls
per snapshot by operation (the simulator's count), and the calls the simulator's gateway
throttled (429 APIG.0308). The schedule is suspended as soon as the slot has been made, so no
second run mixes in. Not part of `make test`; minutes long.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from tests.harness.replicas import is_ready

from bench.scale import Stack, round_parser, stack_from_options, write_result
from cloudsnap.api.constants import GROUP, SCHEDULE_PLURAL, SNAPSHOT_PLURAL, VERSION

NAMESPACE = "bench-schedule"
NAME = "bench"
POLL_SECONDS = 1.0


def schedule(disks: list[str]) -> dict[str, Any]:
    """A per-minute schedule over the disks, keeping everything it makes."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "CloudSnapshotSchedule",
        "metadata": {"name": NAME, "namespace": NAMESPACE},
        "spec": {
            "schedule": "* * * * *",
            "sources": {"volumeIDs": disks},
            "retention": {"maxCount": 7},
        },
    }


def children(stack: Stack) -> list[dict[str, Any]]:
    """The namespace's CloudSnapshots (only the schedule makes any)."""
    listing = stack.custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, SNAPSHOT_PLURAL)
    return cast(list[dict[str, Any]], cast(dict[str, Any], listing)["items"])


def slot_of(stack: Stack) -> datetime | None:
    """The schedule's lastScheduleTime, once it has run."""
    obj = cast(
        dict[str, Any],
        stack.custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, SCHEDULE_PLURAL, NAME),
    )
    text = (obj.get("status") or {}).get("lastScheduleTime")
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def run(stack: Stack, count: int, timeout: float) -> dict[str, Any]:
    """Apply the schedule, wait for its first slot and for every child Ready; the figures."""
    stack.cluster.kubectl("create", "namespace", NAMESPACE)
    disks = stack.add_disks(count)
    operator = stack.start_operator(NAMESPACE)
    try:
        calls_before = stack.evs_calls()
        throttled_before = stack.throttled()
        stack.cluster.kubectl("apply", "-f", "-", input=json.dumps(schedule(disks)))
        deadline = time.monotonic() + timeout
        slot = None
        while slot is None:
            if time.monotonic() > deadline:
                raise TimeoutError("the schedule made no run")
            time.sleep(POLL_SECONDS)
            slot = slot_of(stack)
        suspend = json.dumps({"spec": {"suspend": True}})
        stack.cluster.kubectl(
            "patch", "csnapsched", NAME, "-n", NAMESPACE, "--type=merge", "-p", suspend
        )
        all_made = all_ready = None
        while all_ready is None:
            if time.monotonic() > deadline:
                raise TimeoutError("not every child became Ready")
            time.sleep(POLL_SECONDS)
            listed = children(stack)
            elapsed = time.time() - slot.timestamp()
            if all_made is None and len(listed) >= count:
                all_made = elapsed
            if len(listed) >= count and all(is_ready(c) for c in listed):
                all_ready = elapsed
        calls = stack.evs_calls() - calls_before
        throttled = stack.throttled() - throttled_before
        return {
            "sources": count,
            "children": len(listed),
            "seconds_from_slot_to_all_children": round(all_made or 0.0, 1),
            "seconds_from_slot_to_all_ready": round(all_ready, 1),
            "evs_calls_per_snapshot": {op: round(n / count, 2) for op, n in sorted(calls.items())},
            "evs_calls_total": sum(calls.values()),
            "throttled_429": dict(throttled),
        }
    finally:
        operator.process.stop()


def main(argv: list[str] | None = None) -> int:
    """`python -m bench.schedule [--count N]`."""
    args = round_parser(__doc__, count=500, counted="sources").parse_args(argv)
    workdir = args.dir or Path(tempfile.mkdtemp(prefix="cloudsnap-bench-schedule-"))
    with stack_from_options(args, workdir) as stack:
        result = run(stack, args.count, args.timeout)
        result["rate_limit"] = stack.rate_limit
        result["throttle"] = args.throttle
    write_result(workdir, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
