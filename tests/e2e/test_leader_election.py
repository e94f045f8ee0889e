"""Leader election end to end: two operator processes, one Lease, the real API server.

Each replica runs under its own identity, which its EVS calls carry as `User-Agent:
cloudsnap/<identity>`, so the simulator's per-agent counts say which replica called what. Short
timings (Lease 3 s, renew deadline 2 s, retry 0.5 s) keep handovers to seconds. The harness
(bench/ha.py) is the one `make ha-trials` measures the default timings with.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from hack.cluster import Cluster
from hack.sandbox import wait_until
from kubernetes import client

from cloudsnap.kube.lease_store import KubeLeaseStore
from cloudsnap.runtime.leader import LeaseConflict
from tests.harness.replicas import (
    MUTATING,
    Pair,
    Replica,
    audited_writes,
    deletion_trial,
    duplicate_owners,
    e2e_pair,
    is_lease_write,
    kube_client,
    operator_environment,
    step_lines,
    wrong_ids,
)

TIMING = (3.0, 2.0, 0.5)
SETTINGS = operator_environment(
    poll=0.5, backoff_base=0.2, backoff_max=2, evs_timeout=10, create_doubt=10
)
TIMEOUT = 60.0
# The EVS client's line for a request that ended with no outcome: cancelled, or kept from
# leaving by the fence.
UNANSWERED = re.compile(r"^EVS (list|create) -> (cancelled|fenced)\b")
FENCED_CREATE = re.compile(r"^EVS create -> fenced\b")
# Lease 12 s, renew deadline 4 s, retry 3 s. A leader whose renewals hang (the API server stalls)
# may not act from 4 s after its last successful renewal; its elector, blocked in the next try
# (sent up to 3 s after that renewal) for up to the renew deadline and then waiting a retry
# period, stops leading and cancels its steps only up to 10 s after it. In between, its steps run
# on, and only the fence keeps what they send from leaving.
FENCE_TIMING = (12.0, 4.0, 3.0)
# Lookups answered this long after they reach EVS land in that window when the API server stalls
# at once: at least 4 s after the last renewal (made before the stall), at least 3 s before the
# elector can let go (not before 7 s after the stall).
FENCE_LOOKUP_SECONDS = 5.5
# A retry period long enough for a batch to arrive between the standby's creating the deleted Lease
# and the leader's next renewal (which finds it).
DELETION_TIMING = (6.0, 4.0, 2.0)


@pytest.fixture
def pair(
    cluster: Cluster,
    cloudsnap_crds: object,
    namespace: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[Pair]:
    """Replica a (leading) and replica b (standby) watching the test's namespace, with TIMING
    or the timing a test passes (indirect parametrization)."""
    timing = getattr(request, "param", TIMING)
    with e2e_pair(cluster, tmp_path, namespace, timing=timing, settings=SETTINGS) as started:
        yield started


@pytest.fixture
def audited_pair(
    cluster: Cluster, cloudsnap_crds: object, namespace: str, tmp_path: Path
) -> Iterator[Pair]:
    """As `pair`, each replica logging every Kubernetes write before it is sent (the audit)."""
    with e2e_pair(
        cluster, tmp_path, namespace, timing=TIMING, settings=SETTINGS, audit=True
    ) as started:
        yield started


def resource_writes(entries: list[dict[str, object]]) -> list[str]:
    """The audited Kubernetes writes in `entries`, but for the Lease's (every replica's renewals
    and tries are writes)."""
    return [write for write in audited_writes(entries) if not is_lease_write(write)]


def noticed_loss(replica: Replica, since: int) -> bool:
    """The replica logged, after byte `since`, that it stopped leading."""
    return any("stops leading" in str(e.get("message")) for e in replica.log_entries(since))


def test_only_the_leader_reconciles(pair: Pair) -> None:
    leader, standby = pair.replicas
    assert pair.holder() == leader.identity
    volume = pair.admin.add_volumes(1)[0]
    names = [f"snap-{i}" for i in range(3)]
    for name in names:
        pair.create(name, volume)
    pair.wait_ready(names, TIMEOUT)

    assert pair.calls(leader)["create"] == len(names)
    assert pair.calls(standby).total() == 0, "the standby called EVS"
    # The leader's step lines are found (so the pattern still matches what the operator logs),
    # the standby's are none.
    assert len(step_lines(leader.log_entries(leader.log_start))) >= len(names)
    assert step_lines(standby.log_entries(standby.log_start)) == [], "the standby ran steps"
    assert leader.metric("cloudsnap_leader") == 1
    assert standby.metric("cloudsnap_leader") == 0
    assert duplicate_owners(pair.admin.snapshots()) == {}


def test_killing_the_leader_hands_over(pair: Pair) -> None:
    leader, standby = pair.replicas
    volume = pair.admin.add_volumes(1)[0]
    pair.create("before", volume)
    pair.wait_ready(["before"], TIMEOUT)

    leader.kill()
    pair.create("after", volume)  # only the standby can make this one Ready
    pair.wait_ready(["after"], TIMEOUT + TIMING[0])
    assert pair.holder() == standby.identity
    assert pair.calls(standby)["create"] == 1
    assert standby.metric("cloudsnap_leader") == 1

    # The killed replica comes back as a standby under a new identity and leaves the work alone.
    leader.start()
    pair.create("later", volume)
    pair.wait_ready(["later"], TIMEOUT)
    assert pair.holder() == standby.identity
    assert pair.calls(leader).total() == 0, "the restarted replica called EVS as a standby"
    snapshots = pair.admin.snapshots()
    assert duplicate_owners(snapshots) == {}
    assert wrong_ids(pair.items(), snapshots) == []


def test_a_stopped_leader_sends_nothing_after_it_wakes(audited_pair: Pair) -> None:
    """SIGSTOP the leader; while it sleeps, give it work of every mutating kind (creates, a
    rename, a delete); the standby takes over and does it. SIGCONT: the old leader's watch then
    delivers all that work at once, and it must send no mutating EVS call and write nothing to
    Kubernetes (the audit logs every write before it is sent) but its tries for the Lease."""
    pair = audited_pair
    leader, standby = pair.replicas
    volume, other = pair.admin.add_volumes(2)
    pair.create("renamed", volume)
    pair.create("deleted", volume)
    pair.wait_ready(["renamed", "deleted"], TIMEOUT)

    leader.pause()
    offset = leader.log_size()
    # Before the pause the same log shows the leader's steps and writes: the checks after the
    # wake-up would see them.
    before_pause = leader.log_entries(leader.log_start, offset)
    assert len(step_lines(before_pause)) >= 2, "no step line found in the leader's log"
    written = resource_writes(before_pause)
    assert any("/cloudsnapshots/" in w for w in written), f"no write audited: {written}"
    new = ["new-0", "new-1", "new-2"]
    for name in new:
        pair.create(name, other)
    pair.patch_spec("renamed", {"name": "renamed-while-stopped"})
    pair.delete("deleted")
    wait_until(
        lambda: pair.holder() == standby.identity,
        timeout=TIMEOUT,
        what="the standby taking the Lease",
    )

    def successor_done() -> bool:
        snapshots = {s["id"]: s for s in pair.admin.snapshots()}
        renamed = pair.get("renamed") or {}
        snapshot = snapshots.get((renamed.get("status") or {}).get("snapshotID", ""), {})
        return pair.get("deleted") is None and snapshot.get("name") == "renamed-while-stopped"

    pair.wait_ready(new, TIMEOUT)
    wait_until(successor_done, timeout=TIMEOUT, what="the successor renaming and deleting")
    before = pair.calls(leader)

    leader.resume()
    wait_until(lambda: noticed_loss(leader, offset), timeout=TIMEOUT, what="the loss noticed")
    wait_until(lambda: leader.metric("cloudsnap_leader") == 0, timeout=TIMEOUT, what="leader 0")
    # One more piece of work after the wake-up, done by the successor: the old leader's watch
    # has delivered everything up to it by then.
    pair.create("witness", volume)
    pair.wait_ready(["witness", *new], TIMEOUT)

    after = pair.calls(leader)
    sent = after - before
    assert {op: sent[op] for op in MUTATING if sent[op]} == {}, f"sent after waking: {sent}"
    assert sent.total() == 0, f"EVS reads after waking: {sent}"
    woke = leader.log_entries(offset)
    assert step_lines(woke) == [], "the old leader ran steps after waking"
    assert resource_writes(woke) == [], "the old leader wrote to Kubernetes after waking"
    snapshots = pair.admin.snapshots()
    assert duplicate_owners(snapshots) == {}
    assert wrong_ids(pair.items(), snapshots) == []
    assert leader.alive


def orphans_looked_up(pair: Pair, lookup_seconds: float) -> list[str]:
    """Three CloudSnapshots born while nobody leads (replica a killed), so that replica b, once
    it leads, looks for each (an EVS list, ``lookup_seconds`` slow) before it creates; their
    names, once those lookups are at the simulator."""
    first, second = pair.replicas
    volume = pair.admin.add_volumes(1)[0]
    lookups = [{"operation": "list", "kind": "latency", "latency_seconds": lookup_seconds}]
    pair.admin.set_faults(lookups, 0)
    first.kill()
    names = [f"orphan-{i}" for i in range(3)]
    for name in names:
        pair.create(name, volume)  # the standby sees them born, but not while it leads
    wait_until(
        lambda: pair.holder() == second.identity, timeout=TIMEOUT, what="the standby leading"
    )
    wait_until(
        lambda: pair.calls(second)["list"] >= len(names),
        timeout=TIMEOUT,
        what="its lookups at the simulator",
    )
    return names


def test_a_leader_stopped_mid_step_sends_no_create_after_it_wakes(pair: Pair) -> None:
    """Steps in flight when the process stops: resources born while nobody leads make the next
    leader look (an EVS list, 3 s slow here) before it creates. Stopped while those lookups are at
    the simulator, the replica wakes with their answers waiting. Whichever runs first, its elector
    finding the renew deadline passed (which cancels the steps) or a step going on to its create
    (which the fence refuses before a byte leaves), no create may reach EVS: the Lease has passed
    on meanwhile."""
    first, second = pair.replicas
    names = orphans_looked_up(pair, 3.0)
    assert pair.calls(second)["create"] == 0
    second.pause()
    offset = second.log_size()
    first.start()  # a new candidate, which takes the Lease once it has gone stale
    wait_until(lambda: pair.holder() == first.identity, timeout=TIMEOUT, what="the handover")
    before = pair.calls(second)

    second.resume()
    wait_until(lambda: noticed_loss(second, offset), timeout=TIMEOUT, what="the loss noticed")
    pair.admin.clear_faults()
    pair.wait_ready(names, TIMEOUT)

    sent = pair.calls(second) - before
    assert {op: sent[op] for op in MUTATING if sent[op]} == {}, f"sent after waking: {sent}"
    # Not because nothing was in flight: the woken replica's lookups ended without an answer its
    # steps could act on, cancelled when it let the Lease go (or, had a step reached its create
    # first, that create refused by the fence before a byte left: the next test makes that
    # happen; both log no outcome).
    unanswered = [e for e in second.log_entries(offset) if UNANSWERED.match(str(e.get("message")))]
    assert len(unanswered) >= len(names), f"the lookups in flight: {unanswered}"
    snapshots = pair.admin.snapshots()
    assert duplicate_owners(snapshots) == {}
    assert wrong_ids(pair.items(), snapshots) == []


@pytest.mark.parametrize("pair", [FENCE_TIMING], indirect=True)
def test_a_deposed_leaders_creates_are_refused_by_the_fence(pair: Pair, cluster: Cluster) -> None:
    """The API server stalls while the leader's steps await their lookups (the resources were
    born while nobody led, so it looks before it creates). Its renewals hang: past its renew
    deadline it may not act, yet its elector, still awaiting a renewal, has not stopped its steps.
    The lookups are answered then and the steps go on to their creates: the fence refuses each
    before a byte leaves, and EVS receives no create from it."""
    if cluster.plane is None:
        pytest.skip("stalls the API server: needs the tests' own control plane")
    second = pair.replicas[1]
    names = orphans_looked_up(pair, FENCE_LOOKUP_SECONDS)
    offset = second.log_size()

    def fenced_creates() -> list[dict[str, object]]:
        entries = second.log_entries(offset)
        return [e for e in entries if FENCED_CREATE.match(str(e.get("message")))]

    with cluster.plane.api_server_paused():
        wait_until(
            lambda: len(fenced_creates()) >= len(names),
            timeout=TIMEOUT,
            what="its creates refused by the fence",
        )
        assert pair.calls(second)["create"] == 0
    pair.admin.clear_faults()
    pair.wait_ready(names, TIMEOUT)
    snapshots = pair.admin.snapshots()
    assert duplicate_owners(snapshots) == {}
    assert wrong_ids(pair.items(), snapshots) == []


@pytest.mark.parametrize("pair", [DELETION_TIMING], indirect=True)
def test_a_deleted_lease_never_makes_two_snapshots(pair: Pair) -> None:
    """The Lease deleted right after a renewal, and the standby made to create it at once (it
    was stopped while its next try fell due): the leader, still inside its renew deadline, acts on
    until its next renewal finds the new Lease. 30 CloudSnapshots arrive meanwhile, and EVS takes
    a second to answer each create. The standby cannot know when the leader's term ends, so it
    must not act until a lease duration after it found the Lease gone: every resource ends with
    exactly one snapshot."""
    trial = deletion_trial(pair, 0, 30, TIMEOUT, create_latency=1.0)
    assert trial["recreated_by"] == "standby", trial
    assert trial["leader_evs_calls"].get("create"), f"the leader did not act meanwhile: {trial}"
    assert trial["duplicate_owners"] == 0, trial
    assert trial["snapshots"] == 30, trial
    assert trial["not_ready"] == [], trial
    assert trial["wrong_ids"] == 0, trial
    assert trial["leader_stopped"], trial


async def test_a_renewal_never_recreates_a_deleted_lease(cluster: Cluster, namespace: str) -> None:
    """The API server creates a Lease on a write to a missing name: a renewal sent after the Lease
    was deleted must be refused instead (it names the Lease's UID), so that only a replica that
    read the Lease and found none creates it, and knows it must wait."""
    with kube_client(cluster.kubeconfig) as api:
        store = KubeLeaseStore(api, namespace, "renewal-probe", timeout=10)
        held = await store.create("a", 15)
        renewed = await store.update(held, "a", 15, 0)
        assert renewed.uid == held.uid
        client.CoordinationV1Api(api).delete_namespaced_lease("renewal-probe", namespace)
        with pytest.raises(LeaseConflict):
            await store.update(renewed, "a", 15, 0)
        assert await store.get() is None
        again = await store.create("b", 15)
        with pytest.raises(LeaseConflict):  # the same name, another Lease object
            await store.update(renewed, "a", 15, 0)
        assert await store.get() == again
