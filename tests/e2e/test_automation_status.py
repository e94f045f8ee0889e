"""How automation judges the operator's objects: kstatus (sigs.k8s.io/cli-utils, which Flux's
health checks and cli-utils' status poller use) and the Argo CD health scripts the project ships
(deploy/argocd/health/), both run by status-check (hack/tools/status) over objects captured from
the real API server at each point of their lifecycle.

Without Reconciling and Stalled, kstatus calls a CloudSnapshot that is still being created
Current, and one that fails for good stays Current too: a pipeline waiting on it only times out.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cloudsnap.api.constants import OWNER_UID_METADATA_KEY as OWNER
from tests.fixtures.automation import HEALTH_SCRIPTS, status_check
from tests.fixtures.operator import Stack, StartStack, condition
from tests.waiting import eventually

# Long enough to capture a snapshot while EVS creates or deletes it.
CREATE_SECONDS = 6.0
DELETE_SECONDS = 6.0
# Long enough to capture a restore while EVS makes or deletes its disk.
VOLUME_SECONDS = 6.0

Verdict = tuple[str, str | None]  # (kstatus, Argo CD health; None: no health verdict)

# What automation should read of an object in each state of its lifecycle.
CREATING: Verdict = ("InProgress", "Progressing")
READY: Verdict = ("Current", "Healthy")
FAILED: Verdict = ("Failed", "Degraded")  # failed for good
DELETING: Verdict = ("Terminating", "Progressing")
# A schedule: kstatus falls back on Ready, False until every source has a Ready snapshot.
RUNNING: Verdict = ("InProgress", "Healthy")
SUSPENDED: Verdict = ("InProgress", "Suspended")


class Captures:
    """Objects captured from the API server, each with the verdict automation should read of it,
    by name (status-check names its verdicts after the objects)."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.expected: dict[str, Verdict] = {}

    def add(self, obj: dict[str, Any], verdict: Verdict) -> None:
        name = obj["metadata"]["name"]
        assert name not in self.objects, f"{name} captured twice"
        self.objects[name] = obj
        self.expected[name] = verdict


def captured(stack: Stack, kind: str, name: str) -> dict[str, Any]:
    out = stack.kubectl("get", kind, name, "-o", "json")
    return dict(json.loads(out.stdout))


def schedule(stack: Stack, name: str, **spec: Any) -> None:
    """`kubectl apply` a nightly schedule keeping two children, with these spec fields."""
    stack.apply_kind(
        "CloudSnapshotSchedule",
        name,
        {"schedule": "0 3 * * *", "retention": {"maxCount": 2}, **spec},
    )


async def test_each_lifecycle_state_reads_as_automation_expects(start_stack: StartStack) -> None:
    """creating -> InProgress/Progressing, Ready -> Current/Healthy, failed for good (a snapshot
    to adopt that does not exist; an EVS snapshot in error) -> Failed/Degraded, deleting ->
    Terminating; a running schedule with no snapshot yet -> InProgress/Healthy, an invalid one ->
    Failed/Degraded, a suspended one -> InProgress/Suspended. And `kubectl wait
    --for=condition=Stalled` returns for the one failed for good."""
    stack = await start_stack(create_seconds=CREATE_SECONDS, delete_seconds=DELETE_SECONDS)
    disk = await stack.add_volume()
    captures = Captures()

    stack.apply("creating", volumeID=disk)
    await stack.wait_condition("creating", "Ready", "False", reason="Creating")
    captures.add(captured(stack, "csnap", "creating"), CREATING)

    stack.apply("missing", snapshotID=str(uuid.uuid4()))
    captures.add(await stack.wait_condition("missing", "Stalled", "True"), FAILED)
    waited = stack.kubectl(
        "wait", "csnap/missing", "--for=condition=Stalled", "--timeout=5s", check=False
    )
    assert waited.returncode == 0, waited.stderr

    # Ready and in sync: a look that failed in passing (an EVS answer slow on a busy machine) is
    # Ready=True with Reconciling=True, InProgress for kstatus until the next look succeeds.
    ready = await eventually(
        lambda: _settled(stack, "creating"), timeout=90, what="creating Ready and in sync"
    )
    ready["metadata"]["name"] = "ready"  # the same object, captured in its next state
    captures.add(ready, READY)

    stack.apply("broken", volumeID=disk)
    broken = await stack.wait_condition("broken", "Ready", "True", timeout=60)
    await stack.admin.set_snapshot_status(broken["status"]["snapshotID"], "error")
    captures.add(await stack.wait_condition("broken", "Stalled", "True", timeout=60), FAILED)

    stack.kubectl("delete", "csnap", "creating", "--wait=false")
    deleting = await eventually(
        lambda: _deleting(stack, "creating"), timeout=30, what="the deletion under way"
    )
    deleting["metadata"]["name"] = "deleting"
    captures.add(deleting, DELETING)

    schedule(stack, "running", sources={"volumeIDs": [disk]})
    schedule(stack, "invalid", sources={"volumeIDs": [disk]}, timeZone="Mars/Olympus_Mons")
    schedule(stack, "paused", sources={"volumeIDs": [disk]}, suspend=True)
    # Each schedule, the condition that says it has been looked at, and its verdict.
    schedules = (
        ("running", "Synced", RUNNING),
        ("invalid", "Stalled", FAILED),
        ("paused", "Synced", SUSPENDED),
    )
    for name, kind, verdict in schedules:
        await eventually(
            lambda name=name, kind=kind: _has(stack, "csnapsched", name, kind),
            timeout=30,
            what=f"{name}'s {kind} condition",
        )
        obj = captured(stack, "csnapsched", name)
        obj["metadata"]["name"] = f"schedule-{name}"
        captures.add(obj, verdict)

    verdicts = assert_verdicts(captures)
    assert "SnapshotNotFound" in verdicts["missing"]["kstatusMessage"]
    assert "Mars/Olympus_Mons" in verdicts["schedule-invalid"]["health"]["message"]


async def test_each_restore_state_reads_as_automation_expects(start_stack: StartStack) -> None:
    """A CloudSnapshotRestore: making its disk -> InProgress/Progressing, Ready ->
    Current/Healthy, its disk in error (phase Failed), blocked (no such snapshot) or invalid (a
    size below the snapshot's) -> Failed/Degraded, deleting its disk -> Terminating/Progressing."""
    stack = await start_stack(volume_seconds=VOLUME_SECONDS)
    stack.apply("db", volumeID=await stack.add_volume(size=10))
    await stack.wait_condition("db", "Ready", "True")
    captures = Captures()

    restore(stack, "restore", newVolume={}, deletionPolicy="Delete")
    restore(stack, "restore-broken", newVolume={})
    restore(stack, "restore-blocked", snapshotName="nothing", newVolume={})
    restore(stack, "restore-invalid", newVolume={"size": 5})
    creating = await _captured_as(
        stack, "restore", "restore-creating", lambda obj: _ready_reason(obj) == "Creating"
    )
    captures.add(creating, CREATING)
    # A disk that goes into error while EVS makes it: the restore's phase is Failed for good.
    broken = await _captured_as(
        stack, "restore-broken", "restore-broken", lambda obj: _ready_reason(obj) == "Creating"
    )

    async def disk_of_broken() -> str | None:
        uid = broken["metadata"]["uid"]
        tagged = [v for v in await stack.admin.volumes() if v["metadata"].get(OWNER) == uid]
        return tagged[0]["id"] if tagged else None

    disk = await eventually(disk_of_broken, what="the disk of restore-broken")
    await stack.admin.set_volume(disk, status="error")
    failed = await _captured_as(stack, "restore-broken", "restore-failed", _stalled)
    captures.add(failed, FAILED)

    for name in ("restore-blocked", "restore-invalid"):
        captures.add(await _captured_as(stack, name, name, _stalled), FAILED)
    captures.add(await _captured_as(stack, "restore", "restore-ready", _in_sync), READY)

    stack.kubectl("delete", "csnaprestore", "restore", "--wait=false")
    deleting = await _captured_as(
        stack,
        "restore",
        "restore-deleting",
        lambda obj: (
            bool(obj["metadata"].get("deletionTimestamp")) and _ready_reason(obj) == "Deleting"
        ),
    )
    captures.add(deleting, DELETING)

    verdicts = assert_verdicts(captures)
    assert failed["status"]["phase"] == "Failed"
    assert "SnapshotNotFound" in verdicts["restore-blocked"]["kstatusMessage"]
    assert "SizeTooSmall" in verdicts["restore-invalid"]["health"]["message"]


def assert_verdicts(captures: Captures) -> dict[str, dict[str, Any]]:
    """status-check's verdicts on the captured objects, asserted to be the expected ones by name;
    the verdicts' messages say why, should one differ."""
    verdicts = status_check(list(captures.objects.values()))
    table = {
        name: (v["kstatus"], v["health"]["status"] if v.get("health") else None)
        for name, v in verdicts.items()
    }
    assert table == captures.expected, json.dumps(verdicts, indent=1)
    return verdicts


def restore(stack: Stack, name: str, **spec: Any) -> None:
    """`kubectl apply` a restore of the CloudSnapshot "db" (unless spec names another source)."""
    stack.apply_kind("CloudSnapshotRestore", name, {"snapshotName": "db", **spec})


async def _captured_as(
    stack: Stack, name: str, label: str, wanted: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """The restore once ``wanted`` holds for it, renamed ``label`` for the verdict table."""

    def probe() -> dict[str, Any] | None:
        obj = captured(stack, "csnaprestore", name)
        return obj if wanted(obj) else None

    obj: dict[str, Any] = await eventually(probe, timeout=90, what=f"{name} as {label}")
    obj["metadata"]["name"] = label
    return obj


def _ready_reason(obj: dict[str, Any]) -> str | None:
    return condition(obj, "Ready").get("reason")


def _stalled(obj: dict[str, Any]) -> bool:
    return condition(obj, "Stalled").get("status") == "True"


def _in_sync(obj: dict[str, Any]) -> bool:
    """Ready with neither Reconciling nor Stalled: a look that failed in passing is over."""
    ready = condition(obj, "Ready").get("status") == "True"
    return ready and not condition(obj, "Reconciling") and not _stalled(obj)


def _deleting(stack: Stack, name: str) -> dict[str, Any] | None:
    obj = stack.get(name)
    if obj is None or not obj["metadata"].get("deletionTimestamp"):
        return None
    return obj if condition(obj, "Ready").get("reason") == "Deleting" else None


def _settled(stack: Stack, name: str) -> dict[str, Any] | None:
    obj = stack.get(name)
    if obj is None or condition(obj, "Ready").get("status") != "True":
        return None
    return None if condition(obj, "Reconciling") or condition(obj, "Stalled") else obj


def _has(stack: Stack, kind: str, name: str, condition_type: str) -> bool:
    obj = captured(stack, kind, name)
    return condition(obj, condition_type).get("status") == "True"


def test_a_status_written_before_any_look_reads_as_in_progress() -> None:
    """Objects as a user applies them (no status yet) and with an old observedGeneration are in
    progress for both judges, whatever their conditions say."""
    fresh = {
        "apiVersion": "evs.cloudsnap.io/v1alpha1",
        "kind": "CloudSnapshot",
        "metadata": {"name": "fresh", "generation": 1},
        "spec": {"volumeID": str(uuid.uuid4())},
    }
    edited = {
        **fresh,
        "metadata": {"name": "edited", "generation": 3},
        "status": {
            "observedGeneration": 2,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "Available",
                    "message": "",
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                }
            ],
        },
    }
    verdicts = status_check([fresh, edited])
    assert verdicts["fresh"]["health"]["status"] == "Progressing"
    assert verdicts["edited"]["kstatus"] == "InProgress"
    assert verdicts["edited"]["health"]["status"] == "Progressing"


def test_the_documented_health_scripts_are_the_shipped_ones() -> None:
    """docs/automation.md's argocd-cm snippet holds each script of deploy/argocd/health/ whole."""
    docs = (Path(__file__).resolve().parents[2] / "docs" / "automation.md").read_text()
    snippet = docs.split("<!-- recipe: argocd-cm -->\n```yaml\n", 1)[1].split("```", 1)[0]
    scripts = sorted(HEALTH_SCRIPTS.glob("*.lua"))
    assert [s.stem for s in scripts] == [
        "evs.cloudsnap.io_CloudSnapshot",
        "evs.cloudsnap.io_CloudSnapshotRestore",
        "evs.cloudsnap.io_CloudSnapshotSchedule",
    ]
    for script in scripts:
        key = f"  resource.customizations.health.{script.stem}: |\n"
        assert key in snippet
        body = snippet.split(key, 1)[1]
        shown = "".join(
            line[4:] if line.strip() else line
            for line in body.splitlines(keepends=True)
            if line.startswith("    ") or not line.strip()
        )
        assert shown.startswith(script.read_text())
