"""``evs-simulator``: run the simulator as a process (sandbox, SDK interop, manual poking)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import math
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import TypeVar

from evs_simulator.config import SimulatorConfig, VolumeSeed
from evs_simulator.faults import OPERATIONS
from evs_simulator.server import serve
from evs_simulator.throttle import parse_rate_limits

T = TypeVar("T")
N = TypeVar("N", int, float)

EPILOG = (
    "Once listening, it prints 'listening on http://HOST:PORT' and serves EVS under "
    "/v2/{project_id}/cloudsnapshots (disks under /v2/{project_id}/cloudvolumes, created "
    "through /v2.1, jobs under /v1/{project_id}/jobs) and its admin API (disks, faults, "
    "settings, call counts) under /_sim/."
)


def cli_type(parse: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse ``type`` that reports the parser's own message, not argparse's generic one."""

    def convert(text: str) -> T:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


def _zero_or_more(text: str, read: Callable[[str], N], expected: str, refused: str) -> N:
    """``text`` read as a number that is finite and zero or more; a ValueError saying which."""
    try:
        value = read(text)
    except ValueError:
        raise ValueError(f"expected {expected}, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{refused} at least 0, got {text!r}")
    return value


def seconds(text: str) -> float:
    """A duration: a finite number of seconds, zero or more."""
    return _zero_or_more(text, float, "a number of seconds", "seconds must be finite and")


def quota(text: str) -> int:
    """A number of disks: a whole number, zero or more."""
    return _zero_or_more(text, int, "a whole number of disks", "a quota must be")


def build_parser() -> argparse.ArgumentParser:
    """The command line; each option's ``dest`` is the SimulatorConfig field it sets."""
    parser = argparse.ArgumentParser(
        prog="evs-simulator",
        description=__doc__,
        epilog=EPILOG,
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to listen on; 0 picks a free one")
    parser.add_argument(
        "--access-key", required=True, help="the one access key (AK) requests must be signed with"
    )
    parser.add_argument(
        "--secret-key",
        default=os.environ.get("EVS_SIMULATOR_SECRET_KEY"),
        help="its secret key (SK); or env EVS_SIMULATOR_SECRET_KEY, out of ps",
    )
    parser.add_argument(
        "--project-id", required=True, help="the project every request's URL must name"
    )
    parser.add_argument(
        "--security-token",
        default=os.environ.get("EVS_SIMULATOR_SECURITY_TOKEN"),
        help="require this X-Security-Token (temporary credentials); "
        "or env EVS_SIMULATOR_SECURITY_TOKEN",
    )
    parser.add_argument(
        "--auth-token",
        default=os.environ.get("EVS_SIMULATOR_AUTH_TOKEN"),
        help="also accept this X-Auth-Token instead of a signature; "
        "or env EVS_SIMULATOR_AUTH_TOKEN",
    )
    parser.add_argument(
        "--volume",
        dest="volumes",
        action="append",
        default=[],
        type=cli_type(VolumeSeed.parse),
        metavar="ID:SIZE[:STATUS]",
        help="a disk present from the start and after every reset; SIZE in GB, STATUS "
        "available by default (repeatable)",
    )
    for action in ("create", "delete", "rollback", "volume-create", "volume-delete"):
        parser.add_argument(
            f"--{action}-seconds",
            type=cli_type(seconds),
            default=0.0,
            metavar="SECONDS",
            help=f"how long a {action.replace('-', ' ')} takes to finish (0: at once)",
        )
    parser.add_argument(
        "--volume-quota",
        type=cli_type(quota),
        default=None,
        metavar="COUNT",
        help="how many disks the project may have, seeded ones included (unlimited; "
        "changeable through /_sim/settings)",
    )
    parser.add_argument(
        "--list-lag",
        dest="list_lag_seconds",
        type=cli_type(seconds),
        default=0.0,
        metavar="SECONDS",
        help="how long a new snapshot stays out of list answers, as EVS's list index trails "
        "its records; show sees it at once (0; changeable through /_sim/settings)",
    )
    parser.add_argument(
        "--rate-limit",
        dest="rate_limits",
        type=cli_type(parse_rate_limits),
        default={},
        metavar="OPERATION=RATE[/BURST],...",
        help="throttle like the API gateway: a token bucket per access key and operation "
        f"({', '.join(OPERATIONS)}), refilled at RATE calls per second and "
        "holding BURST calls (default: RATE rounded up, at least 1); a call over the limit is "
        "answered 429 APIG.0308 and not applied; operations not named are unlimited "
        "(e.g. create=10,list=20/40; changeable through /_sim/settings)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of snapshot and disk ids, so runs replay (0)"
    )
    parser.add_argument("--access-log", action="store_true", help="log every request to stderr")
    return parser


def parse_args(argv: Sequence[str] | None = None) -> SimulatorConfig:
    """Command line to config; secrets may come from the environment instead, out of ps."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.secret_key:
        parser.error("--secret-key (or EVS_SIMULATOR_SECRET_KEY) is required")
    fields = {field.name for field in dataclasses.fields(SimulatorConfig)}
    given = {name: value for name, value in vars(args).items() if name in fields}
    return SimulatorConfig(**{**given, "volumes": tuple(args.volumes)})


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
