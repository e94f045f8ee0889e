"""The ``evs-simulator`` command line: its options, their errors, and the script as a process."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import signal
import sys
from pathlib import Path

import pytest

from evs_simulator.__main__ import build_parser, parse_args
from evs_simulator.admin_client import AdminClient
from evs_simulator.config import SimulatorConfig
from evs_simulator.testing import RunningSimulator
from evs_simulator.throttle import RateLimit
from tests.simulator.signed import evs_client

SCRIPT = Path(sys.executable).parent / "evs-simulator"
VOLUME = "11111111-2222-4333-8444-555555555555"


async def test_console_script_serves_until_sigterm() -> None:
    secret = "cli-secret-key-0123"
    process = await asyncio.create_subprocess_exec(
        str(SCRIPT),
        *("--host", "127.0.0.1", "--port", "0", "--access-key", "CLIAK", "--project-id", "p1"),
        *("--volume", f"{VOLUME}:12:in-use", "--create-seconds", "0", "--seed", "5"),
        env={**os.environ, "EVS_SIMULATOR_SECRET_KEY": secret},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), timeout=30)).decode()
        match = re.fullmatch(r"listening on (http://127\.0\.0\.1:(\d+))\n", line)
        assert match, line
        endpoint = match.group(1)
        admin = AdminClient(endpoint)
        sim = RunningSimulator(endpoint, "CLIAK", secret, "p1", admin, SimulatorConfig())
        async with evs_client(sim) as client:
            body = {"snapshot": {"volume_id": VOLUME, "force": True}}
            created = await client.post("/cloudsnapshots", json=body)
        assert created.status_code == 202, created.text
        assert created.json()["snapshot"]["size"] == 12
        assert [v["status"] for v in await admin.volumes()] == ["in-use"]
        await admin.aclose()
    finally:
        process.send_signal(signal.SIGTERM)
        returncode = await asyncio.wait_for(process.wait(), timeout=30)
    assert returncode == 0
    assert process.stderr is not None
    stderr = (await process.stderr.read()).decode()
    assert secret not in stderr


async def test_console_script_requires_a_secret_key() -> None:
    env = {k: v for k, v in os.environ.items() if k != "EVS_SIMULATOR_SECRET_KEY"}
    process = await asyncio.create_subprocess_exec(
        str(SCRIPT),
        *("--access-key", "AK", "--project-id", "p"),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 2
    assert b"--secret-key" in stderr


async def test_console_script_refuses_a_bad_volume() -> None:
    process = await asyncio.create_subprocess_exec(
        str(SCRIPT),
        *("--access-key", "AK", "--secret-key", "s", "--project-id", "p", "--volume", "x:0"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 2
    assert b"--volume" in stderr


def test_options_reach_the_config() -> None:
    config = parse_args(
        [
            *("--access-key", "AK", "--secret-key", "s", "--project-id", "p"),
            *("--list-lag", "2.5"),
            *("--rate-limit", "create=10, list=0.5/3,show=2.5,create_volume=1"),
            *("--volume-create-seconds", "3", "--volume-delete-seconds", "4"),
            *("--volume-quota", "5"),
        ]
    )
    assert config.list_lag_seconds == 2.5
    assert (config.volume_create_seconds, config.volume_delete_seconds) == (3.0, 4.0)
    assert config.volume_quota == 5
    assert config.rate_limits == {
        "create": RateLimit(rate=10, burst=10),
        "list": RateLimit(rate=0.5, burst=3),
        "show": RateLimit(rate=2.5, burst=3),
        "create_volume": RateLimit(rate=1, burst=1),
    }
    unlimited = parse_args(["--access-key", "AK", "--secret-key", "s", "--project-id", "p"])
    assert unlimited.rate_limits == {}
    assert unlimited.volume_quota is None


def test_every_option_sets_a_config_field() -> None:
    """parse_args hands the options to the config by name: none may name no field."""
    fields = {field.name for field in dataclasses.fields(SimulatorConfig)}
    dests = {action.dest for action in build_parser()._actions if action.dest != "help"}
    assert dests - fields == set()


def test_help_describes_every_option() -> None:
    parser = build_parser()
    undescribed = [action.option_strings for action in parser._actions if not action.help]
    assert undescribed == []
    assert "/_sim/" in parser.format_help()


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--volume", "x:0", "argument --volume: volume size must be at least 1 GB, got 0"),
        ("--volume", "x:big", "volume size must be a whole number of GB, got 'big'"),
        ("--volume", "x", "volume must be ID:SIZE[:STATUS], got 'x'"),
        ("--create-seconds", "-1", "argument --create-seconds: seconds must be finite and at"),
        ("--delete-seconds", "soon", "expected a number of seconds, got 'soon'"),
        ("--rollback-seconds", "inf", "seconds must be finite and at least 0, got 'inf'"),
        ("--list-lag", "-0.5", "argument --list-lag: seconds must be finite and at least 0"),
        ("--volume-create-seconds", "-1", "seconds must be finite and at least 0, got '-1'"),
        ("--volume-quota", "-1", "argument --volume-quota: a quota must be at least 0"),
        ("--volume-quota", "many", "expected a whole number of disks, got 'many'"),
        ("--rate-limit", "create", "argument --rate-limit: expected OPERATION=RATE[/BURST]"),
        ("--rate-limit", "list=1,copy=2", "unknown operation 'copy' in 'copy=2'; one of create,"),
        ("--rate-limit", "list=0", "'list=0': rate: Input should be greater than 0"),
        ("--rate-limit", "list=1/0.5", "'list=1/0.5': burst: Input should be a valid integer"),
        ("--rate-limit", "list=1,list=2", "list is limited twice"),
    ],
)
def test_bad_values_are_refused_with_the_reason(
    capsys: pytest.CaptureFixture[str], flag: str, value: str, message: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args(["--access-key", "AK", "--secret-key", "s", "--project-id", "p", flag, value])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err
