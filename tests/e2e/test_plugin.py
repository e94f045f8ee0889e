"""`kubectl cloudsnap` end to end: kubectl finds the plugin on PATH, the plugin talks to the real
API server, the operator makes the snapshots, and each outcome has its exit code."""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from pathlib import Path

import pytest

from cloudsnap.client import AsyncClient, Client, Outcome, RestoreFailed
from cloudsnap.client.plugin import duration, main
from tests.fixtures.cluster import service_account_kubeconfig
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


async def test_restore_has_an_exit_code_for_each_outcome(
    start_stack: StartStack, volume_names: list[str]
) -> None:
    stack = await start_stack(create_seconds=1.0, volume_seconds=CREATE_SECONDS)
    disk = await stack.add_volume(size=10)

    async def cloudsnap(command: str) -> tuple[int, str]:
        return await asyncio.to_thread(plugin, stack, *command.split())

    code, out = await cloudsnap(f"snapshot volume/{disk} --name db --wait --timeout 60s")
    assert code == 0, out

    code, out = await cloudsnap("restore db --to-claim db-restored --name back --wait")
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0] == "cloudsnapshotrestore/back created"
    assert any(line.startswith("cloudsnapshotrestore/back: Creating: ") for line in lines), out
    restored = json.loads(stack.kubectl("get", "csnaprestore", "back", "-o", "json").stdout)
    volume_names.append(restored["status"]["persistentVolumeName"])
    volume_id = restored["status"]["volumeID"]
    assert (
        lines[-1] == f"cloudsnapshotrestore/back Ready: disk {volume_id} bound to pvc/db-restored"
    )

    # A size below the snapshot's is refused for good: --wait returns at once with the reason.
    started = asyncio.get_running_loop().time()
    code, out = await cloudsnap("restore db --to-claim small --size 5 --name small --wait")
    assert code == 1, out
    assert out.splitlines()[-1].startswith("cloudsnapshotrestore/small failed: "), out
    assert "SizeTooSmall" in out.splitlines()[-1]
    assert asyncio.get_running_loop().time() - started < 60, "waited for the 10m timeout"

    code, out = await cloudsnap("restore db --to-claim slow --name slow --wait --timeout 1")
    assert code == 3, out
    assert out.splitlines()[-1].startswith("cloudsnapshotrestore/slow not Ready after 1s")

    code, out = await cloudsnap("restore absent --to-claim x")
    assert (code, out.strip()) == (4, f"error: cloudsnapshot {stack.namespace}/absent not found")
    for wrong in ("restore db --rollback --size 5", "restore db", "restore pvc/db --rollback"):
        code, out = await cloudsnap(wrong)
        assert code == 2, (wrong, out)

    code, out = await cloudsnap("restore db --rollback --no-safety-snapshot --name undo --wait")
    assert code == 0, out
    assert out.splitlines()[-1].startswith(f"cloudsnapshotrestore/undo Ready: disk {disk} rolled")

    code, out = await cloudsnap("ls --restores")
    assert code == 0, out
    header, *rows = out.splitlines()
    assert header.split() == ["NAME", "STATE", "PHASE", "AGE", "SOURCE", "TARGET", "VOLUME"]
    listed = {row.split()[0]: row.split() for row in rows}
    assert set(listed) == {"back", "small", "slow", "undo"}
    assert listed["back"][1:3] == ["Ready", "Ready"]
    assert listed["back"][4:] == ["db", "pvc/db-restored", volume_id]
    assert listed["small"][1] == "Failed"
    assert listed["undo"][5:] == ["rollback", disk]


async def test_the_python_client_restores_sync_and_async(
    stack: Stack, volume_names: list[str]
) -> None:
    disk = await stack.add_volume()
    client = Client.from_environment(config_file=str(stack.cluster.kubeconfig))
    snap = await asyncio.to_thread(client.create, stack.namespace, "db", volume_id=disk)
    outcome, snap = await AsyncClient(client).wait(stack.namespace, snap.name, timeout=60)
    assert outcome is Outcome.READY
    made = await AsyncClient(client).restore(
        stack.namespace, snapshot="db", claim="db-restored", wait=True, timeout=60
    )
    volume_names.append(f"cloudsnap-{made.uid}")
    assert (made.ready, made.phase, made.target) == (True, "Ready", "pvc/db-restored")
    by_id = await asyncio.to_thread(
        client.create_restore,
        stack.namespace,
        None,
        snapshot_id=snap.snapshot_id,
        class_name=stack.class_name,
    )
    assert by_id.name.startswith("snapshot-restore-")
    assert by_id.source == f"snapshot/{snap.snapshot_id}"
    with pytest.raises(RestoreFailed, match="SnapshotNotFound") as failed:
        await asyncio.to_thread(
            client.restore, stack.namespace, snapshot="nothing", wait=True, timeout=60
        )
    assert failed.value.outcome is Outcome.FAILED
    assert failed.value.restore.name.startswith("nothing-restore-")
    listed = await AsyncClient(client).restores(stack.namespace)
    assert {r.name for r in listed} == {made.name, by_id.name, failed.value.restore.name}


async def test_orphans_lists_and_adopts_a_snapshot_whose_resource_is_gone(
    stack: Stack, tmp_path: Path
) -> None:
    disk = await stack.add_volume()
    stack.apply("keep", volumeID=disk, deletionPolicy="Retain")
    snapshot_id = (await stack.wait_condition("keep", "Ready", "True"))["status"]["snapshotID"]
    stack.kubectl("delete", "csnap", "keep", "--timeout=60s")
    assert snapshot_id in [s["id"] for s in await stack.admin.snapshots()], "Retain kept it"
    orphans = ("orphans", "--class", stack.class_name, "--operator-namespace", stack.namespace)

    code, out = await asyncio.to_thread(plugin, stack, *orphans)
    assert code == 0, out
    header, *rows = out.splitlines()
    assert header.split() == ["SNAPSHOT-ID", "STATUS", "SIZE", "AGE", "NAMESPACE", "NAME"]
    assert [row.split() for row in rows] == [
        [snapshot_id, "available", "10Gi", rows[0].split()[3], stack.namespace, "keep"]
    ]

    code, out = await asyncio.to_thread(plugin, stack, *orphans, "--adopt")
    assert (code, out.strip()) == (
        0,
        f"cloudsnapshot/keep created in {stack.namespace}: adopts EVS snapshot {snapshot_id}",
    )
    adopted = await stack.wait_condition("keep", "Ready", "True")
    assert adopted["status"]["snapshotID"] == snapshot_id
    assert adopted["spec"]["deletionPolicy"] == "Retain"

    code, out = await asyncio.to_thread(plugin, stack, *orphans)
    assert (code, out.strip()) == (
        0,
        f"no orphaned snapshots in the account of class {stack.class_name}",
    )

    # Reading the class's credentials takes the right to read its Secret: without it, exit 4.
    account, role = "no-secrets", f"{stack.namespace}-orphans-without-secrets"
    stack.kubectl("create", "serviceaccount", account)
    resources = "cloudsnapshotclasses.evs.cloudsnap.io,cloudsnapshots.evs.cloudsnap.io"
    stack.cluster.kubectl(
        "create", "clusterrole", role, "--verb=get,list", f"--resource={resources}"
    )
    try:
        stack.cluster.kubectl(
            "create",
            "clusterrolebinding",
            role,
            f"--clusterrole={role}",
            f"--serviceaccount={stack.namespace}:{account}",
        )
        kubeconfig = service_account_kubeconfig(
            stack.cluster, stack.namespace, account, tmp_path / "sa.kubeconfig"
        )
        refused = io.StringIO()
        client = Client.from_environment(config_file=str(kubeconfig))
        code = await asyncio.to_thread(
            main, [*orphans, "-n", stack.namespace], client=client, out=refused
        )
    finally:
        stack.cluster.kubectl("delete", "clusterrolebinding,clusterrole", role, check=False)
    assert code == 4, refused.getvalue()
    assert refused.getvalue().strip() == (
        f"error: reading the credentials of class {stack.class_name} takes get on secret"
        f" {stack.namespace}/{secret_name(stack)}, which the API server refused"
    )


def secret_name(stack: Stack) -> str:
    """The name of the Secret the stack's class reads its credentials from."""
    out = stack.cluster.kubectl("get", "csnapclass", stack.class_name, "-o", "json").stdout
    return str(json.loads(out)["spec"]["credentialsSecretRef"]["name"])
