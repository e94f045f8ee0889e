"""What one CloudSnapshot costs, create -> Ready and delete -> gone: Kubernetes writes, EVS calls.

Kubernetes writes are counted by the API server itself (its `apiserver_request_total` metric), so
no-op patches and refused writes count too; EVS calls by the simulator. Both are deltas over a
window: from the `kubectl apply` of a batch until every resource is Ready and has announced it,
then from the `kubectl delete` of the batch until every resource and its snapshot are gone.

The writes are exact, whatever the timing: a step writes only when something changed, and what
changes on the way is fixed (docs/lifecycle.md). The EVS calls are one create (or delete) per
resource plus the batched polls, whose number follows the poll rounds (time), not the resources.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from typing import Any

from tests.fixtures.cluster import everest_volume, manifest_list, volume_claim
from tests.fixtures.operator import Stack, StartStack, condition
from tests.waiting import eventually

BATCH = 10
WRITE_VERBS = {"POST", "PUT", "PATCH", "DELETE", "APPLY"}
OUR_RESOURCES = {"cloudsnapshots", "events"}
SAMPLE = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$")
LABEL = re.compile(r'(\w+)="([^"]*)"')
# What README's cost table promises per resource, in EVS calls: the create (or delete) plus a
# fifth of a list call. Unbatched, a snapshot that takes CREATE_SECONDS (1 s) to create, polled
# every 0.5 s, would cost at least two list calls of its own; batched, the whole batch shares each
# round's list call, and ten resources share two.
EVS_CALLS_PER_RESOURCE = 1.2


def assert_readme_cost(calls: Counter[str], mutation: str) -> None:
    """The batch's EVS calls: one `mutation` each, list calls shared, nothing else, and no more
    in all than README's table says."""
    assert set(calls) <= {mutation, "list"}, calls
    assert calls[mutation] == BATCH, calls
    assert calls["list"] >= 1, calls
    assert calls.total() <= round(EVS_CALLS_PER_RESOURCE * BATCH), (
        f"{calls.total() / BATCH:.2f} EVS calls per resource, README says"
        f" {EVS_CALLS_PER_RESOURCE}: {calls}"
    )


def api_writes(stack: Stack) -> Counter[str]:
    """Writes the API server has served to CloudSnapshots and Events, by verb, resource, code."""
    metrics = stack.cluster.kubectl("get", "--raw", "/metrics").stdout
    writes: Counter[str] = Counter()
    for line in metrics.splitlines():
        match = SAMPLE.match(line)
        if not match:
            continue
        labels = dict(LABEL.findall(match["labels"]))
        if labels.get("verb") in WRITE_VERBS and labels.get("resource") in OUR_RESOURCES:
            key = "/".join(filter(None, (labels["resource"], labels.get("subresource"))))
            writes[f"{labels['verb']} {key} {labels.get('code', '?')}"] += int(
                float(match["value"])
            )
    return writes


def namespace_phases(stack: Stack) -> list[str]:
    """The phase of every namespace of the cluster."""
    out = stack.cluster.kubectl("get", "namespaces", "-o", "jsonpath={.items[*].status.phase}")
    return out.stdout.split()


def writes_per_resource(*, finalizer: int, status: int, events: int) -> Counter[str]:
    """The batch's writes when each resource makes these: finalizer patches, status patches and
    Events posted, each answered with success."""
    return Counter(
        {
            "PATCH cloudsnapshots 200": finalizer * BATCH,
            "PATCH cloudsnapshots/status 200": status * BATCH,
            "POST events 201": events * BATCH,
        }
    )


def batch_manifest(stack: Stack, names: list[str], sources: list[dict[str, str]]) -> str:
    """One List of the batch (each spec its source), so one `kubectl apply` sends every create
    within moments."""
    items = [
        {
            "apiVersion": "evs.cloudsnap.io/v1alpha1",
            "kind": "CloudSnapshot",
            "metadata": {"name": name, "namespace": stack.namespace},
            "spec": source,
        }
        for name, source in zip(names, sources, strict=True)
    ]
    return manifest_list(*items)


def report(what: str, writes: Counter[str], calls: Counter[str]) -> None:
    print(f"\nper CloudSnapshot, {what} (batch of {BATCH}):")
    print(
        f"  Kubernetes writes {writes.total() / BATCH:.2f}: "
        + ", ".join(f"{k}={v}" for k, v in sorted(writes.items()))
    )
    print(
        f"  EVS calls {calls.total() / BATCH:.2f}: "
        + ", ".join(f"{k}={v}" for k, v in sorted(calls.items()))
    )


async def cost_of(
    stack: Stack,
    what: str,
    names: list[str],
    kubectl: tuple[str, ...],
    *,
    input: str | None = None,
    own_write: str,
    done: Callable[[], Any],
    last_event: str,
) -> tuple[Counter[str], Counter[str]]:
    """What the batch `names` cost from the user's `kubectl` until `done` holds and each resource
    has posted its `last_event`: the API server's writes, less the user's own (`own_write`, once
    per resource), and the EVS calls; both are reported."""
    # The controller-manager's namespace controller empties the namespaces of earlier tests in
    # the background, and its deletes would count here.
    await eventually(
        lambda: "Terminating" not in namespace_phases(stack),
        timeout=60,
        what="earlier tests' namespaces gone",
    )
    writes_before, calls_before = api_writes(stack), Counter(await stack.calls())
    stack.kubectl(*kubectl, input=input)
    await eventually(done, timeout=120, what=f"{BATCH} CloudSnapshots: {what}")
    await eventually(
        lambda: all(last_event in stack.event_reasons(name) for name in names),
        what=f"every {last_event} event",
    )
    writes = api_writes(stack) - writes_before
    writes[own_write] -= BATCH
    writes = +writes
    calls = Counter(await stack.calls()) - calls_before
    report(what, writes, calls)
    return writes, calls


async def cost_to_ready(
    stack: Stack, what: str, names: list[str], sources: list[dict[str, str]]
) -> tuple[Counter[str], Counter[str]]:
    """What the batch `names` (each spec its source) costs from one `kubectl apply` until every
    resource is Ready and has announced Created."""

    def all_ready() -> bool:
        ready = [condition(obj, "Ready").get("status") == "True" for obj in stack.all()]
        return sum(ready) == BATCH

    return await cost_of(
        stack,
        what,
        names,
        ("apply", "-f", "-"),
        input=batch_manifest(stack, names, sources),
        own_write="POST cloudsnapshots 201",
        done=all_ready,
        last_event="Created",
    )


async def test_api_writes_and_evs_calls_per_snapshot(start_stack: StartStack) -> None:
    # No resync inside the windows: what is measured is the way from create to Ready to gone.
    stack = await start_stack(resync_seconds=600)
    volumes = [await stack.add_volume() for _ in range(BATCH)]
    names = [f"cost-{i}" for i in range(BATCH)]

    # -- create -> Ready ------------------------------------------------------------------------
    sources = [{"volumeID": volume} for volume in volumes]
    writes, calls = await cost_to_ready(stack, "create -> Ready", names, sources)

    # Per resource, four: the finalizer; status at the create (snapshotID, Creating) and at
    # Ready; the Created Event. Nothing refused, nothing retried.
    assert writes == writes_per_resource(finalizer=1, status=2, events=1), writes
    # One create each (never a lookup: the operator saw them born), the polls batched.
    assert_readme_cost(calls, "create")

    # -- delete -> gone -------------------------------------------------------------------------
    async def all_gone() -> bool:
        live = [s for s in await stack.admin.snapshots() if not s.get("deleted")]
        return not stack.all() and not live

    writes, calls = await cost_of(
        stack,
        "delete -> gone",
        names,
        ("delete", "csnap", *names, "--wait=false"),
        own_write="DELETE cloudsnapshots 200",
        done=all_gone,
        last_event="Deleted",
    )

    # Per resource, three: status at the DELETE (Ready=False/Deleting); the Deleted Event; the
    # finalizer's removal. However long EVS takes to delete, the status stays as written
    # (tests/controllers/snapshot/test_lifecycle.py counts that with a slow delete).
    assert writes == writes_per_resource(finalizer=1, status=1, events=1), writes
    # One DELETE each and the batched polls. No direct read: a snapshot the operator deleted
    # itself (phase deleting) is believed gone when the list stops showing it.
    assert_readme_cost(calls, "delete")


async def test_a_claim_source_costs_one_status_write_more_to_ready(
    start_stack: StartStack, volume_names: list[str]
) -> None:
    """The claim's disk is pinned in status in the finalizer's step, the record that resolves the
    claim exactly once: five writes to Ready instead of four, and still one Event; and the claim
    costs no EVS call."""
    stack = await start_stack(resync_seconds=600)
    names = [f"claimed-{i}" for i in range(BATCH)]
    manifests = []
    for name in names:
        volume_names.append(f"pv-{stack.namespace}-{name}")
        disk = await stack.add_volume(status="in-use")  # mounted, as a claim's disk is
        manifests.append(everest_volume(volume_names[-1], disk))
        manifests.append(volume_claim(stack.namespace, name, volume_names[-1]))
    stack.kubectl("create", "-f", "-", input=manifest_list(*manifests))

    def all_bound() -> bool:
        phases = stack.kubectl("get", "pvc", "-o", "jsonpath={.items[*].status.phase}").stdout
        return phases.split() == ["Bound"] * BATCH

    await eventually(all_bound, timeout=30, what="the claims bound by the PV binder")

    sources = [{"persistentVolumeClaimName": name} for name in names]
    writes, calls = await cost_to_ready(stack, "create -> Ready, claim sources", names, sources)

    # Per resource, five: the finalizer and status with the claim's disk (one step, two
    # writes); status at the create and at Ready; the Created Event, which names the claim.
    assert writes == writes_per_resource(finalizer=1, status=3, events=1), writes
    # No EVS call for the claim: it and its volume are read from watch caches, so the EVS calls
    # are a disk's, within README's figure.
    assert_readme_cost(calls, "create")
    [created] = stack.events(names[0])
    source = f"PersistentVolumeClaim {names[0]}, PersistentVolume {volume_names[0]}"
    assert source in created["message"]
