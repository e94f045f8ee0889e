"""Class and credentials resolution, and one cached EVS client per (endpoint, credentials).

The reconcile code reads classes and Secrets through two small protocols, so it runs against the
Kubernetes watch caches in the operator and against plain dictionaries in tests. Each class gets
an ``Account``: its parsed spec, an EVS client paced by the class's rate control (adaptive per
operation, under the class's optional ceiling), and the batch poller that shares that client. The
account is rebuilt only when what it was built from changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import pydantic

from cloudsnap.api.constants import SECRET_ACCESS_KEY as ACCESS_KEY
from cloudsnap.api.constants import SECRET_SECRET_KEY as SECRET_KEY
from cloudsnap.api.constants import SECRET_SECURITY_TOKEN as SECURITY_TOKEN
from cloudsnap.api.models import CloudSnapshotClass, CloudSnapshotClassSpec, invalid_fields
from cloudsnap.evs.auth import AKSKAuth
from cloudsnap.evs.client import EVSClient, Observer
from cloudsnap.providers.evs.poller import BatchPoller
from cloudsnap.providers.evs.ratelimit import Adaptation, RateControl, TokenBucket
from cloudsnap.runtime.failures import (
    CLASS_NOT_FOUND,
    INVALID_CLASS,
    INVALID_CREDENTIALS,
    SECRET_NOT_FOUND,
    Failure,
    Kind,
    LocalFailure,
)

# The class fields the account's client and poller are built from. The others (tenancy rules,
# the default deletion policy) are read from Account.spec at each step: editing them gives the
# account the new spec and keeps its client, its pace and its batched polls.
CLIENT_FIELDS = frozenset(
    {
        "region",
        "project_id",
        "endpoint",
        "credentials_secret_ref",
        "ca_bundle",
        "insecure_skip_tls_verify",
        "rate_limit",
    }
)
# A call the gateway throttles is sent again this many times within the step, each after the
# slower pace the throttling brought, before the step gives up and is requeued quietly.
THROTTLE_RETRIES = 2


class ClassReader(Protocol):
    """Reads CloudSnapshotClass objects (raw Kubernetes bodies).

    As with a watch cache, an object read is never changed afterwards (a change is a new
    object): what is derived from one is kept by its identity. The same holds for SecretReader.
    """

    async def get_class(self, name: str) -> Mapping[str, Any] | None:
        """The class called ``name``, or None."""
        ...

    async def list_classes(self) -> Sequence[Mapping[str, Any]]:
        """Every class (to find the default one)."""
        ...


class SecretReader(Protocol):
    """Reads Secrets in the operator's namespace, with their values already decoded."""

    async def get_secret(self, name: str) -> Mapping[str, str] | None:
        """The Secret's data, or None when there is no such Secret."""
        ...


@dataclass(frozen=True)
class Account:
    """Everything needed to talk to EVS for one class."""

    class_name: str
    spec: CloudSnapshotClassSpec
    client: EVSClient
    poller: BatchPoller
    fingerprint: str


class Accounts:
    """Resolves a resource's class to an Account, caching clients across resources."""

    def __init__(
        self,
        classes: ClassReader,
        secrets: SecretReader,
        *,
        timeout: float = 30.0,
        poll_window: float = 0.2,
        poll_spacing: float = 0.0,
        observer: Observer | None = None,
        limiter_observer: Callable[[str, float], None] | None = None,
        rate_observer: Callable[[str, str, float], None] | None = None,
        adaptation: Adaptation | None = None,
        guard: Callable[[], bool] | None = None,
        user_agent: str = "cloudsnap",
    ) -> None:
        """``poll_window`` is how long a poll round gathers, ``poll_spacing`` the least time
        between two rounds of a class (the poll interval: resources polling at it share rounds).
        ``observer`` hears every EVS request (operation, outcome, seconds);
        ``limiter_observer`` every wait for a class's pace (class, seconds); ``rate_observer``
        every change of a class's pace (class, operation, calls per second)."""
        self._classes = classes
        self._secrets = secrets
        self._timeout = timeout
        self._poll_window = poll_window
        self._poll_spacing = poll_spacing
        self._observer = observer
        self._limiter_observer = limiter_observer
        self._rate_observer = rate_observer
        self._adaptation = adaptation
        self._guard = guard
        self._user_agent = user_agent
        self._accounts: dict[str, Account] = {}
        # Per class: the cached body it was parsed from, and the parsed class ...
        self._parsed: dict[str, tuple[Mapping[str, Any], CloudSnapshotClass]] = {}
        # ... and the parsed class and Secret data its account was built from. Every step
        # resolves its class; while the watch caches hold the same objects (nothing changed),
        # that costs two identity checks instead of a parse, a dump and a digest.
        self._built_from: dict[str, tuple[CloudSnapshotClass, Mapping[str, str]]] = {}
        self._retired: set[asyncio.Task[None]] = set()

    async def resolve(self, class_name: str | None) -> Account:
        """The Account for ``class_name`` (or the default class); LocalFailure when unusable.

        Messages name the class and the Secret, never a value from the Secret.
        """
        cls = await self._find_class(class_name)
        name = cls.metadata.name
        ref = cls.spec.credentials_secret_ref.name
        data = await self._secrets.get_secret(ref)
        if data is None:
            raise _blocked(SECRET_NOT_FOUND, f"class {name}: Secret {ref} not found")
        current = self._accounts.get(name)
        built_from = self._built_from.get(name, (None, None))
        if current is not None and built_from[0] is cls and built_from[1] is data:
            return current
        access_key = (data.get(ACCESS_KEY) or "").strip()
        secret_key = (data.get(SECRET_KEY) or "").strip()
        token = (data.get(SECURITY_TOKEN) or "").strip() or None
        missing = [
            key for key, value in ((ACCESS_KEY, access_key), (SECRET_KEY, secret_key)) if not value
        ]
        if missing:
            raise _blocked(
                INVALID_CREDENTIALS,
                f"class {name}: Secret {ref} lacks {' and '.join(missing)}",
            )
        fingerprint = _fingerprint(cls.spec, access_key, secret_key, token)
        self._built_from[name] = (cls, data)
        if current is not None and current.fingerprint == fingerprint:
            if current.spec != cls.spec:
                current = self._accounts[name] = dataclasses.replace(current, spec=cls.spec)
            return current
        account = self._build(name, cls.spec, access_key, secret_key, token, fingerprint)
        self._accounts[name] = account
        if current is not None:
            self._retire(current)
        return account

    async def _find_class(self, class_name: str | None) -> CloudSnapshotClass:
        if class_name:
            raw = await self._classes.get_class(class_name)
            if raw is None:
                self._parsed.pop(class_name, None)
                raise _blocked(CLASS_NOT_FOUND, f"CloudSnapshotClass {class_name} not found")
            return self._parse(raw, class_name)
        defaults = []
        for raw in await self._classes.list_classes():
            cls = self._parse(raw, str(raw.get("metadata", {}).get("name", "")))
            if cls.is_default():
                defaults.append((str(raw.get("metadata", {}).get("creationTimestamp", "")), cls))
        if not defaults:
            raise _blocked(
                CLASS_NOT_FOUND,
                "no className given and no CloudSnapshotClass is annotated as the default",
            )
        # Several defaults: the newest wins, as for Kubernetes StorageClasses.
        defaults.sort(key=lambda item: (item[0], item[1].metadata.name))
        return defaults[-1][1]

    def _parse(self, raw: Mapping[str, Any], name: str) -> CloudSnapshotClass:
        """The class parsed from ``raw``, parsed once per cached body (an invalid one each time,
        to fail each step with its reason)."""
        kept = self._parsed.get(name)
        if kept is not None and kept[0] is raw:
            return kept[1]
        cls = _parse_class(raw, name)
        self._parsed[name] = (raw, cls)
        return cls

    def _build(
        self,
        name: str,
        spec: CloudSnapshotClassSpec,
        access_key: str,
        secret_key: str,
        token: str | None,
        fingerprint: str,
    ) -> Account:
        limit = spec.rate_limit
        control = RateControl(
            self._adaptation,
            ceiling=None if limit is None else TokenBucket(limit.requests_per_second, limit.burst),
            wait_observer=_for_class(self._limiter_observer, name),
            rate_observer=_for_class(self._rate_observer, name),
        )
        client = EVSClient(
            spec.evs_endpoint(),
            AKSKAuth(access_key, secret_key, spec.project_id, security_token=token),
            spec.project_id,
            timeout=self._timeout,
            verify=spec.tls_verify(),
            observer=self._observer,
            limiter=control.acquire,
            guard=self._guard,
            throttle_retries=THROTTLE_RETRIES,
            user_agent=self._user_agent,
        )
        poller = BatchPoller(client, window=self._poll_window, spacing=self._poll_spacing)
        return Account(name, spec, client, poller, fingerprint)

    def _retire(self, account: Account) -> None:
        """Close a replaced account: its poller at once (whoever waits on it gets a retryable
        error and comes back to the new account), its client once requests in flight on it have
        had time to end."""

        async def close_later() -> None:
            await account.poller.aclose()
            await asyncio.sleep(self._timeout + self._poll_window)
            await account.client.aclose()

        task = asyncio.create_task(close_later())
        self._retired.add(task)
        task.add_done_callback(self._retired.discard)

    async def aclose(self) -> None:
        """Close every client, current and retired."""
        for task in list(self._retired):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for account in self._accounts.values():
            await _close(account)
        self._accounts.clear()


async def _close(account: Account) -> None:
    await account.poller.aclose()
    await account.client.aclose()


def _for_class(observer: Callable[..., None] | None, class_name: str) -> Callable[..., None] | None:
    """An observer that hears a class's measures, told the class's name first."""
    return None if observer is None else functools.partial(observer, class_name)


def _blocked(code: str, message: str) -> LocalFailure:
    return LocalFailure(Failure(code, message, Kind.BLOCKED))


def _parse_class(raw: Mapping[str, Any], name: str) -> CloudSnapshotClass:
    try:
        return CloudSnapshotClass.model_validate(raw)
    except pydantic.ValidationError as exc:
        fields = invalid_fields(exc)
        raise _blocked(INVALID_CLASS, f"CloudSnapshotClass {name} is invalid: {fields}") from None


def _fingerprint(
    spec: CloudSnapshotClassSpec, access_key: str, secret_key: str, token: str | None
) -> str:
    """A digest of what the account's client is built from (CLIENT_FIELDS and the credentials);
    equal digests share one client."""
    built_from = spec.model_dump_json(by_alias=True, include=set(CLIENT_FIELDS))
    material = "\0".join([built_from, access_key, secret_key, token or ""])
    return hashlib.sha256(material.encode()).hexdigest()
