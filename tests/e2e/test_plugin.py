"""`kubectl cloudsnap` end to end: kubectl finds the plugin on PATH, the plugin talks to the real
API server, the operator makes the snapshots, and each outcome has its exit code."""

from __future__ import annotations

import asyncio
import json
import uuid

from cloudsnap.client import AsyncClient, Client, Outcome
from cloudsnap.client.plugin import duration
from tests.fixtures.operator import Stack, StartStack

CREATE_SECONDS = 4.0


def plugin(stack: Stack, *args: str) -> tuple[int, str]:
    """`kubectl cloudsnap ARGS` in the stack's namespace: exit code and output."""
    result = stack.cluster.kubectl("cloudsnap", *args, "-n", stack.namespace, check=False)
    return result.returncode, result.stdout + result.stderr


async def test_each_command_and_outcome_has_its_exit_code(start_stack: StartStack) -> None:
    stack = await start_stack(create_seconds=CREATE_SECONDS)
    disk = await stack.add_volume()

    code, out = await asyncio.to_thread(
        plugin, stack, "snapshot", f"volume/{disk}", "--name", "db", "--wait", "--timeout", "60s"
    )
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0] == "cloudsnapshot/db created"
    assert any(": Creating: " in line for line in lines), out  # progress while it waits
    snapshot_id = stack.must_get("db")["status"]["snapshotID"]
    assert lines[-1] == f"cloudsnapshot/db Ready: EVS snapshot {snapshot_id}"

    # A disk that does not exist fails for good (blocked): --wait returns at once with the reason.
    started = asyncio.get_running_loop().time()
    code, out = await asyncio.to_thread(
        plugin, stack, "snapshot", f"volume/{uuid.uuid4()}", "--name", "nodisk", "--wait"
    )
    assert code == 1, out
    assert "cloudsnapshot/nodisk failed: " in out.splitlines()[-1]
    assert asyncio.get_running_loop().time() - started < 60, "waited for the 10m timeout"

    code, out = await asyncio.to_thread(
        plugin, stack, "snapshot", f"volume/{disk}", "--name", "slow", "--wait", "--timeout", "1"
    )
    assert code == 3, out
    assert out.splitlines()[-1].startswith("cloudsnapshot/slow not Ready after 1s")

    code, out = await asyncio.to_thread(plugin, stack, "wait", "absent", "--timeout", "5s")
    assert (code, out.strip()) == (4, f"error: cloudsnapshot {stack.namespace}/absent not found")

    code, out = await asyncio.to_thread(plugin, stack, "snapshot", "pod/web")
    assert code == 2, out

    code, out = await asyncio.to_thread(plugin, stack, "ls")
    assert code == 0, out
    header, *rows = out.splitlines()
    assert header.split() == ["NAME", "STATE", "SIZE", "AGE", "SOURCE", "SCHEDULE"]
    states = {row.split()[0]: row.split()[1] for row in rows}
    assert states["db"] == "Ready"
    assert states["nodisk"] == "Failed"
    assert set(states) == {"db", "nodisk", "slow"}


async def test_the_python_client_waits_sync_and_async(stack: Stack) -> None:
    disk = await stack.add_volume()
    client = Client.from_environment(config_file=str(stack.cluster.kubeconfig))
    made = await asyncio.to_thread(
        client.create, stack.namespace, None, volume_id=disk, labels={"team": "a"}
    )
    assert made.name.startswith("volume-")
    assert made.source == f"volume/{disk}"
    outcome, snap = await AsyncClient(client).wait(stack.namespace, made.name, timeout=60)
    assert outcome is Outcome.READY
    assert snap.snapshot_id
    listed = await AsyncClient(client).snapshots(stack.namespace, selector="team=a")
    assert [s.name for s in listed] == [made.name]


def test_durations_read_as_kubectl_writes_them() -> None:
    assert [duration(t) for t in ("90", "90s", "10m", "1h30m")] == [90, 90, 600, 5400]


async def test_run_makes_one_extra_run_of_a_schedule_and_waits_for_it(stack: Stack) -> None:
    disk = await stack.add_volume()
    for name, suspend in (("nightly", False), ("paused", True)):
        body = {
            "apiVersion": "evs.cloudsnap.io/v1alpha1",
            "kind": "CloudSnapshotSchedule",
            "metadata": {"name": name, "namespace": stack.namespace},
            "spec": {
                "schedule": "0 3 * * *",
                "sources": {"volumeIDs": [disk]},
                "retention": {"maxCount": 3},
                "suspend": suspend,
            },
        }
        stack.kubectl("apply", "-f", "-", input=json.dumps(body))

    code, out = await asyncio.to_thread(
        plugin, stack, "run", "nightly", "--wait", "--timeout", "90"
    )
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].startswith("cloudsnapshotschedule/nightly: run of ")
    assert lines[0].endswith(", 1 source(s)")
    assert lines[-1].endswith(f"(volume/{disk}) Ready"), out

    code, out = await asyncio.to_thread(plugin, stack, "ls", "--schedule", "nightly")
    assert code == 0, out
    rows = out.splitlines()[1:]
    assert len(rows) == 1
    assert rows[0].split()[-1] == "nightly"

    code, out = await asyncio.to_thread(plugin, stack, "run", "paused")
    assert code == 1, out
    assert "suspended" in out
