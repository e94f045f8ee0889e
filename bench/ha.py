"""`make ha-trials`: leader election end to end, two operator replicas against the real stack.

Two `cloudsnap-operator run` processes share one Lease, a real control plane (etcd +
kube-apiserver) and the EVS simulator. Each replica runs under its own identity, which its EVS
calls carry as `User-Agent: cloudsnap/<identity>`, so the simulator's per-agent counts say which
replica called what. A killed replica is started again under a new identity (a new candidate, as
a restarted pod would be), so the counts of every process are separate.

Four experiments, with the default timings (15/10/2 s) unless told otherwise:

- SIGKILL the leader: seconds from the kill until the standby took the Lease, made its first EVS
  call (its first step: a new leader looks at every resource again), and made a CloudSnapshot
  applied right after the kill Ready; and that no owner UID ever has two snapshots.
- SIGTERM the leader: the same figures for a clean shutdown, which releases the Lease.
- SIGSTOP the leader while it is creating snapshots, until the standby has taken over, then SIGCONT
  it: the EVS calls (mutating and reads) and Kubernetes writes the old leader made after it woke.
  Kubernetes writes are attributed per replica from the replica's own log: the replicas run under
  a small shim that logs every non-GET request of the Kubernetes client and of kopf before it is
  sent (nothing else of the operator changes); the step lines ("<ns>/<name>: <outcome>, ...",
  DEBUG) and `cloudsnap_reconciles_total` are counted too. Log lines after the byte offset the log
  had while the process was stopped were written after it woke.
- Delete the Lease (`--deletion-trials`), with the standby made to win it while the leader
  still acts: the standby SIGSTOPped until its next try is due, the Lease deleted right after a
  renewal of the leader, the standby SIGCONTed (it finds no Lease and creates it at once, about a
  retry period before the leader's next renewal would find it), then `--deletion-batch`
  CloudSnapshots created at once, EVS answering each create `--create-latency` seconds late. The
  resources with more than one EVS snapshot, and when all were Ready.

Each trial's figures go to a JSON file; a table summarises them. The two-replica harness
(`running_pair`, `Pair`, `Replica`) is tests/harness/replicas.py, shared with bench/chaos.py and the
end-to-end tests.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from hack.cluster import Cluster, ControlPlane, tool_env
from hack.sandbox import (
    wait_until,
)
from tests.harness.replicas import (
    DEFAULT_TIMING,
    MUTATING,
    OPERATOR_NAMESPACE,
    READS,
    REPO,
    Obj,
    Pair,
    Replica,
    audited_writes,
    deletion_trial,
    duplicate_details,
    duplicate_owners,
    is_lease_write,
    is_ready,
    owner_of,
    running_pair,
    stale_statuses,
    step_lines,
    writes_while_standby,
    wrong_ids,
)


def follow_handover(
    pair: Pair,
    successor: Replica,
    before: Counter[str],
    started: float,
    *,
    fresh: str | None,
    timeout: float,
    exiting: Replica | None = None,
) -> dict[str, float]:
    """Seconds after `started` at which `successor` held the Lease, made its first EVS call, and
    (if given) CloudSnapshot `fresh` turned Ready; also when `exiting` exited."""
    marks: dict[str, float] = {}
    wanted = {"lease", "first_evs_call"} | ({"fresh_ready"} if fresh else set())
    wanted |= {"exited"} if exiting is not None else set()
    deadline = started + timeout
    while not wanted <= marks.keys():
        now = time.monotonic()
        if "lease" not in marks and pair.holder() == successor.identity:
            marks["lease"] = now - started
        if "first_evs_call" not in marks and pair.calls(successor).total() > before.total():
            marks["first_evs_call"] = now - started
        if fresh and "fresh_ready" not in marks and is_ready(pair.get(fresh) or {}):
            marks["fresh_ready"] = now - started
        if exiting is not None and "exited" not in marks and not exiting.alive:
            marks["exited"] = now - started
        if not successor.alive:
            raise RuntimeError(
                f"{successor.identity} exited:\n{successor.process.log_text()[-3000:]}"
            )
        if now > deadline:
            raise TimeoutError(
                f"handover to {successor.identity} incomplete after {timeout:.0f}s: {marks}"
            )
        time.sleep(0.05)
    return {key: round(value, 2) for key, value in marks.items()}


def handover_trial(pair: Pair, kind: str, index: int, timeout: float) -> Obj:
    """SIGKILL or SIGTERM the leader; time the standby's takeover; restart the old one."""
    leader = pair.wait_leader(timeout)
    standby = pair.other(leader)
    volume = pair.admin.add_volumes(1)[0]
    standby_before = pair.calls(standby)
    fresh = f"{kind}-{index}"
    started = time.monotonic()
    if kind == "kill":
        leader.kill()
    else:
        leader.signal(signal.SIGTERM)
    pair.create(fresh, volume)
    marks = follow_handover(
        pair,
        standby,
        standby_before,
        started,
        fresh=fresh,
        timeout=timeout,
        exiting=leader if kind == "term" else None,
    )
    released = any(
        "released the Lease" in str(e.get("message")) for e in leader.log_entries(leader.log_start)
    )
    killed = leader.identity
    leader.start()
    snapshots = pair.admin.snapshots()
    fresh_obj = pair.get(fresh) or {"metadata": {}}
    return {
        "trial": index,
        "signal": "SIGKILL" if kind == "kill" else "SIGTERM",
        "leader": killed,
        "successor": standby.identity,
        "standby_evs_calls_while_standby": standby_before.total(),
        "seconds": marks,
        "released_lease": released,
        "fresh_snapshots": sum(
            1 for snap in snapshots if owner_of(snap) == fresh_obj["metadata"].get("uid")
        ),
        "duplicate_owners": len(duplicate_owners(snapshots)),
        "wrong_ids": len(wrong_ids(pair.items(), snapshots)),
    }


def stop_trial(pair: Pair, index: int, batch: int, timeout: float) -> Obj:
    """SIGSTOP the leader while it creates snapshots, SIGCONT it once the standby took over;
    count what the old leader sent after it woke."""
    leader = pair.wait_leader(timeout)
    standby = pair.other(leader)
    volumes = pair.admin.add_volumes(2)
    names = [f"stop-{index}-{j}" for j in range(batch)]
    at_start = pair.calls(leader)
    for j, name in enumerate(names):
        pair.create(name, volumes[j % 2])
    # Mid-work: some creates sent, others (and every follow-up poll) still to come.
    wait_until(
        lambda: pair.calls(leader)["create"] >= at_start["create"] + 2,
        timeout=timeout,
        what=f"{leader.identity} sending creates",
    )
    leader.pause()
    stopped, stopped_wall = time.monotonic(), time.time()
    offset = leader.log_size()
    standby_before = pair.calls(standby)
    marks = follow_handover(pair, standby, standby_before, stopped, fresh=None, timeout=timeout)
    before = pair.calls(leader)
    steps_before = len(step_lines(leader.log_entries(leader.log_start, offset)))
    took_over = time.monotonic() - stopped
    leader.resume()
    woke = time.monotonic()

    def noticed() -> bool:
        return any("stops leading" in str(e.get("message")) for e in leader.log_entries(offset))

    wait_until(noticed, timeout=timeout, what=f"{leader.identity} noticing it lost the Lease")
    wait_until(
        lambda: leader.metric("cloudsnap_leader") == 0,
        timeout=timeout,
        what=f"{leader.identity} reporting cloudsnap_leader 0",
    )
    # The successor finishes the batch; a status the old leader overwrote after waking may keep
    # a resource from Ready until its next resync, which is what `stale_status` reports.
    settle = min(timeout, 2 * pair.timing[0] + 30)
    with contextlib.suppress(TimeoutError):
        pair.wait_ready(names, settle)
    after = pair.calls(leader)
    entries = leader.log_entries(offset)
    writes = audited_writes(entries)
    delta = after - before
    snapshots = pair.admin.snapshots()
    items = [item for item in pair.items() if item["metadata"]["name"] in names]
    uids = {item["metadata"]["uid"] for item in items}
    return {
        "trial": index,
        "leader": leader.identity,
        "successor": standby.identity,
        "seconds": {**marks, "stopped": round(woke - stopped, 2)},
        # Relative to the SIGSTOP: the successor acted at `took_over`, the old leader woke at
        # `stopped`; a duplicate made after both was sent by the old leader after it woke.
        "duplicates": {
            owner: made
            for owner, made in duplicate_details(snapshots, stopped_wall).items()
            if owner in uids
        },
        "took_over_at": round(took_over, 2),
        "evs_calls_before_stop": sum(before.values()),
        "evs_after_wake": dict(delta),
        "mutating_evs_after_wake": sum(delta[op] for op in MUTATING),
        "read_evs_after_wake": sum(delta[op] for op in READS),
        "k8s_writes_after_wake": [w for w in writes if not is_lease_write(w)],
        "lease_writes_after_wake": [w for w in writes if is_lease_write(w)],
        "steps_after_wake_log": len(step_lines(entries)),
        "steps_after_wake_metric": leader.metric("cloudsnap_reconciles_total") - steps_before,
        "not_ready": sorted(item["metadata"]["name"] for item in items if not is_ready(item)),
        "stale_status": stale_statuses(items, snapshots),
        "duplicate_owners": len(set(duplicate_owners(snapshots)) & uids),
        "live_duplicate_owners": len(set(duplicate_owners(snapshots, live_only=True)) & uids),
        "wrong_ids": len(wrong_ids(items, snapshots)),
    }


def spread(values: Sequence[float]) -> dict[str, float]:
    """p50 and max (and min), rounded."""
    if not values:
        return {}
    return {
        "p50": round(statistics.median(values), 2),
        "max": round(max(values), 2),
        "min": round(min(values), 2),
    }


def summarise(report: Obj) -> Obj:
    summary: Obj = {}
    for kind in ("sigkill", "sigterm"):
        trials = report.get(kind) or []
        if not trials:
            continue
        keys = sorted({key for t in trials for key in t["seconds"]})
        summary[kind] = {key: spread([t["seconds"][key] for t in trials]) for key in keys}
        summary[kind]["duplicate_owners"] = max(t["duplicate_owners"] for t in trials)
        summary[kind]["wrong_ids"] = max(t["wrong_ids"] for t in trials)
        summary[kind]["standby_evs_calls_while_standby"] = max(
            t["standby_evs_calls_while_standby"] for t in trials
        )
    deletions = report.get("deletion") or []
    if deletions:
        summary["deletion"] = {
            "trials": len(deletions),
            "recreated_by_standby": sum(1 for t in deletions if t["recreated_by"] == "standby"),
            "resources": sum(t["resources"] for t in deletions),
            "snapshots": sum(t["snapshots"] for t in deletions),
            "duplicate_owners": sum(t["duplicate_owners"] for t in deletions),
            "trials_with_duplicates": sum(1 for t in deletions if t["duplicate_owners"]),
            "not_ready": sum(len(t["not_ready"]) for t in deletions),
            "wrong_ids": sum(t["wrong_ids"] for t in deletions),
            "all_ready": spread([t["seconds"]["all_ready"] for t in deletions]),
        }
    stops = report.get("sigstop") or []
    if stops:
        summary["sigstop"] = {
            "takeover_first_evs_call": spread([t["seconds"]["first_evs_call"] for t in stops]),
            "mutating_evs_after_wake": sum(t["mutating_evs_after_wake"] for t in stops),
            "read_evs_after_wake": sum(t["read_evs_after_wake"] for t in stops),
            "k8s_writes_after_wake": sum(len(t["k8s_writes_after_wake"]) for t in stops),
            "cloudsnapshot_writes_after_wake": sum(
                sum(1 for w in t["k8s_writes_after_wake"] if "/cloudsnapshots/" in w) for t in stops
            ),
            "event_posts_after_wake": sum(
                sum(1 for w in t["k8s_writes_after_wake"] if "/events" in w) for t in stops
            ),
            "lease_writes_after_wake": sum(len(t["lease_writes_after_wake"]) for t in stops),
            "steps_after_wake_log": sum(t["steps_after_wake_log"] for t in stops),
            "steps_after_wake_metric": sum(t["steps_after_wake_metric"] for t in stops),
            "evs_calls_before_stop": spread([t["evs_calls_before_stop"] for t in stops]),
            "duplicate_owners": sum(t["duplicate_owners"] for t in stops),
            "live_duplicate_owners": sum(t["live_duplicate_owners"] for t in stops),
            "stale_status": sum(len(t["stale_status"]) for t in stops),
            "trials_with_mutating_evs_after_wake": sum(
                1 for t in stops if t["mutating_evs_after_wake"]
            ),
            "trials": len(stops),
        }
    return summary


def table(report: Obj) -> str:
    """Per-trial rows, then the summary."""
    lines = []
    for kind, label in (("sigkill", "SIGKILL"), ("sigterm", "SIGTERM")):
        trials = report.get(kind) or []
        if not trials:
            continue
        lines.append(
            f"{label} the leader: seconds after the signal"
            f"{'  (exited = the old leader gone)' if kind == 'sigterm' else ''}"
        )
        lines.append(
            f"  {'trial':>5} {'Lease taken':>11} {'1st EVS call':>12} {'fresh Ready':>11}"
            f" {'exited':>7} {'dup owners':>10}"
        )
        for t in trials:
            s = t["seconds"]
            lines.append(
                f"  {t['trial']:>5} {s['lease']:>11.2f} {s['first_evs_call']:>12.2f}"
                f" {s['fresh_ready']:>11.2f} {s.get('exited', float('nan')):>7.2f}"
                f" {t['duplicate_owners']:>10}"
            )
    stops = report.get("sigstop") or []
    if stops:
        lines.append("SIGSTOP the leader mid-create until the standby took over, then SIGCONT")
        lines.append(
            f"  {'trial':>5} {'stopped s':>9} {'takeover s':>10} {'EVS mut':>7} {'EVS read':>8}"
            f" {'k8s writes':>10} {'Lease wr':>8} {'steps(log)':>10} {'steps(metric)':>13}"
            f" {'dup owners':>10} {'stale status':>12}"
        )
        for t in stops:
            lines.append(
                f"  {t['trial']:>5} {t['seconds']['stopped']:>9.2f}"
                f" {t['seconds']['first_evs_call']:>10.2f} {t['mutating_evs_after_wake']:>7}"
                f" {t['read_evs_after_wake']:>8} {len(t['k8s_writes_after_wake']):>10}"
                f" {len(t['lease_writes_after_wake']):>8} {t['steps_after_wake_log']:>10}"
                f" {t['steps_after_wake_metric']:>13.0f} {t['duplicate_owners']:>10}"
                f" {len(t['stale_status']):>12}"
            )
    deletions = report.get("deletion") or []
    if deletions:
        lines.append(
            "Lease deleted right after a renewal, the standby creating it, a batch applied at once"
        )
        lines.append(
            f"  {'trial':>5} {'created by':>10} {'Lease back s':>12} {'all Ready s':>11}"
            f" {'creates L/S':>11} {'snapshots':>9} {'dup owners':>10} {'not Ready':>9}"
        )
        for t in deletions:
            creates = f"{t['leader_evs_calls'].get('create', 0)}/"
            creates += f"{t['standby_evs_calls'].get('create', 0)}"
            lines.append(
                f"  {t['trial']:>5} {t['recreated_by']:>10}"
                f" {t['seconds']['lease_recreated']:>12.2f} {t['seconds']['all_ready']:>11.2f}"
                f" {creates:>11} {t['snapshots']:>9} {t['duplicate_owners']:>10}"
                f" {len(t['not_ready']):>9}"
            )
    summary = report["summary"]
    lines.append("summary")
    for kind, label in (("sigkill", "SIGKILL"), ("sigterm", "SIGTERM")):
        if kind in summary:
            s = summary[kind]
            first, lease = s["first_evs_call"], s["lease"]
            lines.append(
                f"  {label}: standby's first step (EVS call) p50 {first['p50']}s"
                f" max {first['max']}s; Lease taken p50 {lease['p50']}s max {lease['max']}s;"
                " fresh Ready p50"
                f" {s['fresh_ready']['p50']}s max {s['fresh_ready']['max']}s; owners with >1"
                f" snapshot {s['duplicate_owners']}; standby EVS calls while standby"
                f" {s['standby_evs_calls_while_standby']}"
            )
    if "sigstop" in summary:
        s = summary["sigstop"]
        lines.append(
            f"  SIGSTOP: after SIGCONT the old leader sent {s['mutating_evs_after_wake']} mutating"
            f" EVS calls, {s['read_evs_after_wake']} EVS reads,"
            f" {s['cloudsnapshot_writes_after_wake']} CloudSnapshot writes,"
            f" {s['event_posts_after_wake']} Event posts,"
            f" {s['lease_writes_after_wake']} Lease writes; steps"
            f" finished after waking {s['steps_after_wake_log']} (log),"
            f" {s['steps_after_wake_metric']:.0f} (metric); takeover p50"
            f" {s['takeover_first_evs_call']['p50']}s max {s['takeover_first_evs_call']['max']}s;"
            f" owners with 2 snapshots {s['duplicate_owners']} ({s['live_duplicate_owners']}"
            f" still live); statuses left stale {s['stale_status']}"
        )
    if "deletion" in summary:
        s = summary["deletion"]
        lines.append(
            f"  Lease deleted: {s['trials']} trials ({s['recreated_by_standby']} won by the"
            f" standby), {s['snapshots']} snapshots for {s['resources']} resources, owners with"
            f" >1 snapshot {s['duplicate_owners']} (in {s['trials_with_duplicates']} trials),"
            f" not Ready {s['not_ready']}; all Ready p50 {s['all_ready']['p50']}s max"
            f" {s['all_ready']['max']}s after the deletion"
        )
    standby = summary.get("writes_while_standby")
    if standby is not None:
        lines.append(
            "  standbys (whole run, every generation, from each replica's log):"
            f" {sum(map(len, standby.values()))} CloudSnapshot/Event writes while not leading"
        )
    return "\n".join(lines)


@contextlib.contextmanager
def pair_on_own_cluster(workdir: Path, prefix: str, **options: Any) -> Iterator[Pair]:
    """etcd + kube-apiserver with the CRDs and the operator namespace, a namespace named after
    ``prefix`` and two replicas watching it (``options`` as `running_pair` takes them); all
    stopped on the way out."""
    with contextlib.ExitStack() as stack:
        print(f"starting etcd and kube-apiserver in {workdir} ...", flush=True)
        plane = stack.enter_context(ControlPlane(directory=workdir / "cluster"))
        cluster = Cluster(plane.kubeconfig, tool_env(plane.kubeconfig, plane.bin_dir, workdir))
        cluster.kubectl("apply", "-f", str(REPO / "crds"))
        cluster.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        cluster.kubectl("create", "namespace", OPERATOR_NAMESPACE)
        namespace = f"{prefix}-{secrets.token_hex(3)}"
        cluster.kubectl("create", "namespace", namespace)
        yield stack.enter_context(
            running_pair(
                cluster,
                workdir,
                namespace=namespace,
                operator_namespace=OPERATOR_NAMESPACE,
                **options,
            )
        )


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    """SIGTERM/SIGHUP unwind like Ctrl-C, so everything started is stopped on the way out."""
    raise SystemExit(128 + signum)


def add_pair_arguments(
    parser: argparse.ArgumentParser, *, timing: tuple[float, float, float], timeout: float
) -> None:
    """The options every two-replica benchmark takes: Lease timings, waits, where results go."""
    default = " ".join(f"{value:g}" for value in timing)
    parser.add_argument(
        "--timing",
        type=float,
        nargs=3,
        default=list(timing),
        metavar=("LEASE", "RENEW", "RETRY"),
        help=f"lease duration, renew deadline, retry period in seconds ({default};"
        " the operator's default: 15 10 2)",
    )
    parser.add_argument("--timeout", type=float, default=timeout, help="deadline of each wait (s)")
    parser.add_argument("--dir", type=Path, help="working directory (logs); default a temp dir")
    parser.add_argument("--output", type=Path, help="JSON result file (default in DIR)")


def begin_run(args: argparse.Namespace, name: str) -> tuple[Path, Path, tuple[float, float, float]]:
    """Unwind on SIGTERM/SIGHUP; the working directory, the result file and the Lease timings."""
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _exit_on_signal)
    workdir = args.dir or Path(tempfile.mkdtemp(prefix=f"cloudsnap-{name}-"))
    output = args.output or workdir / f"{name}.json"
    return workdir, output, (args.timing[0], args.timing[1], args.timing[2])


def main(argv: list[str] | None = None) -> int:
    """`python -m bench.ha` (what `make ha-trials` runs)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--kill-trials", type=int, default=10, help="SIGKILL trials (10)")
    parser.add_argument("--term-trials", type=int, default=10, help="SIGTERM trials (10)")
    parser.add_argument("--stop-trials", type=int, default=10, help="SIGSTOP trials (10)")
    parser.add_argument("--stop-batch", type=int, default=8, help="creates in flight at SIGSTOP")
    parser.add_argument("--deletion-trials", type=int, default=10, help="Lease deletions (10)")
    parser.add_argument(
        "--deletion-batch", type=int, default=30, help="CloudSnapshots applied after a deletion"
    )
    parser.add_argument(
        "--create-latency",
        type=float,
        default=1.0,
        help="seconds EVS takes to answer a create in the deletion trials (1)",
    )
    parser.add_argument("--create-seconds", type=float, default=2.0, help="simulated create time")
    add_pair_arguments(parser, timing=DEFAULT_TIMING, timeout=180.0)
    args = parser.parse_args(argv)
    workdir, output, timing = begin_run(args, "ha")
    report: Obj = {
        "timing": dict(
            zip(("lease_duration", "renew_deadline", "retry_period"), timing, strict=True)
        ),
        "machine": {"cpus": os.cpu_count(), "loadavg_at_start": os.getloadavg()},
    }
    with pair_on_own_cluster(
        workdir, "ha", timing=timing, create_seconds=args.create_seconds, audit=True
    ) as pair:
        # Resources a new leader looks at first: its first step is an EVS call.
        volume = pair.admin.add_volumes(1)[0]
        names = [f"base-{i}" for i in range(3)]
        for name in names:
            pair.create(name, volume)
        pair.wait_ready(names, args.timeout)
        for kind, key, count in (
            ("kill", "sigkill", args.kill_trials),
            ("term", "sigterm", args.term_trials),
        ):
            report[key] = []
            for index in range(count):
                trial = handover_trial(pair, kind, index, args.timeout)
                report[key].append(trial)
                print(f"{key} trial {index}: {json.dumps(trial)}", flush=True)
        report["sigstop"] = []
        for index in range(args.stop_trials):
            trial = stop_trial(pair, index, args.stop_batch, args.timeout)
            report["sigstop"].append(trial)
            print(f"sigstop trial {index}: {json.dumps(trial)}", flush=True)
        report["deletion"] = []
        for index in range(args.deletion_trials):
            trial = deletion_trial(
                pair,
                index,
                args.deletion_batch,
                args.timeout,
                create_latency=args.create_latency,
            )
            report["deletion"].append(trial)
            print(f"deletion trial {index}: {json.dumps(trial)}", flush=True)
    report["machine"]["loadavg_at_end"] = os.getloadavg()
    report["summary"] = summarise(report)
    report["summary"]["writes_while_standby"] = {
        replica.name: [
            w for entries in replica.generations() for w in writes_while_standby(entries)
        ]
        for replica in pair.replicas
    }
    output.write_text(json.dumps(report, indent=2) + "\n")
    print("\n" + table(report))
    print(f"\nresult: {output}\nlogs: {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
