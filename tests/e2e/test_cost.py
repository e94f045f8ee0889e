"""What one CloudSnapshot costs from create to Ready: Kubernetes API writes and EVS calls.

Kubernetes writes are counted by the API server itself (its `apiserver_request_total` metric), so
no-op patches count too; EVS calls by the simulator. Both are deltas over the window from the
`kubectl apply` of a batch until every resource is Ready and has announced it.
"""

from __future__ import annotations

import re
from collections import Counter

from tests.fixtures.operator import Stack, StartStack, condition, eventually

BATCH = 10
WRITE_VERBS = {"POST", "PUT", "PATCH", "DELETE", "APPLY"}
OUR_RESOURCES = {"cloudsnapshots", "events"}
SAMPLE = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$")
LABEL = re.compile(r'(\w+)="([^"]*)"')


def api_writes(stack: Stack) -> Counter[str]:
    """Writes the API server has served to CloudSnapshots and Events, by verb and resource."""
    metrics = stack.cluster.kubectl("get", "--raw", "/metrics").stdout
    writes: Counter[str] = Counter()
    for line in metrics.splitlines():
        match = SAMPLE.match(line)
        if not match:
            continue
        labels = dict(LABEL.findall(match["labels"]))
        if labels.get("verb") in WRITE_VERBS and labels.get("resource") in OUR_RESOURCES:
            key = "/".join(filter(None, (labels["resource"], labels.get("subresource"))))
            writes[f"{labels['verb']} {key}"] += int(float(match["value"]))
    return writes


async def test_api_writes_and_evs_calls_per_snapshot(start_stack: StartStack) -> None:
    # No resync inside the window: what is measured is the way from create to Ready.
    stack = await start_stack(resync_seconds=600)
    volumes = [await stack.add_volume() for _ in range(BATCH)]
    writes_before, calls_before = api_writes(stack), await stack.calls()

    manifests = [f"cost-{i}" for i in range(BATCH)]
    for name, volume in zip(manifests, volumes, strict=True):
        stack.apply(name, volumeID=volume)

    def all_ready() -> bool:
        ready = [condition(obj, "Ready").get("status") == "True" for obj in stack.all()]
        return sum(ready) == BATCH

    await eventually(all_ready, timeout=120, what=f"{BATCH} CloudSnapshots Ready")
    await eventually(
        lambda: all("Available" in stack.event_reasons(name) for name in manifests),
        what="every Available event",
    )

    writes = api_writes(stack) - writes_before
    writes["POST cloudsnapshots"] -= BATCH  # the test's own kubectl apply
    writes = +writes
    calls = Counter(await stack.calls()) - Counter(calls_before)
    k8s_per = writes.total() / BATCH
    evs_per = calls.total() / BATCH
    print(f"\nper CloudSnapshot, create -> Ready (batch of {BATCH}):")
    print(f"  Kubernetes writes {k8s_per:.1f}: " + ", ".join(f"{k}={v}" for k, v in writes.items()))
    print(f"  EVS calls {evs_per:.1f}: " + ", ".join(f"{k}={v}" for k, v in calls.items()))
    assert calls["create"] == BATCH
    assert evs_per <= 4, calls
    assert k8s_per <= 10, writes
