"""`cloudsnap-operator`: `run` the operator, or write the `crds` YAML."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import kopf
import kubernetes
import pydantic

from cloudsnap import logs, metrics
from cloudsnap.api import crdgen
from cloudsnap.handlers import (
    FINALIZER,
    Controller,
    Memo,
    NotLeading,
    UnkeptMemories,
    configure,
    registry,
)
from cloudsnap.kube import (
    ClassCache,
    KubeLeaseStore,
    KubeScheduleStore,
    KubeWriter,
    SecretCache,
    VolumeSources,
    load_config,
    wait_for_api,
)
from cloudsnap.leader import Elector
from cloudsnap.reconcile import Accounts, EVSConnector, Reconciler
from cloudsnap.reconcile.volumes import claim_key, volume_key
from cloudsnap.schedules import ScheduleController
from cloudsnap.settings import Settings, add_run_arguments, from_arguments

log = logging.getLogger("cloudsnap")


async def run(config: Settings) -> None:
    """Run until SIGINT/SIGTERM: caches, scheduler, kopf's watch, and the metrics/probe server."""
    api = load_config()
    classes = ClassCache(api)
    secrets = SecretCache(api, config.operator_namespace)
    volumes = VolumeSources(api, [] if config.all_namespaces else config.namespace)
    elector = _elector(api, config) if config.leader_election else None
    may_act = elector.may_act if elector is not None else (lambda: True)
    fenced = api if elector is None else _FencedApiClient(api.configuration, may_act)
    writer = KubeWriter(fenced)
    schedule_store = KubeScheduleStore(fenced)
    accounts = Accounts(
        classes,
        secrets,
        timeout=config.evs_timeout_seconds,
        poll_spacing=config.poll_seconds,
        observer=metrics.observe_evs_request,
        limiter_observer=metrics.observe_rate_limit_wait,
        rate_observer=metrics.observe_evs_rate,
        guard=may_act,
        user_agent=f"cloudsnap/{config.identity}",
    )
    reconciler = Reconciler(
        EVSConnector(accounts), finalizer=FINALIZER, volumes=volumes, timing=config.timing()
    )
    controller = Controller(reconciler, writer, max_workers=config.max_workers, may_act=may_act)
    schedules = ScheduleController(schedule_store, max_workers=config.max_workers, may_act=may_act)
    campaign = None
    if elector is not None:
        controller.stop_leading()  # a standby until the Lease is ours
        schedules.stop_leading()
        elector.on_started = lambda: _leading(controller, schedules, True)
        elector.on_stopped = lambda: _leading(controller, schedules, False)
        campaign = asyncio.create_task(elector.run(), name="cloudsnap-leader-election")
    else:
        metrics.LEADER.set(1)
    classes.on_change = secrets.on_change = lambda _name: controller.retry_blocked()
    volumes.on_claim_change = lambda namespace, name: controller.wake(claim_key(namespace, name))
    volumes.on_volume_change = lambda name: controller.wake(volume_key(name))
    classes.start()
    secrets.start()
    volumes.start()
    settings = kopf.OperatorSettings()
    configure(settings, config)
    ready = asyncio.Event()
    runner = None
    if config.metrics_port:
        runner = await metrics.serve(
            config.metrics_host,
            config.metrics_port,
            lambda: ready.is_set() and classes.synced and secrets.synced,
            lambda: (
                max(controller.scheduler.stalled_for(), schedules.scheduler.stalled_for())
                < config.watchdog_seconds
            ),
        )
    await wait_for_api(api, None if config.all_namespaces else config.namespace[0])
    scope = "all namespaces" if config.all_namespaces else ", ".join(config.namespace)
    log.info("watching CloudSnapshots in %s; Secrets in %s", scope, config.operator_namespace)
    handlers = registry()
    if campaign is not None:
        kopf.on.cleanup(registry=handlers)(_releasing(campaign))
    try:
        await kopf.operator(
            registry=handlers,
            settings=settings,
            standalone=True,
            clusterwide=config.all_namespaces,
            namespaces=config.namespace,
            ready_flag=ready,
            memo=Memo(controller, schedules),
            memories=UnkeptMemories(),
        )
    finally:
        if campaign is not None:
            campaign.cancel()  # releases the Lease, after kopf's cleanup stopped the steps
            await asyncio.gather(campaign, return_exceptions=True)
        classes.stop()
        secrets.stop()
        volumes.stop()
        await accounts.aclose()
        writer.close()
        schedule_store.close()
        if runner is not None:
            await runner.cleanup()


class _FencedApiClient(kubernetes.client.ApiClient):
    """The API client of the CloudSnapshot writes, fenced where the write leaves.

    The controller checks ``may_act`` before it hands a write to the writer's threads, but a
    write can wait there (a busy pool; the process paused by SIGSTOP, a VM freeze) until after
    the Lease has passed to a successor, and would then overwrite the successor's status with a
    stale one. So every write is checked again in the thread that sends it, right before it is
    sent. Reads are not fenced.
    """

    def __init__(self, configuration: Any, may_act: Callable[[], bool]) -> None:
        super().__init__(configuration)
        self._may_act = may_act

    def call_api(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if method.upper() not in ("GET", "HEAD") and not self._may_act():
            raise NotLeading(f"{method} {url} not sent: this replica may not act now")
        return super().call_api(method, url, *args, **kwargs)


def _elector(api: Any, config: Settings) -> Elector:
    store = KubeLeaseStore(
        api, config.operator_namespace, config.lease_name, timeout=config.renew_deadline_seconds
    )
    return Elector(store, config.identity, timing=config.lease_timing())


def _releasing(campaign: asyncio.Task[None]) -> Callable[..., Awaitable[None]]:
    """A kopf cleanup handler that hands the Lease over as soon as the steps have stopped.

    kopf returns from a SIGTERM only after giving its per-object workers up to 5 s more to end,
    and a worker lives `queueing.idle_timeout` after its last event: releasing only once
    `kopf.operator` returned made a rolling update hand over in 6 s instead of 2 whenever an
    event had come in during the last seconds.
    """

    async def release_lease(memo: Memo, **_: Any) -> None:
        await memo.controller.stop()  # no step runs or starts from here on
        if memo.schedules is not None:
            await memo.schedules.stop()
        campaign.cancel()  # stops leading (may_act turns False), then releases the Lease
        await asyncio.gather(campaign, return_exceptions=True)

    return release_lease


def _leading(controller: Controller, schedules: ScheduleController, leading: bool) -> None:
    """Leadership changed: start or stop reconciling and scheduling, and say so in the metrics."""
    metrics.LEADER.set(1 if leading else 0)
    metrics.LEADER_TRANSITIONS.inc()
    if leading:
        controller.start_leading()
        schedules.start_leading()
    else:
        controller.stop_leading()
        schedules.stop_leading()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    parser = argparse.ArgumentParser(prog="cloudsnap-operator", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="run the operator against the current cluster")
    add_run_arguments(run_parser)
    crds_parser = commands.add_parser("crds", help="write the CRD YAML generated from the models")
    crds_parser.add_argument("--output", type=Path, required=True, metavar="DIR")
    args = parser.parse_args(argv)
    if args.command == "crds":
        for path in crdgen.write_crds(args.output):
            print(path)
        return 0
    try:
        config = from_arguments(args)
    except pydantic.ValidationError as exc:
        parser.error("; ".join(err["msg"] for err in exc.errors()))
    logs.configure(config.log_level, config.log_format)
    asyncio.run(run(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
