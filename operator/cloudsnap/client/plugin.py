"""`kubectl cloudsnap`: the kubectl plugin (the `kubectl-cloudsnap` console script on PATH).

    kubectl cloudsnap snapshot pvc/NAME|volume/ID [--name N] [--class C] [--wait] [--timeout 10m]
    kubectl cloudsnap snapshot -l SELECTOR [--wait]     (every claim the selector picks)
    kubectl cloudsnap wait NAME [--timeout 10m]
    kubectl cloudsnap run SCHEDULE [--wait] [--timeout 10m]
    kubectl cloudsnap restore SNAPSHOT|snapshot/ID (--to-claim NAME [--size GB] | --rollback
        [--no-safety-snapshot]) [--name N] [--class C] [--wait] [--timeout 10m]
    kubectl cloudsnap ls [--schedule S | --restores] [-A]
    kubectl cloudsnap orphans [--class C] [--adopt [-n NAMESPACE]] [--operator-namespace NS]

Exit codes a script can branch on: 0 Ready (or done), 1 failed for good (Stalled: the reason is
printed; for `orphans --adopt`, an orphan left unadopted), 2 usage error, 3 not Ready within the
timeout, 4 not found or refused by the API server (or, for `orphans`, by EVS).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TextIO

from kubernetes import config
from kubernetes.client.exceptions import ApiException

from cloudsnap.api.constants import DEFAULT_OPERATOR_NAMESPACE
from cloudsnap.client import (
    POLL_SECONDS,
    Client,
    NotFound,
    Outcome,
    Restore,
    Settling,
    Snapshot,
    orphans,
)

EXIT_CODES = {Outcome.READY: 0, Outcome.FAILED: 1, Outcome.TIMED_OUT: 3}
EXIT_NOT_FOUND = 4
_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def duration(text: str) -> float:
    """Seconds from `90`, `90s`, `10m` or `1h30m`."""
    if text.isdigit():
        return float(text)
    match = _DURATION.match(text)
    if not text or match is None:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 90s, 10m, 1h30m)")
    hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return float(hours * 3600 + minutes * 60 + seconds)


def parser() -> argparse.ArgumentParser:
    """The command line; -n and --context go before or after the command, as with kubectl."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-n", "--namespace", default=argparse.SUPPRESS, help="default: context's")
    common.add_argument("--context", default=argparse.SUPPRESS, help="kubeconfig context")
    top = argparse.ArgumentParser(
        prog="kubectl cloudsnap", description=__doc__.split("\n")[0], parents=[common]
    )
    commands = top.add_subparsers(dest="command", required=True)

    snap = commands.add_parser("snapshot", help="snapshot a claim or a disk now", parents=[common])
    snap.add_argument("source", nargs="?", help="pvc/NAME or volume/ID")
    snap.add_argument("-l", "--selector", help="snapshot every claim this label selector picks")
    snap.add_argument("--name", help="the CloudSnapshot's name (default: generated)")
    snap.add_argument("--class", dest="class_name", help="CloudSnapshotClass (default: default)")
    snap.add_argument("--deletion-policy", choices=("Delete", "Retain"))
    snap.add_argument("--wait", action="store_true", help="wait until Ready or failed for good")
    snap.add_argument("--timeout", type=duration, default=600.0, help="with --wait (default 10m)")

    wait = commands.add_parser(
        "wait", help="wait until a CloudSnapshot is Ready or failed", parents=[common]
    )
    wait.add_argument("name")
    wait.add_argument("--timeout", type=duration, default=600.0, help="default 10m")

    run = commands.add_parser(
        "run", help="one extra run of a CloudSnapshotSchedule now", parents=[common]
    )
    run.add_argument("schedule")
    run.add_argument("--wait", action="store_true", help="wait until its children are Ready")
    run.add_argument("--timeout", type=duration, default=600.0, help="with --wait (default 10m)")

    restore = commands.add_parser(
        "restore",
        help="restore a snapshot to a new disk and claim, or roll its disk back",
        parents=[common],
    )
    restore.add_argument("snapshot", help="a CloudSnapshot's name, or snapshot/ID (EVS)")
    target = restore.add_mutually_exclusive_group(required=True)
    target.add_argument("--to-claim", metavar="NAME", help="a new disk and a claim bound to it")
    target.add_argument(
        "--rollback", action="store_true", help="roll the snapshot back onto its own disk"
    )
    restore.add_argument(
        "--size", type=int, metavar="GB", help="with --to-claim (default: the snapshot's)"
    )
    restore.add_argument(
        "--no-safety-snapshot",
        dest="safety_snapshot",
        action="store_false",
        help="with --rollback: no snapshot of the disk first",
    )
    restore.add_argument("--name", help="the CloudSnapshotRestore's name (default: generated)")
    restore.add_argument("--class", dest="class_name", help="with snapshot/ID: its account's class")
    restore.add_argument("--deletion-policy", choices=("Delete", "Retain"))
    restore.add_argument("--wait", action="store_true", help="wait until Ready or failed for good")
    restore.add_argument(
        "--timeout", type=duration, default=600.0, help="with --wait (default 10m)"
    )

    ls = commands.add_parser(
        "ls", help="list CloudSnapshots: ages, sizes, states, schedules", parents=[common]
    )
    which = ls.add_mutually_exclusive_group()
    which.add_argument("--schedule", help="only the children of this CloudSnapshotSchedule")
    which.add_argument("--restores", action="store_true", help="CloudSnapshotRestores instead")
    ls.add_argument("-A", "--all-namespaces", action="store_true")

    left_behind = commands.add_parser(
        "orphans",
        help="EVS snapshots the operator made whose CloudSnapshot is gone",
        parents=[common],
    )
    left_behind.add_argument(
        "--class", dest="class_name", help="the account's class (default: default)"
    )
    left_behind.add_argument(
        "--adopt",
        action="store_true",
        help="make a CloudSnapshot (Retain) for each, named as tagged; -n puts them all there",
    )
    left_behind.add_argument(
        "--operator-namespace",
        default=DEFAULT_OPERATOR_NAMESPACE,
        help=f"where the class's Secret is (default {DEFAULT_OPERATOR_NAMESPACE})",
    )
    return top


def main(
    argv: Sequence[str] | None = None,
    *,
    client: Client | None = None,
    out: TextIO = sys.stdout,
    now: datetime | None = None,
) -> int:
    """Run one command; the exit code."""
    args = parser().parse_args(argv)
    context = getattr(args, "context", None)
    client = client or Client.from_environment(context)
    namespace = getattr(args, "namespace", None) or _current_namespace(context)
    try:
        if args.command == "snapshot":
            return _snapshot(client, namespace, args, out)
        if args.command == "wait":
            return _wait(client, namespace, args.name, args.timeout, out)
        if args.command == "run":
            return _run(client, namespace, args.schedule, args, out)
        if args.command == "restore":
            return _restore(client, namespace, args, out)
        if args.command == "orphans":
            return asyncio.run(_orphans(client, args, out, now))
        return _ls(client, None if args.all_namespaces else namespace, args, out, now)
    except NotFound as exc:
        print(f"error: {exc}", file=out)
        return EXIT_NOT_FOUND
    except ApiException as exc:
        print(f"error: the API server refused: {exc.status} {exc.reason}", file=out)
        return EXIT_NOT_FOUND
    except (orphans.EVSRefused, orphans.NotAllowed) as exc:
        print(f"error: {exc}", file=out)
        return EXIT_NOT_FOUND


def _snapshot(client: Client, namespace: str, args: argparse.Namespace, out: TextIO) -> int:
    if (args.source is None) == (args.selector is None):
        print("error: give a source (pvc/NAME or volume/ID) or --selector, not both", file=out)
        return 2
    if args.selector is not None:
        return _snapshot_claims(client, namespace, args, out)
    kind, _, value = args.source.partition("/")
    if kind not in ("pvc", "volume") or not value:
        print(f"error: source must be pvc/NAME or volume/ID, not {args.source!r}", file=out)
        return 2
    snap = client.create(
        namespace,
        args.name,
        claim=value if kind == "pvc" else None,
        volume_id=value if kind == "volume" else None,
        class_name=args.class_name,
        deletion_policy=args.deletion_policy,
    )
    print(f"cloudsnapshot/{snap.name} created", file=out)
    if not args.wait:
        return 0
    return _wait(client, namespace, snap.name, args.timeout, out)


def _snapshot_claims(client: Client, namespace: str, args: argparse.Namespace, out: TextIO) -> int:
    """One CloudSnapshot per claim the selector picks; with --wait, all Ready or the first that
    fails for good."""
    claims = client.claims(namespace, args.selector)
    if not claims:
        print(f"error: no PersistentVolumeClaim in {namespace} matches {args.selector!r}", file=out)
        return EXIT_NOT_FOUND
    names = []
    for claim in claims:
        snap = client.create(
            namespace,
            None,
            claim=claim,
            class_name=args.class_name,
            deletion_policy=args.deletion_policy,
        )
        names.append(snap.name)
        print(f"cloudsnapshot/{snap.name} created (pvc/{claim})", file=out)
    if not args.wait:
        return 0
    outcome, snaps = client.wait_all(
        namespace, names, timeout=args.timeout, progress=_progress(out)
    )
    for snap in snaps:
        print(f"cloudsnapshot/{snap.name} {_verdict(snap)}", file=out)
    return EXIT_CODES[outcome]


def _progress(out: TextIO) -> Callable[[Settling], None]:
    def progress(found: Settling) -> None:
        print(f"{found.ref}: {found.reason}: {found.message}", file=out, flush=True)

    return progress


def _verdict(snap: Snapshot) -> str:
    if snap.ready:
        return f"Ready: EVS snapshot {snap.snapshot_id}"
    if snap.stalled:
        return f"failed: {snap.reason}: {snap.message}"
    return f"not Ready: {snap.reason}"


def _wait(client: Client, namespace: str, name: str, timeout: float, out: TextIO) -> int:
    outcome, snap = client.wait(namespace, name, timeout=timeout, progress=_progress(out))
    return _told(outcome, snap, f"EVS snapshot {snap.snapshot_id}", timeout, out)


def _told(outcome: Outcome, found: Settling, made: str, timeout: float, out: TextIO) -> int:
    """Print how a wait ended (``made`` says what a Ready object holds); its exit code."""
    if outcome is Outcome.READY:
        print(f"{found.ref} Ready: {made}", file=out)
    elif outcome is Outcome.FAILED:
        print(f"{found.ref} failed: {found.reason}: {found.message}", file=out)
    else:
        print(f"{found.ref} not Ready after {timeout:g}s: {found.reason}", file=out)
    return EXIT_CODES[outcome]


def _restore(client: Client, namespace: str, args: argparse.Namespace, out: TextIO) -> int:
    kind, _, snapshot_id = args.snapshot.partition("/")
    if snapshot_id and kind != "snapshot":
        print(f"error: give a CloudSnapshot's name or snapshot/ID, not {args.snapshot!r}", file=out)
        return 2
    if args.rollback and args.size is not None:
        print("error: --size goes with --to-claim: a rollback makes no disk", file=out)
        return 2
    if not args.rollback and not args.safety_snapshot:
        print("error: --no-safety-snapshot goes with --rollback", file=out)
        return 2
    if not snapshot_id:
        client.get(namespace, args.snapshot)  # NotFound: exit 4 before anything is made
    made = client.create_restore(
        namespace,
        args.name,
        snapshot=None if snapshot_id else args.snapshot,
        snapshot_id=snapshot_id or None,
        class_name=args.class_name,
        claim=args.to_claim,
        size_gb=args.size,
        rollback=args.rollback,
        safety_snapshot=args.safety_snapshot,
        deletion_policy=args.deletion_policy,
    )
    print(f"{made.ref} created", file=out)
    if not args.wait:
        return 0
    outcome, made = client.wait_restore(
        namespace, made.name, timeout=args.timeout, progress=_progress(out)
    )
    return _told(outcome, made, _holds(made), args.timeout, out)


def _holds(restore: Restore) -> str:
    """What a Ready restore gave: its disk (and claim), or the disk rolled back."""
    if restore.target == "rollback":
        safety = (
            f", its data before kept in {restore.safety_snapshot}"
            if restore.safety_snapshot
            else ""
        )
        return f"disk {restore.volume_id} rolled back to EVS snapshot {restore.snapshot_id}{safety}"
    claim = f" bound to {restore.target}" if restore.target.startswith("pvc/") else ""
    return f"disk {restore.volume_id}{claim}"


def _run(
    client: Client, namespace: str, schedule: str, args: argparse.Namespace, out: TextIO
) -> int:
    run = client.run_now(namespace, schedule)
    if run.slot is None:
        print(f"cloudsnapshotschedule/{schedule} did not run: it is suspended", file=out)
        return EXIT_CODES[Outcome.FAILED]
    print(f"cloudsnapshotschedule/{schedule}: run of {run.slot}, {run.sources} source(s)", file=out)
    if not args.wait:
        return 0
    deadline = time.monotonic() + args.timeout
    while True:
        children = client.run_children(namespace, run)
        done = [c for c in children if c.outcome is not None]
        if len(done) >= run.sources and len(children) >= run.sources:
            break
        if time.monotonic() >= deadline:
            print(
                f"{len(done)} of {run.sources} children settled after {args.timeout:g}s", file=out
            )
            return EXIT_CODES[Outcome.TIMED_OUT]
        time.sleep(POLL_SECONDS)
    failed = [c for c in children if c.outcome is Outcome.FAILED]
    for child in children:
        state = "Ready" if child.ready else f"failed: {child.reason}: {child.message}"
        print(f"cloudsnapshot/{child.name} ({child.source}) {state}", file=out)
    return EXIT_CODES[Outcome.FAILED if failed else Outcome.READY]


def _ls(
    client: Client,
    namespace: str | None,
    args: argparse.Namespace,
    out: TextIO,
    now: datetime | None,
) -> int:
    now = now or datetime.now(UTC)
    header: tuple[str, ...]
    rows: list[tuple[str, ...]]
    if args.restores:
        header = ("NAME", "STATE", "PHASE", "AGE", "SOURCE", "TARGET", "VOLUME")
        rows = [
            (
                *((r.namespace,) if namespace is None else ()),
                r.name,
                _state(r),
                r.phase,
                _age(now, r.created),
                r.source,
                r.target,
                r.volume_id or "-",
            )
            for r in client.restores(namespace)
        ]
    else:
        selector = f"evs.cloudsnap.io/schedule={args.schedule}" if args.schedule else None
        header = ("NAME", "STATE", "SIZE", "AGE", "SOURCE", "SCHEDULE")
        rows = [
            (
                *((s.namespace,) if namespace is None else ()),
                s.name,
                _state(s),
                f"{s.size_gib}Gi" if s.size_gib is not None else "-",
                _age(now, s.created),
                s.source,
                s.schedule or "-",
            )
            for s in client.snapshots(namespace, selector=selector)
        ]
    _table((*(("NAMESPACE",) if namespace is None else ()), *header), rows, out)
    return 0


def _state(found: Settling) -> str:
    return "Ready" if found.ready else ("Failed" if found.stalled else found.reason)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], out: TextIO) -> None:
    """Columns as kubectl prints them: left-aligned, three spaces apart."""
    widths = [max(len(str(row[i])) for row in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        cells = (str(cell).ljust(width) for cell, width in zip(row, widths, strict=True))
        print("   ".join(cells).rstrip(), file=out)


async def _orphans(
    client: Client, args: argparse.Namespace, out: TextIO, now: datetime | None
) -> int:
    """List (or adopt) the class's tagged snapshots whose CloudSnapshot is gone; adopted where
    their tags say, or all in the namespace given with -n."""
    namespace = getattr(args, "namespace", None)
    account = orphans.account(client, args.class_name, args.operator_namespace)
    found = await orphans.orphans(account, client.snapshots())
    if not found:
        print(f"no orphaned snapshots in the account of class {account.class_name}", file=out)
        return 0
    if not args.adopt:
        now = now or datetime.now(UTC)
        header = ("SNAPSHOT-ID", "STATUS", "SIZE", "AGE", "NAMESPACE", "NAME")
        rows = [
            (o.snapshot_id, o.status, f"{o.size_gib}Gi", _age(now, o.created), o.namespace, o.name)
            for o in found
        ]
        _table(header, rows, out)
        return 0
    left = 0
    for orphan in found:
        done = orphans.adopt(client, account, orphan, namespace)
        if done.adopted:
            print(
                f"cloudsnapshot/{done.name} created in {done.namespace}:"
                f" adopts EVS snapshot {orphan.snapshot_id}",
                file=out,
            )
        else:
            left += 1
            print(
                f"EVS snapshot {orphan.snapshot_id} left as it is: cloudsnapshot"
                f" {done.namespace}/{done.name}: {done.why_not}",
                file=out,
            )
    return EXIT_CODES[Outcome.FAILED] if left else 0


def _age(now: datetime, created: datetime | None) -> str:
    """kubectl's age format: 45s, 12m, 5h, 3d."""
    if created is None:
        return "-"
    seconds = max(0, int((now - created).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _current_namespace(context: str | None) -> str:
    """The kubeconfig context's namespace, else the pod's, else `default`."""
    try:
        every, active = config.list_kube_config_contexts()  # type: ignore[no-untyped-call]
        chosen = next((c for c in every if c["name"] == context), active) if context else active
        return str(chosen["context"].get("namespace") or "default")
    except (config.ConfigException, FileNotFoundError, TypeError, KeyError):
        try:
            with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as handle:
                return handle.read().strip() or "default"
        except OSError:
            return "default"


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
