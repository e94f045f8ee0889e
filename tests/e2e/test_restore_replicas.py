"""CloudSnapshotRestores under two operator replicas whose leader is SIGKILLed while EVS makes
their disks: the next leader finishes every restore with exactly one disk each.

The simulator holds each disk create the leader sends, unanswered, and applies it after the leader
is gone: the first half a second after it arrived (before the standby leads, so the standby finds
the disk by its owner tag), the others ten seconds after (after the standby sent the same create
again under the same idempotency token, which EVS answers with the first request's job). The
leader-election tests' short Lease timings (3 s, 2 s, 0.5 s) keep the handover to seconds.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hack.cluster import Cluster
from hack.sandbox import wait_until

from cloudsnap.api.constants import GROUP, OWNER_UID_METADATA_KEY, RESTORE_PLURAL, VERSION
from tests.e2e.test_leader_election import SETTINGS, TIMING
from tests.harness.replicas import Pair, e2e_pair, is_ready

TIMEOUT = 60.0
RESTORES = [f"restore-{i}" for i in range(4)]
EARLY, LATE = 1, len(RESTORES) - 1
"""Creates EVS applies before the standby leads, and after it sent them again."""
EARLY_SECONDS, LATE_SECONDS = 0.5, 10.0


@pytest.fixture
def pair(
    cluster: Cluster, cloudsnap_crds: object, namespace: str, tmp_path: Path
) -> Iterator[Pair]:
    """Replica a (leading) and replica b (standby) watching the test's namespace."""
    with e2e_pair(cluster, tmp_path, namespace, timing=TIMING, settings=SETTINGS) as started:
        yield started


def held_creates(count: int, apply_after_seconds: float) -> dict[str, Any]:
    """`count` disk creates left unanswered until the client leaves, applied after a while."""
    return {
        "operation": "create_volume",
        "kind": "late_apply",
        "then": "hang",
        "apply_after_seconds": apply_after_seconds,
        "count": count,
    }


def restore(pair: Pair, name: str) -> dict[str, Any]:
    """A restore of the CloudSnapshot "source" to a new disk with a claim of its own name."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "CloudSnapshotRestore",
        "metadata": {"name": name, "namespace": pair.namespace},
        "spec": {"snapshotName": "source", "newVolume": {"claim": {"name": name}}},
    }


def restores(pair: Pair) -> list[dict[str, Any]]:
    listing = pair.custom.list_namespaced_custom_object(
        GROUP, VERSION, pair.namespace, RESTORE_PLURAL
    )
    return list(listing["items"])


def test_a_leader_killed_while_disks_are_made_leaves_one_disk_per_restore(
    pair: Pair, volume_names: list[str]
) -> None:
    leader, standby = pair.replicas
    (disk,) = pair.admin.add_volumes(1)
    pair.create("source", disk)
    pair.wait_ready(["source"], TIMEOUT)
    pair.admin.set_faults([held_creates(EARLY, EARLY_SECONDS), held_creates(LATE, LATE_SECONDS)], 0)
    for name in RESTORES:
        pair.custom.create_namespaced_custom_object(
            GROUP, VERSION, pair.namespace, RESTORE_PLURAL, restore(pair, name)
        )
    wait_until(
        lambda: pair.calls(leader)["create_volume"] >= len(RESTORES),
        timeout=TIMEOUT,
        what="every disk create held at the simulator",
    )
    held_at = time.monotonic()
    leader.kill()
    pair.admin.clear_faults()  # the creates already held are still applied, each in its time

    def all_ready() -> list[dict[str, Any]] | None:
        listed = restores(pair)
        return listed if len(listed) == len(RESTORES) and all(map(is_ready, listed)) else None

    listed = wait_until(all_ready, timeout=TIMEOUT + TIMING[0], what="every restore Ready")
    volume_names.extend(r["status"]["persistentVolumeName"] for r in listed)
    assert pair.holder() == standby.identity
    assert pair.calls(standby)["create_volume"] == LATE, (
        "found the disk EVS had made, or sent again"
    )
    # EVS applies the last held creates on its own clock; each must find its token answered.
    wait_until(
        lambda: time.monotonic() > held_at + LATE_SECONDS,
        timeout=LATE_SECONDS + 1,
        what="the held creates applied",
    )
    uids = {r["metadata"]["uid"]: r["status"]["volumeID"] for r in listed}
    disks = [v for v in pair.admin.volumes() if v["metadata"].get(OWNER_UID_METADATA_KEY)]
    per_restore = Counter(v["metadata"][OWNER_UID_METADATA_KEY] for v in disks)
    assert per_restore == Counter(dict.fromkeys(uids, 1)), f"disks per restore: {per_restore}"
    assert {v["metadata"][OWNER_UID_METADATA_KEY]: v["id"] for v in disks} == uids
