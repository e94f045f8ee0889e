"""`make chaos`: N CloudSnapshots created and deleted by two replicas while the leader keeps dying.

Two operator replicas (bench/ha.py's harness) against the real control plane and the EVS
simulator with faults on (about 10 % of EVS requests answered 5xx, 5 % 429, 1 % applied but their
answer lost). The N CloudSnapshots are applied in waves; after each wave but the last the current
leader is SIGKILLed (at a random point of its creates: once it has sent a random number of them)
and started again under a new identity, so two replicas always run. Between waves the ordinary
operations a user makes are mixed in: renames (a merge patch of spec.name), `kubectl replace`
with a manifest that lacks the finalizer, and delete-then-create under the same name (a new UID).
Once all N are Ready they are deleted in waves the same way, killing the leader between waves.

Invariants, checked from the outside (the simulator's records of every snapshot ever made, and
the CloudSnapshots as the API server has them):

- ready: every one of the N resources Ready at the end of the creates;
- duplicates: owner UIDs with more than one snapshot ever made for them (deleted ones included),
  at the end of the creates;
- wrong_id: resources whose status.snapshotID names a snapshot that is missing, gone, tagged with
  another UID, or of another disk than spec.volumeID;
- leaks: snapshots still alive after all deletes (every resource here has policy Delete, the
  class's, including those deleted and re-created along the way);
- stuck: resources not gone when the deletes' deadline passed.

Two more are checked before the deletes begin, and also fail the run (they are listed in the
JSON result): every live resource carries the finalizer again (a few Ready ones are also replaced
without it then, with no kill to follow, so the operator must restore it by itself), and every
rename has reached its EVS snapshot.

The last line of the output is the verdict, and the exit status is non-zero on any miss:
`chaos: N=… ready=N/N duplicates=0 wrong_id=0 leaks=0 stuck=0 time_ready=…s time_gone=…s`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from hack.sandbox import wait_until
from kubernetes.client.exceptions import ApiException
from tests.harness.replicas import (
    FINALIZER,
    Pair,
    duplicate_details,
    is_ready,
    operator_environment,
    owner_of,
    wrong_ids,
)

from bench.ha import add_pair_arguments, begin_run, pair_on_own_cluster

# Shorter than the defaults (15/10/2) so that fifteen handovers take minutes, not a quarter hour;
# `--timing 15 10 2` runs the defaults.
CHAOS_TIMING = (6.0, 4.0, 1.0)
# Faster polls and retries than the defaults, and a 20 s late-create window instead of 300 s:
# the simulator applies a lost-response create at once (no late_apply rule here), and every
# deletion of a resource whose create went unanswered waits out that window.
CHAOS_SETTINGS = operator_environment(
    poll=1, backoff_base=0.5, backoff_max=5, blocked_retry=10, create_doubt=20, evs_timeout=10
)
# Overall shares of EVS requests (any operation) that fail: the simulator tries its rules in
# order and the first that fires wins, so each rule's rate is its share of what is left.
FAULT_SHARES = (
    ("error", 500, 0.05),
    ("error", 503, 0.05),
    ("error", 429, 0.05),
    ("lost_response", None, 0.01),
)
# Snapshots per disk: EVS allows 7, and a re-created resource needs a slot while its
# predecessor's snapshot is still being deleted.
PER_DISK = 4
APPLY_THREADS = 8


def fault_rules() -> list[dict[str, Any]]:
    """About 10 % 5xx, 5 % 429 and 1 % lost responses, overall."""
    rules: list[dict[str, Any]] = []
    left = 1.0
    for kind, status, share in FAULT_SHARES:
        rule: dict[str, Any] = {"operation": "*", "kind": kind, "rate": round(share / left, 6)}
        if status is not None:
            rule["status"] = status
        rules.append(rule)
        left -= share
    return rules


@dataclass(frozen=True)
class ChaosConfig:
    count: int = 200
    seed: int = 0
    create_kills: int = 10
    delete_kills: int = 5
    renames: int | None = None
    """Default N/10; replaces and recreates default N/20 (at least one each)."""
    replaces: int | None = None
    recreates: int | None = None
    faults: bool = True
    timeout: float = 900.0
    """Deadline of the waits for all Ready and for all gone."""


@dataclass
class ChaosResult:
    count: int
    seed: int
    ready: int = 0
    duplicates: int = 0
    wrong_id: int = 0
    leaks: int = 0
    stuck: int = 0
    time_ready: float = float("nan")
    time_gone: float = float("nan")
    kills: dict[str, int] = field(default_factory=lambda: {"create": 0, "delete": 0})
    ops: Counter[str] = field(default_factory=Counter)
    details: dict[str, Any] = field(default_factory=dict)
    wanted_kills: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return (
            self.ready == self.count
            and self.duplicates == 0
            and self.wrong_id == 0
            and self.leaks == 0
            and self.stuck == 0
            and all(self.kills[phase] >= n for phase, n in self.wanted_kills.items())
            and not self.details.get("without_finalizer_at_end_of_creates")
            and not self.details.get("renames_not_applied")
        )

    def line(self) -> str:
        return (
            f"chaos: N={self.count} ready={self.ready}/{self.count}"
            f" duplicates={self.duplicates} wrong_id={self.wrong_id} leaks={self.leaks}"
            f" stuck={self.stuck} time_ready={self.time_ready:.1f}s"
            f" time_gone={self.time_gone:.1f}s"
        )


def waves(names: Sequence[str], count: int) -> list[list[str]]:
    """`names` cut into `count` consecutive waves of nearly equal size."""
    size = len(names) / count
    return [list(names[round(i * size) : round((i + 1) * size)]) for i in range(count)]


class Chaos:
    """One run: the resources, the operations, the kills and the checks."""

    def __init__(self, pair: Pair, config: ChaosConfig, say: Callable[[str], None]) -> None:
        self.pair = pair
        self.config = config
        self.say = say
        self.rng = random.Random(config.seed)
        self.result = ChaosResult(config.count, config.seed)
        self.result.wanted_kills = {"create": config.create_kills, "delete": config.delete_kills}
        self.names = [f"c-{i:04d}" for i in range(config.count)]
        self.volume: dict[str, str] = {}
        self.uids: set[str] = set()
        """Every UID made here; all with policy Delete."""
        self.recreating: dict[str, str] = {}
        """Name -> UID deleted, waiting to be created again once the old one is gone."""
        self.replaced: set[str] = set()
        self.replaced_uids: set[str] = set()
        self.renamed: dict[str, str] = {}
        lease = pair.timing[0]
        self.leader_timeout = 4 * lease + 60

    # -- operations ---------------------------------------------------------------------------

    def create(self, name: str) -> None:
        created = self.pair.create(name, self.volume[name])
        self.uids.add(str(created["metadata"]["uid"]))

    def wave(
        self, apply: Callable[[str], object], names: Sequence[str], kill: tuple[str, str] | None
    ) -> None:
        """Apply `apply` to every name from a pool of threads; with `kill` = (phase, operation),
        meanwhile SIGKILL the leader once it has sent some of that wave's `operation` calls."""
        before = self.pair.admin.calls_by_agent()
        with ThreadPoolExecutor(APPLY_THREADS, thread_name_prefix="chaos-apply") as pool:
            futures = [pool.submit(apply, name) for name in names]
            if kill is not None:
                # From this (main) thread: a replica started from a pool thread would die with it.
                self.kill_leader(kill[0], kill[1], len(names), before)
            for future in futures:
                future.result()

    def rename(self, name: str) -> None:
        new = f"{name}-renamed-{self.rng.randrange(10**6)}"
        self.pair.patch_spec(name, {"name": new})
        self.renamed[name] = new
        self.result.ops["rename"] += 1

    def replace_without_finalizer(self, name: str) -> None:
        """`kubectl replace` with the object as read, minus the finalizer (as a user re-applying
        their own manifest with replace would send it)."""
        for _ in range(10):
            obj = self.pair.get(name)
            if obj is None:
                return
            obj.pop("status", None)
            meta = obj["metadata"]
            had_finalizer = FINALIZER in (meta.get("finalizers") or [])
            meta.pop("managedFields", None)
            meta["finalizers"] = [f for f in meta.get("finalizers") or [] if f != FINALIZER]
            done = self.pair.cluster.kubectl(
                "-n", self.pair.namespace, "replace", "-f", "-", input=json.dumps(obj), check=False
            )
            if done.returncode == 0:
                self.replaced.add(name)
                self.replaced_uids.add(str(meta["uid"]))
                self.result.ops["replace_without_finalizer"] += 1
                # Whether the operator had put its finalizer on before the replace dropped it.
                self.result.ops["replace_dropped_the_finalizer"] += had_finalizer
                return
            if "the object has been modified" not in done.stderr:
                raise RuntimeError(f"kubectl replace {name}: {done.stderr}")
        raise RuntimeError(f"kubectl replace {name}: conflicts ten times in a row")

    def start_recreate(self, name: str) -> None:
        obj = self.pair.get(name)
        if obj is None:
            return
        self.pair.delete(name)
        self.recreating[name] = str(obj["metadata"]["uid"])
        self.result.ops["delete_recreate"] += 1

    def progress_recreates(self) -> None:
        """Create again each name whose predecessor is gone."""
        for name, old_uid in list(self.recreating.items()):
            current = self.pair.get(name)
            if current is None:
                try:
                    self.create(name)
                except ApiException as exc:
                    if exc.status != 409:
                        raise
                    continue
                del self.recreating[name]
            elif current["metadata"]["uid"] != old_uid:
                del self.recreating[name]

    def plan_operations(self, wave_count: int) -> dict[int, list[str]]:
        """Which operations run after which wave (on resources of earlier waves)."""
        n = self.config.count
        amounts = {
            "rename": self.config.renames if self.config.renames is not None else max(1, n // 10),
            "replace": (
                self.config.replaces if self.config.replaces is not None else max(1, n // 20)
            ),
            "recreate": (
                self.config.recreates if self.config.recreates is not None else max(1, n // 20)
            ),
        }
        plan: dict[int, list[str]] = {}
        for op, amount in amounts.items():
            for _ in range(amount):
                # After a wave, on resources of that wave or earlier ones.
                plan.setdefault(self.rng.randrange(wave_count), []).append(op)
        return plan

    def run_operations(self, ops: Sequence[str], created: Sequence[str]) -> None:
        candidates = [n for n in created if n not in self.recreating]
        for op in ops:
            if not candidates:
                return
            name = self.rng.choice(candidates)
            if op == "rename":
                self.rename(name)
            elif op == "replace":
                self.replace_without_finalizer(name)
            else:
                candidates.remove(name)
                self.start_recreate(name)

    def renames_pending(self) -> list[str]:
        """Renamed resources whose snapshot does not carry the spec's name yet."""
        names = {snap["id"]: snap.get("name") for snap in self.pair.admin.snapshots()}
        pending = []
        for name, wanted in self.renamed.items():
            if name in self.recreating:
                continue
            obj = self.pair.get(name) or {}
            if (obj.get("spec") or {}).get("name") != wanted:
                continue  # deleted and created again since: the rename went with the old one
            snapshot_id = (obj.get("status") or {}).get("snapshotID")
            if names.get(snapshot_id) != wanted:
                pending.append(f"{name}: EVS has {names.get(snapshot_id)!r}, spec {wanted!r}")
        return pending

    def replace_ready_ones(self) -> None:
        """`kubectl replace` without the finalizer on a few Ready resources with no kill to
        follow: the operator must put its finalizer back by itself, and soon, since a delete
        meanwhile would leave the snapshot behind."""
        ready = [item["metadata"]["name"] for item in self.pair.items() if is_ready(item)]
        chosen = self.rng.sample(ready, min(len(ready), max(1, self.config.count // 40)))
        for name in chosen:
            self.replace_without_finalizer(name)

        def protected() -> bool:
            return all(
                FINALIZER
                in ((self.pair.get(name) or {}).get("metadata", {}).get("finalizers") or [])
                for name in chosen
            )

        with contextlib.suppress(TimeoutError):
            wait_until(protected, timeout=30, what="the finalizer back on replaced Ready ones")

    # -- kills --------------------------------------------------------------------------------

    def kill_leader(
        self, phase: str, operation: str, span: int, before: dict[str, dict[str, int]]
    ) -> None:
        """Once the leader has sent a random number (0 .. span/2) of `operation` calls more than
        in `before` (the per-agent counts when the wave began), SIGKILL it and start it again (a
        new identity, a standby now)."""
        pair = self.pair
        leader = pair.wait_leader(self.leader_timeout)
        base = before.get(leader.agent, {}).get(operation, 0)
        target = self.rng.randint(0, max(1, span // 2))
        try:
            wait_until(
                lambda: pair.calls(leader)[operation] >= base + target,
                timeout=2 * pair.timing[0] + 20,
                what=f"{leader.identity} sending {target} {operation} calls",
            )
            why = f"after {target} more {operation} calls"
        except TimeoutError:
            why = f"{operation} calls never reached +{target}"
        killed = leader.identity
        leader.kill()
        self.result.kills[phase] += 1
        leader.start()
        self.say(
            f"  killed leader {killed} ({why}); restarted as {leader.identity};"
            f" kills so far {dict(self.result.kills)}"
        )

    # -- phases -------------------------------------------------------------------------------

    def run(self) -> ChaosResult:
        pair, config, result = self.pair, self.config, self.result
        if config.faults:
            pair.admin.set_faults(fault_rules(), seed=config.seed)
        disks = pair.admin.add_volumes(math.ceil(config.count / PER_DISK))
        self.volume = {name: disks[i // PER_DISK] for i, name in enumerate(self.names)}

        create_waves = waves(self.names, config.create_kills + 1)
        plan = self.plan_operations(len(create_waves))
        self.say(f"creating {config.count} in {len(create_waves)} waves ...")
        started = time.monotonic()
        created: list[str] = []
        for index, names in enumerate(create_waves):
            kill = ("create", "create") if index < config.create_kills else None
            self.wave(self.create, names, kill)
            created += names
            self.run_operations(plan.get(index, []), created)
            self.progress_recreates()
        try:
            wait_until(
                lambda: self.progress_recreates() or not self.recreating,
                timeout=config.timeout,
                what="re-created names",
            )
            pair.wait_ready(self.names, max(1.0, config.timeout - (time.monotonic() - started)))
        except TimeoutError as exc:
            self.say(f"  {exc}")
        result.time_ready = time.monotonic() - started
        self.replace_ready_ones()
        with contextlib.suppress(TimeoutError):
            wait_until(
                lambda: not self.renames_pending(), timeout=60, what="renames applied in EVS"
            )
        items = pair.items()
        result.ready = sum(
            1 for item in items if is_ready(item) and item["metadata"]["name"] in self.names
        )
        snapshots = pair.admin.snapshots()
        duplicates = duplicate_details(snapshots, time.time())
        result.duplicates = len(duplicates)
        wrong = wrong_ids(items, snapshots)
        result.wrong_id = len(wrong)
        unprotected = [
            item["metadata"]["name"]
            for item in items
            if FINALIZER not in (item["metadata"].get("finalizers") or [])
        ]
        result.details.update(
            {
                "duplicates": duplicates,
                "wrong_id": wrong,
                "not_ready": sorted(
                    item["metadata"]["name"] for item in items if not is_ready(item)
                ),
                "without_finalizer_at_end_of_creates": sorted(unprotected),
                "renames_not_applied": self.renames_pending(),
                "replaced_without_finalizer": sorted(self.replaced),
            }
        )
        self.say(
            f"  creates done in {result.time_ready:.1f}s: ready {result.ready}/{config.count},"
            f" owners with >1 snapshot {result.duplicates}, wrong ids {result.wrong_id},"
            f" live resources without the finalizer {len(unprotected)}, renames not applied"
            f" {len(result.details['renames_not_applied'])} of {len(self.renamed)}"
        )

        delete_waves = waves(self.names, config.delete_kills + 1)
        self.say(f"deleting them in {len(delete_waves)} waves ...")
        started = time.monotonic()
        for index, names in enumerate(delete_waves):
            kill = ("delete", "delete") if index < config.delete_kills else None
            self.wave(self.pair.delete, names, kill)
        try:
            wait_until(lambda: not pair.items(), timeout=config.timeout, what="all resources gone")
        except TimeoutError as exc:
            self.say(f"  {exc}")
        result.time_gone = time.monotonic() - started
        left = pair.items()
        result.stuck = len(left)
        live = [snap for snap in pair.admin.snapshots() if not snap.get("deleted")]
        result.leaks = len(live)
        result.details.update(
            {
                "stuck": [item["metadata"]["name"] for item in left],
                "leaked": [
                    {"id": s["id"], "owner": owner_of(s), "status": s.get("status")} for s in live
                ],
                "leaked_owned_by_replaced": sorted(
                    {owner_of(s) or "" for s in live} & self.replaced_uids
                ),
                "evs_calls_by_agent": pair.admin.calls_by_agent(),
            }
        )
        self.say(
            f"  deletes done in {result.time_gone:.1f}s: stuck {result.stuck}, live snapshots"
            f" left {result.leaks}"
        )
        return result


def run_chaos(pair: Pair, config: ChaosConfig, say: Callable[[str], None] = print) -> ChaosResult:
    """Run the chaos scenario on a started Pair; the Pair is left running for the caller."""
    return Chaos(pair, config, say).run()


def main(argv: list[str] | None = None) -> int:
    """`python -m bench.chaos [--count N] [--seed S]` (what `make chaos` runs)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=200, help="CloudSnapshots (200)")
    parser.add_argument("--seed", type=int, default=1, help="randomness of kills, ops and faults")
    parser.add_argument("--create-kills", type=int, default=10, help="leader kills during creates")
    parser.add_argument("--delete-kills", type=int, default=5, help="leader kills during deletes")
    parser.add_argument("--no-faults", action="store_true", help="no simulator faults")
    add_pair_arguments(parser, timing=CHAOS_TIMING, timeout=900.0)
    args = parser.parse_args(argv)
    workdir, output, timing = begin_run(args, "chaos")
    config = ChaosConfig(
        count=args.count,
        seed=args.seed,
        create_kills=args.create_kills,
        delete_kills=args.delete_kills,
        faults=not args.no_faults,
        timeout=args.timeout,
    )
    shortened = "" if timing == (15.0, 10.0, 2.0) else " (shortened from the default 15/10/2)"
    print(
        f"chaos seed {config.seed}: lease timings {timing[0]:g}/{timing[1]:g}/{timing[2]:g} s"
        f"{shortened}; operator settings {CHAOS_SETTINGS};"
        f" faults {fault_rules() if config.faults else 'off'}",
        flush=True,
    )
    with pair_on_own_cluster(
        workdir,
        "chaos",
        timing=timing,
        settings=CHAOS_SETTINGS,
        create_seconds=1.0,
        delete_seconds=0.5,
        log_level="INFO",
    ) as pair:
        result = run_chaos(pair, config, lambda text: print(text, flush=True))
    report = {
        "config": asdict(config),
        "timing": timing,
        "settings": CHAOS_SETTINGS,
        "result": {
            **asdict(result),
            "ops": dict(result.ops),  # asdict would rebuild the Counter from its items
            "ok": result.ok,
            "line": result.line(),
        },
    }
    output.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"kills {result.kills}, operations {dict(result.ops)}; result {output}; logs {workdir}")
    print(result.line(), flush=True)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
