"""``evs-simulator``: run the simulator as a process (sandbox, SDK interop, manual poking)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence

from evs_simulator.config import SimulatorConfig, VolumeSeed
from evs_simulator.server import serve


def parse_args(argv: Sequence[str] | None = None) -> SimulatorConfig:
    """Command line to config; secrets may come from the environment instead, out of ps."""
    parser = argparse.ArgumentParser(prog="evs-simulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--access-key", required=True)
    parser.add_argument(
        "--secret-key",
        default=os.environ.get("EVS_SIMULATOR_SECRET_KEY"),
        help="or env EVS_SIMULATOR_SECRET_KEY",
    )
    parser.add_argument("--project-id", required=True)
    parser.add_argument(
        "--security-token",
        default=os.environ.get("EVS_SIMULATOR_SECURITY_TOKEN"),
        help="require this X-Security-Token (temporary credentials)",
    )
    parser.add_argument(
        "--auth-token",
        default=os.environ.get("EVS_SIMULATOR_AUTH_TOKEN"),
        help="also accept this X-Auth-Token",
    )
    parser.add_argument(
        "--volume",
        action="append",
        default=[],
        type=VolumeSeed.parse,
        metavar="ID:SIZE:STATUS",
        help="a disk present from the start (repeatable)",
    )
    parser.add_argument("--create-seconds", type=float, default=0.0)
    parser.add_argument("--delete-seconds", type=float, default=0.0)
    parser.add_argument("--rollback-seconds", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0, help="seed of snapshot and disk ids")
    parser.add_argument("--access-log", action="store_true")
    args = parser.parse_args(argv)
    if not args.secret_key:
        parser.error("--secret-key (or EVS_SIMULATOR_SECRET_KEY) is required")
    return SimulatorConfig(
        access_key=args.access_key,
        secret_key=args.secret_key,
        project_id=args.project_id,
        security_token=args.security_token,
        auth_token=args.auth_token,
        volumes=tuple(args.volume),
        create_seconds=args.create_seconds,
        delete_seconds=args.delete_seconds,
        rollback_seconds=args.rollback_seconds,
        seed=args.seed,
        host=args.host,
        port=args.port,
        access_log=args.access_log,
    )


async def run(config: SimulatorConfig) -> None:
    """Serve until SIGINT or SIGTERM; announce the endpoint once listening."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with serve(config) as endpoint:
        print(f"listening on {endpoint}", flush=True)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> None:
    config = parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s")
    asyncio.run(run(config))


if __name__ == "__main__":
    main()
