"""`python -m bench.restore`: N CloudSnapshotRestores applied at once, timed and costed.

One Ready CloudSnapshot of a fresh disk is restored N times at once, each restore to a new disk
with a claim, against the whole real stack (control plane with its PersistentVolume binder, EVS
simulator and operator as processes). The simulator's gateway throttles like EVS's (`--throttle`,
by default the limits below) and takes `--volume-create-seconds` to make a disk. The benchmark
reports the seconds from the apply until every restore is Ready (its claim Bound), the EVS calls
per restore by operation and the 429s among them (the simulator's own count), the Kubernetes
writes per restore by verb and resource (the API server's `apiserver_request_total`, less the
benchmark's own creates), and checks that the simulator holds exactly one disk per restore UID.
Not part of `make test`; minutes long.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any

from tests.harness.replicas import is_ready

from bench.scale import (
    Stack,
    Watcher,
    _name,
    _per,
    api_writes,
    operator_alive,
    operator_metrics,
    round_parser,
    stack_from_options,
    write_result,
)
from cloudsnap.api.constants import GROUP, OWNER_UID_METADATA_KEY, RESTORE_PLURAL, VERSION

NAMESPACE = "bench-restore"
SOURCE = "source"
DEFAULT_THROTTLE = "create_volume=10,show_volume=20,list_volumes=20,show_job=20,show=20"
"""The gateway limits a run uses unless told otherwise: per access key and operation, calls per
second (burst one second's worth)."""
OPERATOR_WRITES = frozenset(
    {
        f"PATCH {RESTORE_PLURAL}",
        f"PATCH {RESTORE_PLURAL}/status",
        "POST events",
        "POST persistentvolumes",
        "POST persistentvolumeclaims",
        "POST cloudsnapshots",
    }
)
"""What the restore controller writes; the other writes of a run are the PersistentVolume
binder's (kube-controller-manager binding each claim: PUTs of volumes, claims and statuses)."""


def restore(index: int) -> dict[str, Any]:
    """Restore number `index` of the source, to a new disk with a claim, deleted with it."""
    name = f"restore-{index:04d}"
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "CloudSnapshotRestore",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "snapshotName": SOURCE,
            "newVolume": {"claim": {"name": name}},
            "deletionPolicy": "Delete",
        },
    }


def list_restores(stack: Stack, **kwargs: Any) -> Any:
    """The namespace's restores (a watch of them with watch=True)."""
    return stack.custom.list_namespaced_custom_object(
        GROUP, VERSION, NAMESPACE, RESTORE_PLURAL, **kwargs
    )


def disks_per_restore(stack: Stack) -> Counter[str]:
    """The simulator's disks by the restore UID they are tagged with."""
    volumes = stack.loop.run(stack.admin.volumes())
    return Counter(
        uid
        for volume in volumes
        if (uid := (volume.get("metadata") or {}).get(OWNER_UID_METADATA_KEY))
    )


def run(stack: Stack, count: int, timeout: float) -> dict[str, Any]:
    """Make the source Ready, apply `count` restores at once, wait until all are Ready; the
    figures."""
    stack.cluster.kubectl("create", "namespace", NAMESPACE)
    (disk,) = stack.add_disks(1)
    operator = stack.start_operator(NAMESPACE)
    try:
        source = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "CloudSnapshot",
            "metadata": {"name": SOURCE, "namespace": NAMESPACE},
            "spec": {"volumeID": disk},
        }
        stack.cluster.kubectl("create", "-f", "-", input=json.dumps(source))
        stack.cluster.kubectl(
            "wait",
            "csnap",
            SOURCE,
            "-n",
            NAMESPACE,
            "--for=condition=Ready",
            f"--timeout={timeout:.0f}s",
        )
        watcher = Watcher(stack.kube, partial(list_restores, stack), key=_name, passed=is_ready)
        calls_before, throttled_before = stack.evs_calls(), stack.throttled()
        writes_before = api_writes(stack.cluster)
        manifest = {"apiVersion": "v1", "kind": "List", "items": [restore(i) for i in range(count)]}
        started = time.time()
        stack.cluster.kubectl("create", "-f", "-", input=json.dumps(manifest))
        applied = time.time() - started
        ready_at = watcher.follow(
            lambda: watcher.passed == count,
            timeout=timeout,
            what=f"{count} restores Ready",
            check=lambda: operator_alive(operator),
        )
        ready = ready_at - started
        calls = stack.evs_calls() - calls_before
        throttled = stack.throttled() - throttled_before
        writes = api_writes(stack.cluster) - writes_before
        writes[f"POST {RESTORE_PLURAL}"] -= count  # the benchmark's own creates
        writes = +writes
        disks = disks_per_restore(stack)
        listed = stack.kube.sanitize_for_serialization(list_restores(stack))["items"]
        uids = [r["metadata"]["uid"] for r in listed]
        per_uid = Counter(disks[uid] for uid in uids)
        if per_uid != Counter({1: count}):
            raise AssertionError(f"disks per restore (disks: restores): {dict(per_uid)}")
        return {
            "restores": count,
            "seconds_to_apply": round(applied, 1),
            "seconds_to_all_ready": round(ready, 1),
            "ready_per_second": round(count / ready, 2),
            "disks_per_restore": 1,
            "evs_calls_per_restore": _per(calls, count),
            "evs_calls_total": calls.total(),
            "throttled_429": dict(throttled),
            "kubernetes_writes_per_restore": _per(writes, count),
            "operator_writes_per_restore": _per(
                Counter({k: n for k, n in writes.items() if k in OPERATOR_WRITES}), count
            ),
            "operator": operator_metrics(operator),
        }
    finally:
        operator.process.stop()


def main(argv: list[str] | None = None) -> int:
    """`python -m bench.restore [--count N]` (what `make bench-restore` runs)."""
    parser = round_parser(__doc__, count=100, counted="restores", throttle=DEFAULT_THROTTLE)
    parser.add_argument(
        "--volume-create-seconds", type=float, default=5.0, help="simulated disk create time"
    )
    args = parser.parse_args(argv)
    workdir = args.dir or Path(tempfile.mkdtemp(prefix="cloudsnap-bench-restore-"))
    load_at_start = os.getloadavg()
    with stack_from_options(
        args, workdir, volume_create_seconds=args.volume_create_seconds
    ) as stack:
        result = run(stack, args.count, args.timeout)
    result["throttle"] = args.throttle
    result["volume_create_seconds"] = args.volume_create_seconds
    result["machine"] = {
        "cpus": os.cpu_count(),
        "loadavg_at_start": load_at_start,
        "loadavg_at_end": os.getloadavg(),
    }
    write_result(workdir, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
