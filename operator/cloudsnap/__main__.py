"""`cloudsnap-operator`: `run` the operator, or write the `crds` YAML."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import kopf
import pydantic

from cloudsnap import logs, metrics
from cloudsnap.api import crdgen
from cloudsnap.handlers import FINALIZER, Controller, Memo, configure, registry
from cloudsnap.kube import ClassCache, KubeWriter, SecretCache, load_config, wait_for_api
from cloudsnap.reconcile import Accounts, EVSConnector, Reconciler
from cloudsnap.settings import Settings, add_run_arguments, from_arguments

log = logging.getLogger("cloudsnap")


async def run(config: Settings) -> None:
    """Run until SIGINT/SIGTERM: caches, scheduler, kopf's watch, and the metrics/probe server."""
    api = load_config()
    writer = KubeWriter(api)
    classes = ClassCache(api)
    secrets = SecretCache(api, config.operator_namespace)
    accounts = Accounts(
        classes,
        secrets,
        timeout=config.evs_timeout_seconds,
        observer=metrics.observe_evs_request,
        limiter_observer=metrics.observe_rate_limit_wait,
    )
    reconciler = Reconciler(EVSConnector(accounts), finalizer=FINALIZER, timing=config.timing())
    controller = Controller(reconciler, writer, max_workers=config.max_workers)
    classes.on_change = secrets.on_change = lambda _name: controller.retry_blocked()
    classes.start()
    secrets.start()
    settings = kopf.OperatorSettings()
    configure(settings, config)
    ready = asyncio.Event()
    runner = None
    if config.metrics_port:
        runner = await metrics.serve(
            config.metrics_host,
            config.metrics_port,
            lambda: ready.is_set() and classes.synced and secrets.synced,
            lambda: controller.scheduler.stalled_for() < config.watchdog_seconds,
        )
    await wait_for_api(api, None if config.all_namespaces else config.namespace[0])
    scope = "all namespaces" if config.all_namespaces else ", ".join(config.namespace)
    log.info("watching CloudSnapshots in %s; Secrets in %s", scope, config.operator_namespace)
    try:
        await kopf.operator(
            registry=registry(),
            settings=settings,
            standalone=True,
            clusterwide=config.all_namespaces,
            namespaces=config.namespace,
            ready_flag=ready,
            memo=Memo(controller),
        )
    finally:
        classes.stop()
        secrets.stop()
        await accounts.aclose()
        writer.close()
        if runner is not None:
            await runner.cleanup()


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
