"""`make chaos` in small, as part of `make test`: 20 CloudSnapshots created and deleted by two
replicas while the leader is SIGKILLed (twice during the creates, once during the deletes),
with EVS faults on (about 10 % 5xx, 5 % 429, 1 % lost responses) and renames, replaces without
the finalizer and delete-then-create under the same name mixed in. The invariants are the big
run's (bench/chaos.py): all Ready, no owner UID with two snapshots, no status naming a snapshot
that is not its own, nothing left in EVS after the deletes, nothing stuck.
"""

from __future__ import annotations

from pathlib import Path

from bench.chaos import CHAOS_SETTINGS, ChaosConfig, run_chaos
from hack.cluster import Cluster

from tests.harness.replicas import e2e_pair, operator_environment

TIMING = (3.0, 2.0, 0.5)
# The deletions of resources whose create went unanswered wait out this window.
SETTINGS = {**CHAOS_SETTINGS, **operator_environment(create_doubt=5)}


def test_chaos_small(
    cluster: Cluster, cloudsnap_crds: object, namespace: str, tmp_path: Path
) -> None:
    config = ChaosConfig(count=20, seed=20, create_kills=2, delete_kills=1, timeout=120.0)
    with e2e_pair(
        cluster, tmp_path, namespace, timing=TIMING, settings=SETTINGS, log_level="INFO"
    ) as pair:
        result = run_chaos(pair, config, say=print)

    print(result.line())
    details = result.details
    assert result.kills == {"create": 2, "delete": 1}
    assert result.ops["rename"] >= 1
    assert result.ops["replace_without_finalizer"] >= 1
    assert result.ops["delete_recreate"] >= 1
    assert result.ready == config.count, details["not_ready"]
    assert result.duplicates == 0, details["duplicates"]
    assert result.wrong_id == 0, details["wrong_id"]
    assert details["without_finalizer_at_end_of_creates"] == []
    assert result.leaks == 0, details["leaked"]
    assert result.stuck == 0, details["stuck"]
    assert result.ok, result.line()
