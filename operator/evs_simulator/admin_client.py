"""Async client of the simulator's ``/_sim/`` admin API, for tests, benchmarks and the sandbox."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import httpx


class AdminClient:
    """Drives one simulator: disks, faults, call counts and snapshots behind the operator's back."""

    def __init__(self, endpoint: str, *, timeout: float = 10.0) -> None:
        self._http = httpx.AsyncClient(base_url=endpoint.rstrip("/"), timeout=timeout)

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        response = await self._http.request(method, f"/_sim/{path}", json=body)
        response.raise_for_status()
        return response.json() if response.content else None

    async def reset(self) -> None:
        """Seed disks only, no snapshots, no faults, call counts zeroed, configured settings."""
        await self._call("POST", "reset")

    async def add_volume(
        self,
        size: int = 10,
        status: str = "available",
        id: str | None = None,
        name: str | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """Create a disk (extra fields: availability_zone, enterprise_project_id, ...)."""
        body: dict[str, Any] = {"size": size, "status": status, **fields}
        if id is not None:
            body["id"] = id
        if name is not None:
            body["name"] = name
        return cast(dict[str, Any], await self._call("POST", "volumes", body))

    async def set_volume(self, id: str, **fields: Any) -> dict[str, Any]:
        """Change a disk, e.g. ``status="in-use"`` to test the force rule."""
        return cast(dict[str, Any], await self._call("PATCH", f"volumes/{id}", fields))

    async def remove_volume(self, id: str) -> None:
        """Delete a disk instantly, outside EVS's API (drift)."""
        await self._call("DELETE", f"volumes/{id}")

    async def volumes(self) -> list[dict[str, Any]]:
        """Every disk not yet gone (seeded, added, or made through EVS's API), with its
        ``content_version``."""
        return cast(list[dict[str, Any]], await self._call("GET", "volumes"))

    async def volume(self, id: str) -> dict[str, Any]:
        """One disk as ``volumes()`` shows it; KeyError if it is gone or never was."""
        found = [volume for volume in await self.volumes() if volume["id"] == id]
        if not found:
            raise KeyError(id)
        return found[0]

    async def write(self, id: str) -> int:
        """Write to a disk: its content version goes up by one; returns the new version."""
        volume = await self._call("POST", f"volumes/{id}/write")
        return int(volume["content_version"])

    async def set_faults(self, rules: Sequence[Mapping[str, Any]], seed: int = 0) -> None:
        """Replace the fault plan; the same seed replays the same faults."""
        await self._call("PUT", "faults", {"seed": seed, "rules": [dict(rule) for rule in rules]})

    async def clear_faults(self) -> None:
        await self._call("DELETE", "faults")

    async def settings(self) -> dict[str, Any]:
        """What may change while running (``list_lag_seconds``, ``rate_limits``), as it stands."""
        return cast(dict[str, Any], await self._call("GET", "settings"))

    async def set_list_lag(self, seconds: float) -> dict[str, Any]:
        """Hide snapshots from list until they are this old (show sees them at once)."""
        body = {"list_lag_seconds": seconds}
        return cast(dict[str, Any], await self._call("PATCH", "settings", body))

    async def set_volume_quota(self, quota: int | None) -> dict[str, Any]:
        """How many disks the project may have (``None``: unlimited); more are refused."""
        body = {"volume_quota": quota}
        return cast(dict[str, Any], await self._call("PATCH", "settings", body))

    async def set_rate_limits(
        self, limits: Mapping[str, float | tuple[float, int]]
    ) -> dict[str, Any]:
        """Replace the throttling limits: ``{operation: rate}`` or ``{operation: (rate, burst)}``.

        Operations left out are unlimited; every bucket starts full.
        """
        body = {
            operation: {"rate": limit[0], "burst": limit[1]}
            if isinstance(limit, tuple)
            else {"rate": limit}
            for operation, limit in limits.items()
        }
        return cast(dict[str, Any], await self._call("PATCH", "settings", {"rate_limits": body}))

    async def throttled(self) -> dict[str, int]:
        """Calls per operation answered 429 APIG.0308 by the throttle (and so not applied)."""
        return cast(dict[str, int], await self._call("GET", "throttled"))

    async def calls(self) -> dict[str, int]:
        """Requests received per operation, failed, throttled and faulted ones included."""
        return cast(dict[str, int], await self._call("GET", "calls"))

    async def calls_by_agent(self) -> dict[str, dict[str, int]]:
        """``calls()`` split by the ``User-Agent`` each request came with (``""``: none)."""
        return cast(dict[str, dict[str, int]], await self._call("GET", "calls/by-agent"))

    async def snapshots(self) -> list[dict[str, Any]]:
        """Every snapshot ever made, with ``deleted`` telling the gone ones."""
        return cast(list[dict[str, Any]], await self._call("GET", "snapshots"))

    async def remove_snapshot(self, id: str) -> None:
        """Delete a snapshot instantly, outside EVS's API (drift)."""
        await self._call("DELETE", f"snapshots/{id}")

    async def set_snapshot_status(self, id: str, status: str) -> dict[str, Any]:
        """Pin a snapshot's status; transitions in flight stop."""
        return cast(
            dict[str, Any], await self._call("PATCH", f"snapshots/{id}", {"status": status})
        )

    async def aclose(self) -> None:
        """Close the pooled connections (``contextlib.aclosing`` works with this)."""
        await self._http.aclose()
