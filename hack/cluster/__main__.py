"""`python -m hack.cluster up [--dir D]`: a local control plane that stays up until Ctrl-C.

Used by `make sandbox` and by developers who want to poke at the operator with kubectl.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from hack.cluster.controlplane import ControlPlane, ControlPlaneError

WATCH_SECONDS = 1.0


def up(directory: Path | None) -> int:
    """Start the control plane, print how to reach it, and keep it up until interrupted."""
    # A shell starts background jobs with SIGINT ignored; Ctrl-C (or kill -INT) must still stop.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    plane = ControlPlane(directory=directory.resolve() if directory else None)
    try:
        plane.start()
    except ControlPlaneError as err:
        print(f"control plane failed to start: {err}", file=sys.stderr)
        return 1
    try:
        print(f"control plane ready in {plane.start_seconds:.1f}s at {plane.server}", flush=True)
        print(f"kubeconfig: {plane.kubeconfig}", flush=True)
        print(f"export KUBECONFIG={plane.kubeconfig}", flush=True)
        print("Ctrl-C stops it.", flush=True)
        dead = plane.wait_for_exit(WATCH_SECONDS)
        print(f"{dead} exited unexpectedly; stopping", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print("stopping", flush=True)
        return 0
    finally:
        plane.stop()


def main(argv: list[str] | None = None) -> int:
    """Parse the command line."""
    parser = argparse.ArgumentParser(prog="python -m hack.cluster")
    commands = parser.add_subparsers(dest="command", required=True)
    up_parser = commands.add_parser("up", help="start the control plane and block")
    up_parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="keep state, logs and the kubeconfig here (default: a temp dir, removed on exit)",
    )
    args = parser.parse_args(argv)
    return up(args.dir)


if __name__ == "__main__":
    sys.exit(main())
