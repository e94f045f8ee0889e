"""The aiohttp application: EVS's six operations behind the gateway checks, plus ``/_sim/``.

Every EVS request is counted, authenticated, throttled, then exposed to the fault plan before it
reaches the store. The admin API answers only on a literal ``/_sim/...`` request target: a path
that reaches an admin route through dot segments or percent-encoding is answered like any unknown
path.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, NoReturn, TypeVar
from urllib.parse import urlencode

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from evs_simulator import auth
from evs_simulator.calls import CallLog
from evs_simulator.config import SimulatorConfig
from evs_simulator.errors import SimError, bad_request, throttled
from evs_simulator.faults import FaultPlan, FaultRule, Faults, Operation
from evs_simulator.state import Store, Volume
from evs_simulator.throttle import RateLimit, Throttle

ADMIN_PREFIX = "/_sim/"
IDEMPOTENCY_HEADER = "X-Client-Token"
log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class StatusPatch(BaseModel):
    """Body of ``PATCH /_sim/snapshots/{id}``."""

    model_config = ConfigDict(extra="forbid")

    status: str


class Settings(BaseModel):
    """Body of ``GET``/``PATCH /_sim/settings``: what may change while running.

    A PATCH changes only the fields it names; a reset goes back to the configured values.
    """

    model_config = ConfigDict(extra="forbid")

    list_lag_seconds: float = Field(default=0.0, ge=0.0, allow_inf_nan=False)
    rate_limits: dict[Operation, RateLimit] = {}
    volume_quota: int | None = Field(default=None, ge=0)


def unknown_api() -> SimError:
    """The gateway's answer for a path no API is published on."""
    return SimError(
        404, "APIG.0101", "The API does not exist or has not been published.", "gateway"
    )


def is_plain_admin_target(raw_target: str) -> bool:
    """True only for a literal ``/_sim/...`` path: no encoding, no dot or empty segments."""
    path = raw_target.partition("?")[0]
    if not path.startswith(ADMIN_PREFIX) or "%" in path or "\\" in path:
        return False
    segments = path[1:].split("/")
    return all(segment not in ("", ".", "..") for segment in segments)


class Simulator:
    """One simulated EVS project: store, throttle, fault plan and the calls received."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.store = Store(config)
        self.throttle = Throttle(config.rate_limits)
        self.faults = Faults()
        self.calls = CallLog()
        self.stopping = asyncio.Event()
        self._operations: dict[Handler, Operation] = {}
        self._late_creates: set[asyncio.Task[None]] = set()

    def reset(self) -> None:
        """Back to the start: seed disks only, no faults, no counted calls, configured settings.

        Late creates still pending are dropped, so nothing from before appears after.
        """
        self._drop_late_creates()
        self.store.reset()
        self.throttle.set(self.config.rate_limits)
        self.faults.clear()
        self.calls = CallLog()

    def stop(self) -> None:
        """End hung requests and drop pending late creates: the server is going away."""
        self.stopping.set()
        self._drop_late_creates()

    def _drop_late_creates(self) -> None:
        for task in self._late_creates:
            task.cancel()

    def application(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=1024**2)
        evs = "/v2/{project_id}/cloudsnapshots"
        disks = "/v2/{project_id}/cloudvolumes"
        evs_routes: list[tuple[str, str, Handler, Operation]] = [
            ("POST", evs, self._create, "create"),
            ("GET", evs + "/detail", self._list, "list"),
            ("GET", evs + "/{snapshot_id}", self._show, "show"),
            ("PUT", evs + "/{snapshot_id}", self._update, "update"),
            ("DELETE", evs + "/{snapshot_id}", self._delete, "delete"),
            ("POST", evs + "/{snapshot_id}/rollback", self._rollback, "rollback"),
            ("POST", "/v2.1/{project_id}/cloudvolumes", self._create_volume, "create_volume"),
            ("GET", "/v1/{project_id}/jobs/{job_id}", self._show_job, "show_job"),
            ("GET", disks + "/detail", self._list_volumes, "list_volumes"),
            ("GET", disks + "/{volume_id}", self._show_volume, "show_volume"),
            ("DELETE", disks + "/{volume_id}", self._delete_volume, "delete_volume"),
        ]
        for method, path, handler, operation in evs_routes:
            app.router.add_route(method, path, handler)
            self._operations[handler] = operation
        admin = [
            ("POST", "reset", self._admin_reset),
            ("GET", "volumes", self._admin_volumes),
            ("POST", "volumes", self._admin_add_volume),
            ("PATCH", "volumes/{volume_id}", self._admin_set_volume),
            ("DELETE", "volumes/{volume_id}", self._admin_remove_volume),
            ("POST", "volumes/{volume_id}/write", self._admin_write),
            ("PUT", "faults", self._admin_set_faults),
            ("DELETE", "faults", self._admin_clear_faults),
            ("GET", "settings", self._admin_settings),
            ("PATCH", "settings", self._admin_set_settings),
            ("GET", "calls", self._admin_calls),
            ("GET", "calls/by-agent", self._admin_calls_by_agent),
            ("GET", "throttled", self._admin_throttled),
            ("GET", "snapshots", self._admin_snapshots),
            ("DELETE", "snapshots/{snapshot_id}", self._admin_remove_snapshot),
            ("PATCH", "snapshots/{snapshot_id}", self._admin_set_snapshot),
        ]
        for method, path, handler in admin:
            app.router.add_route(method, ADMIN_PREFIX + path, handler)
        return app

    # -- pipeline -----------------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        request_id = uuid.uuid4().hex
        try:
            response = await self._dispatch(request, handler)
        except SimError as err:
            response = web.json_response(err.body(request_id), status=err.status)
        except (web.HTTPNotFound, web.HTTPMethodNotAllowed):
            missing = unknown_api()
            response = web.json_response(missing.body(request_id), status=missing.status)
        response.headers["X-Request-Id"] = request_id
        return response

    async def _dispatch(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        route = request.match_info.route
        name = self._operations.get(route.handler)
        if name is None:
            admin = route.resource is not None and route.resource.canonical.startswith(ADMIN_PREFIX)
            if admin and not is_plain_admin_target(request.raw_path):
                raise unknown_api()
            return await handler(request)
        arrived = asyncio.get_running_loop().time()
        self.calls.record(name, request.headers.get("User-Agent", ""))
        body = await request.read()
        headers = {key.lower(): value for key, value in request.headers.items()}
        caller = auth.verify(self.config, request.method, request.raw_path, headers, body)
        auth.check_path_project(self.config, request.match_info["project_id"])
        limit = self.throttle.take(caller, name)
        if limit is not None:
            self.calls.throttled[name] += 1
            raise throttled(limit.rate)
        decision = self.faults.decide(name)
        if decision.latency:
            await asyncio.sleep(decision.latency)
        fault = decision.fault
        if fault is not None and fault.kind in ("error", "refusal"):
            raise fault.error()
        if fault is not None and fault.kind == "hang":
            await self._hang()
        if fault is not None and fault.kind == "late_apply":
            return await self._late_create(request, name, fault, arrived)
        response = await handler(request)
        if fault is not None and fault.kind == "lost_response":
            _cut(request)
        return response

    async def _hang(self) -> NoReturn:
        """Leave the request unanswered until the client gives up or the server stops."""
        await self.stopping.wait()
        raise SimError(503, "EVS.5503", "The service is shutting down.")

    async def _late_create(
        self, request: web.Request, operation: Operation, rule: FaultRule, arrived: float
    ) -> web.StreamResponse:
        """Check a create and answer nothing, then apply it later: the client cannot know."""
        body = await _json(request)
        apply: Callable[[], object]
        if operation == "create":
            self.store.check_create(body)
            apply = partial(self.store.create, body)
        else:
            token = request.headers.get(IDEMPOTENCY_HEADER)
            self.store.check_create_volume(body, token)
            apply = partial(self.store.create_volume, body, token)
        task = asyncio.create_task(self._apply_late(apply, arrived + rule.apply_after_seconds))
        self._late_creates.add(task)
        task.add_done_callback(self._late_creates.discard)
        if rule.then == "hang":
            await self._hang()
        _cut(request)
        return web.Response(status=202)  # never sent: the connection is cut

    async def _apply_late(self, apply: Callable[[], object], at: float) -> None:
        await asyncio.sleep(at - asyncio.get_running_loop().time())
        try:
            apply()
        except SimError as err:
            log.info("late create refused when applied: %s %s", err.code, err.message)

    # -- EVS ----------------------------------------------------------------------------------

    async def _create(self, request: web.Request) -> web.Response:
        return web.json_response(self.store.create(await _json(request)), status=202)

    async def _show(self, request: web.Request) -> web.Response:
        return web.json_response(self.store.show(request.match_info["snapshot_id"]))

    async def _list(self, request: web.Request) -> web.Response:
        return web.json_response(self.store.list_snapshots(*_list_query(request)))

    async def _update(self, request: web.Request) -> web.Response:
        snapshot_id = request.match_info["snapshot_id"]
        return web.json_response(self.store.update(snapshot_id, await _json(request)))

    async def _delete(self, request: web.Request) -> web.Response:
        self.store.delete(request.match_info["snapshot_id"])
        return web.Response(status=202)

    async def _rollback(self, request: web.Request) -> web.Response:
        snapshot_id = request.match_info["snapshot_id"]
        return web.json_response(self.store.rollback(snapshot_id, await _json(request)), status=202)

    async def _create_volume(self, request: web.Request) -> web.Response:
        token = request.headers.get(IDEMPOTENCY_HEADER)
        answer = self.store.create_volume(await _json(request), token)
        return web.json_response(answer, status=202)

    async def _show_job(self, request: web.Request) -> web.Response:
        return web.json_response(self.store.show_job(request.match_info["job_id"]))

    async def _show_volume(self, request: web.Request) -> web.Response:
        return web.json_response(self.store.show_volume(request.match_info["volume_id"]))

    async def _list_volumes(self, request: web.Request) -> web.Response:
        return web.json_response(self.store.list_volumes(*_list_query(request)))

    async def _delete_volume(self, request: web.Request) -> web.Response:
        answer = self.store.delete_volume(request.match_info["volume_id"])
        return web.json_response(answer, status=202)

    # -- admin --------------------------------------------------------------------------------

    async def _admin_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"reset": True})

    async def _admin_volumes(self, request: web.Request) -> web.Response:
        return web.json_response(self.store.admin_volumes())

    async def _admin_add_volume(self, request: web.Request) -> web.Response:
        fields = await _admin_object(request)
        fields.setdefault("id", None)
        fields["id"] = fields["id"] or self.store.new_id()
        volume = _admin_model(Volume, fields)
        if volume.id in self.store.volumes:
            return web.json_response({"error": f"volume {volume.id} exists"}, status=409)
        self.store.volumes[volume.id] = volume
        return web.json_response(volume.model_dump(), status=201)

    async def _admin_set_volume(self, request: web.Request) -> web.Response:
        volume = self.store.volumes.get(request.match_info["volume_id"])
        if volume is None:
            return web.json_response({"error": "no such volume"}, status=404)
        fields = await _admin_object(request)
        changed = _admin_model(Volume, {**volume.model_dump(), **fields, "id": volume.id})
        for key in fields:
            setattr(volume, key, getattr(changed, key))
        if "status" in fields:
            volume.pin()
        return web.json_response(volume.model_dump())

    async def _admin_remove_volume(self, request: web.Request) -> web.Response:
        self.store.remove_volume(request.match_info["volume_id"])
        return web.Response(status=204)

    async def _admin_write(self, request: web.Request) -> web.Response:
        return web.json_response(self.store.write(request.match_info["volume_id"]))

    async def _admin_set_faults(self, request: web.Request) -> web.Response:
        plan = _admin_model(FaultPlan, await _admin_object(request))
        self.faults.set(plan)
        return web.json_response(plan.model_dump())

    async def _admin_clear_faults(self, request: web.Request) -> web.Response:
        self.faults.clear()
        return web.json_response({"rules": []})

    def _settings(self) -> Settings:
        return Settings.model_validate(
            {
                "list_lag_seconds": self.store.list_lag_seconds,
                "rate_limits": self.throttle.limits,
                "volume_quota": self.store.volume_quota,
            }
        )

    async def _admin_settings(self, request: web.Request) -> web.Response:
        return web.json_response(self._settings().model_dump())

    async def _admin_set_settings(self, request: web.Request) -> web.Response:
        patch = _admin_model(Settings, await _admin_object(request))
        if "list_lag_seconds" in patch.model_fields_set:
            self.store.list_lag_seconds = patch.list_lag_seconds
        if "rate_limits" in patch.model_fields_set:
            self.throttle.set(patch.rate_limits)
        if "volume_quota" in patch.model_fields_set:
            self.store.volume_quota = patch.volume_quota
        return web.json_response(self._settings().model_dump())

    async def _admin_calls(self, request: web.Request) -> web.Response:
        return web.json_response(self.calls.received)

    async def _admin_calls_by_agent(self, request: web.Request) -> web.Response:
        return web.json_response(self.calls.by_agent)

    async def _admin_throttled(self, request: web.Request) -> web.Response:
        return web.json_response(self.calls.throttled)

    async def _admin_snapshots(self, request: web.Request) -> web.Response:
        return web.json_response(self.store.all_snapshots())

    async def _admin_remove_snapshot(self, request: web.Request) -> web.Response:
        self.store.remove(request.match_info["snapshot_id"])
        return web.Response(status=204)

    async def _admin_set_snapshot(self, request: web.Request) -> web.Response:
        patch = _admin_model(StatusPatch, await _admin_object(request))
        snapshot_id = request.match_info["snapshot_id"]
        return web.json_response(self.store.force_status(snapshot_id, patch.status))


def _list_query(
    request: web.Request,
) -> tuple[dict[str, list[str]], Callable[[int, int], str]]:
    """A list request's query (repeated keys kept) and the renderer of its ``next`` link."""
    query = {key: request.rel_url.query.getall(key) for key in request.rel_url.query}
    kept = [(k, v) for k, v in request.rel_url.query.items() if k not in ("limit", "offset")]
    base = f"{request.scheme}://{request.host}{request.rel_url.path}"

    def link(limit: int, offset: int) -> str:
        return f"{base}?{urlencode([*kept, ('limit', limit), ('offset', offset)])}"

    return query, link


def _cut(request: web.Request) -> None:
    """Drop the connection without an answer, as a lost network path would."""
    if request.transport is not None:
        request.transport.abort()


async def _json(request: web.Request) -> Any:
    """The EVS request body; anything that is not JSON is EVS.1013."""
    try:
        return json.loads(await request.read())
    except ValueError:
        raise bad_request("EVS.1013", "Invalid request body: not valid JSON.") from None


async def _admin_object(request: web.Request) -> dict[str, Any]:
    """An admin request body: a JSON object (an empty body counts as ``{}``)."""
    raw = await request.read()
    try:
        body = json.loads(raw) if raw else {}
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise _admin_error("the body must be a JSON object")
    return body


def _admin_model(model: type[M], fields: dict[str, Any]) -> M:
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        raise _admin_error(exc.errors(include_url=False)) from None


def _admin_error(detail: Any) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(
        text=json.dumps({"error": detail}, default=str), content_type="application/json"
    )
