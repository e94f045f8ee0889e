"""The EVS implementation of the external client: what EVS calls things and how it fails.

Everything EVS-specific that the lifecycle needs lives here: the status words and their generic
``State``, the error codes and their class (docs/evs.md), the owner-UID metadata tag that lets a
snapshot be recognised again after a lost create answer, and the account a class resolves to.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import AsyncIterator, Awaitable, Iterator
from typing import TypeVar
from urllib.parse import urlsplit

from cloudsnap.api.constants import (
    DISK_FULL_CODE,
    OWNER_NAME_METADATA_KEY,
    OWNER_NAMESPACE_METADATA_KEY,
    OWNER_UID_METADATA_KEY,
)
from cloudsnap.api.models import AccountRef
from cloudsnap.controllers.snapshot.external import (
    Changes,
    Connection,
    CreateRequest,
    ExternalSnapshot,
    NotWorthSurveying,
    State,
)
from cloudsnap.evs.client import UNSET
from cloudsnap.evs.errors import EVSAPIError, EVSError, EVSNotSent
from cloudsnap.evs.models import CreateSnapshotRequest, ListSnapshotsQuery
from cloudsnap.evs.models import Snapshot as EVSSnapshot
from cloudsnap.providers.evs.accounts import Account, Accounts
from cloudsnap.providers.evs.poller import DEFAULT_IDS_PER_CALL
from cloudsnap.runtime.failures import NOT_LEADING, Cause, ExternalError, Failure, Kind

_T = TypeVar("_T")
DELETING_PHASE = "deleting"
# A quarter of EVS's largest list page: a page is parsed whole, and at 10,000 snapshots a sweep in
# pages of 1,000 left 4 MiB more resident memory than in pages of 250 (40 calls a sweep).
SURVEY_PAGE = 250
_STATES = {
    "creating": State.CREATING,
    "available": State.READY,
    "error": State.FAILED,
    DELETING_PHASE: State.DELETING,
    "error_deleting": State.DELETE_FAILED,
}

AUTH_CODES = frozenset({"APIG.0301", "EVS.5401", "EVS.5403", "EVS.0001", "EVS.0002"})
# error_deleting (EVS.2019), not available (EVS.2043), delete refused in this status (EVS.1047).
_BLOCKED_CODES = AUTH_CODES | {DISK_FULL_CODE, "EVS.2019", "EVS.2043", "EVS.1047"}
# Cinder's wording for a disk in a status that allows no snapshot, which EVS inherits
# (docs/evs.md, "Errors"), and the part of it that says the disk is attached.
_DISK_STATUS_HINTS = ("in-use", "must be available")
_ATTACHED_WORDING = "current status is: in-use"
# The operations that change an existing snapshot, and how a person names them.
_CHANGES = {"update": "rename", "delete": "delete"}
INVALID_SNAPSHOT_ID = "EVS.2045"
# Codes saying the request itself is malformed (an ID, the body, a list parameter, a name or
# description EVS will not take): sending it again cannot help, changing it can.
_MALFORMED_CODES = frozenset(
    {"EVS.1002", "EVS.1013", "EVS.1023", "EVS.1052", INVALID_SNAPSHOT_ID, "EVS.5400"}
)
# Cinder's InvalidSnapshot, which EVS inherits, refuses for the snapshot's state (its refusals of
# an input say "Invalid input received").
_SNAPSHOT_STATE_WORDING = "Invalid snapshot"
_BUSY = (
    "EVS will not {verb} the snapshot in its current state: it is busy (a disk being created"
    " from it, a backup or a rollback) or its status is changing"
)
# What blocks a refused change, in plain words, by EVS code (docs/evs.md, "Refusals").
_REFUSALS = {
    "EVS.1047": _BUSY,
    "EVS.2043": _BUSY,
    "EVS.5400": _BUSY,  # only reaches here as a refusal of the snapshot's state (``_refused``)
    "EVS.2089": (
        "the disk is replicated by SDRS (Storage Disaster Recovery Service), and EVS will not"
        " {verb} its snapshots while it is"
    ),
}
_UNKNOWN_REFUSAL = "EVS refused to {verb} the snapshot with a code the operator does not know"


class EVSConnector:
    """Connects a class to its EVS account (a Connector)."""

    def __init__(self, accounts: Accounts) -> None:
        self._accounts = accounts
        # The connection made for each class's current account: every step connects.
        self._connections: dict[str, tuple[Account, Connection]] = {}

    async def connect(self, class_name: str | None) -> Connection:
        """The class's account and an EVS client bound to it; LocalFailure when unusable."""
        account = await self._accounts.resolve(class_name)
        kept = self._connections.get(account.class_name)
        if kept is not None and kept[0] is account:
            return kept[1]
        connection = Connection(
            class_name=account.class_name,
            account=account_ref(account),
            class_spec=account.spec,
            client=EVSExternal(account),
        )
        self._connections[account.class_name] = (account, connection)
        return connection


def account_ref(account: Account) -> AccountRef:
    """Where snapshots made with the account live: region, project and endpoint host."""
    spec = account.spec
    return AccountRef(
        class_name=account.class_name,
        region=spec.region,
        project_id=spec.project_id,
        endpoint=urlsplit(spec.evs_endpoint()).netloc,
    )


class EVSExternal:
    """Snapshot operations over one account's client and batch poller (an ExternalClient)."""

    def __init__(self, account: Account) -> None:
        self._account = account

    async def observe(self, snapshot_id: str, *, recent: bool = False) -> ExternalSnapshot | None:
        """Batched with every other resource of the class polling now (one list call)."""
        with self._failing_as("list"):
            found = await self._account.poller.refresh(snapshot_id, recent=recent)
        return None if found is None else _external(found)

    async def confirm(self, snapshot_id: str) -> ExternalSnapshot | None:
        """A direct show: a 404 here is EVS's own word that the snapshot is gone."""
        found = await unless_gone(
            self._account, "show", self._account.client.show_snapshot(snapshot_id)
        )
        return None if found is None else _external(found)

    async def survey(self, wanted: int) -> AsyncIterator[ExternalSnapshot]:
        """The whole account, a call per ``SURVEY_PAGE`` snapshots, while that is no more calls
        than asking for the ``wanted`` ones by ID, a call per hundred. A snapshot on two pages
        (the offsets moved) comes twice, which the sweep does not mind."""
        client = self._account.client
        query = ListSnapshotsQuery(limit=SURVEY_PAGE)
        with self._failing_as("list"):
            page = await client.list_snapshots(query)
            if math.ceil(page.count / SURVEY_PAGE) > math.ceil(wanted / DEFAULT_IDS_PER_CALL):
                raise NotWorthSurveying(f"{page.count} snapshots for {wanted}")
            while True:
                for snapshot in page.snapshots:
                    yield _external(snapshot)
                if page.next_offset is None:
                    return
                page = await client.list_snapshots(
                    query.model_copy(update={"offset": page.next_offset})
                )

    async def find_owned(self, volume_id: str, owner_uid: str) -> list[ExternalSnapshot]:
        """List the disk's snapshots (by volume_id, never by name: names change) and keep the
        ones tagged with the owner. A disk holds few snapshots (EVS allows 7), so one page."""
        query = ListSnapshotsQuery(volume_id=volume_id)
        with self._failing_as("list"):
            owned = [
                _external(snapshot)
                async for snapshot in self._account.client.iter_snapshots(query)
                if snapshot.metadata.get(OWNER_UID_METADATA_KEY) == owner_uid
            ]
        return sorted(owned, key=lambda snap: (snap.created_at, snap.id))

    async def create(self, request: CreateRequest) -> ExternalSnapshot:
        """POST the snapshot, always tagged with its owner's identity."""
        owner = request.owner
        metadata = dict(request.metadata) | {
            OWNER_UID_METADATA_KEY: owner.uid,
            OWNER_NAMESPACE_METADATA_KEY: owner.namespace,
            OWNER_NAME_METADATA_KEY: owner.name,
        }
        body = CreateSnapshotRequest(
            volume_id=request.volume_id,
            name=request.name,
            description=request.description,
            force=request.force,
            metadata=metadata,
        )
        with self._failing_as("create"):
            return _external(await self._account.client.create_snapshot(body))

    async def update(self, snapshot_id: str, changes: Changes) -> ExternalSnapshot:
        """PUT only the fields that change."""
        name = UNSET if changes.name is None else changes.name
        description = UNSET if changes.description is None else changes.description
        with self._failing_as("update"):
            updated = await self._account.client.update_snapshot(
                snapshot_id, name=name, description=description
            )
        return _external(updated)

    async def delete(self, snapshot: ExternalSnapshot) -> ExternalSnapshot | None:
        """DELETE the snapshot (EVS answers 202 and an empty body: it is now ``deleting``);
        None when EVS says it is already gone."""
        try:
            with self._failing_as("delete"):
                await self._account.client.delete_snapshot(snapshot.id)
        except ExternalError as exc:
            if exc.failure.cause is Cause.NOT_FOUND:
                return None
            raise
        return dataclasses.replace(snapshot, state=State.DELETING, phase=DELETING_PHASE)

    def _failing_as(self, operation: str) -> contextlib.AbstractContextManager[None]:
        return failing_as(self._account, operation)


@contextlib.contextmanager
def failing_as(account: Account, operation: str) -> Iterator[None]:
    """Turn the EVS client's errors into the controllers' own, classified for ``operation``."""
    try:
        yield
    except EVSError as exc:
        raise ExternalError(blame_class(classify(exc, operation), account)) from None


async def unless_gone(account: Account, operation: str, call: Awaitable[_T]) -> _T | None:
    """The call's answer, or None when EVS answers that what it names does not exist."""
    try:
        with failing_as(account, operation):
            return await call
    except ExternalError as exc:
        if exc.failure.cause is Cause.NOT_FOUND:
            return None
        raise


def _external(snapshot: EVSSnapshot) -> ExternalSnapshot:
    return ExternalSnapshot(
        id=snapshot.id,
        state=_STATES.get(snapshot.status, State.BUSY),
        phase=snapshot.status,
        volume_id=snapshot.volume_id,
        owner_uid=snapshot.metadata.get(OWNER_UID_METADATA_KEY),
        name=snapshot.name,
        description=snapshot.description,
        size=snapshot.size,
        created_at=snapshot.created_at,
        updated_at=snapshot.updated_at,
    )


def classify(exc: EVSError, operation: str) -> Failure:
    """Map an EVS client error to a Failure (the table in docs/evs.md).

    A 404 on create means the disk is missing (blocked: someone may create it); on update or show
    it means the snapshot is not there (the caller re-observes before believing it).
    """
    request_id = exc.request_id
    if isinstance(exc, EVSNotSent):
        return Failure(NOT_LEADING, exc.message, Kind.TRANSIENT, None, Cause.NOT_SENT)
    if isinstance(exc, EVSAPIError) and exc.throttled:
        code = exc.code or "HTTP.429"
        return Failure(code, exc.message, Kind.TRANSIENT, request_id, Cause.THROTTLED)
    if not isinstance(exc, EVSAPIError) or exc.retryable:
        code = exc.code or _transport_code(exc)
        return Failure(code, exc.message, Kind.TRANSIENT, request_id)
    status = exc.status_code or 0
    code = exc.code or f"HTTP.{status}"
    if code == DISK_FULL_CODE:
        return Failure(code, exc.message, Kind.BLOCKED, request_id, Cause.QUOTA)
    if status == 404:
        kind = Kind.BLOCKED if operation == "create" else Kind.TRANSIENT
        return Failure(code, exc.message, kind, request_id, Cause.NOT_FOUND)
    if code in AUTH_CODES or status in (401, 403):
        return Failure(code, exc.message, Kind.BLOCKED, request_id)
    if _refused(exc, code, operation):
        what = _REFUSALS.get(code, _UNKNOWN_REFUSAL).format(verb=_CHANGES[operation])
        message = f"{what}; EVS says: {exc.message}"
        return Failure(code, message, Kind.BLOCKED, request_id, Cause.REFUSED)
    if code in _BLOCKED_CODES or status == 413:
        return Failure(code, exc.message, Kind.BLOCKED, request_id)
    if operation == "create" and any(hint in exc.message for hint in _DISK_STATUS_HINTS):
        cause = Cause.DISK_IN_USE if _ATTACHED_WORDING in exc.message else None
        return Failure(code, exc.message, Kind.BLOCKED, request_id, cause)
    return Failure(code, exc.message, Kind.INVALID, request_id)


def _refused(exc: EVSAPIError, code: str, operation: str) -> bool:
    """Whether a 4xx answer to a change of a snapshot is EVS refusing it for the state of the
    snapshot or its disk, which changes without us, rather than for what the request says.

    A DELETE says nothing but the snapshot's ID, so only a malformed ID is the request's fault.
    A PUT carries a name and description: a malformed-request code refuses those, unless its
    wording is Cinder's refusal for the snapshot's state.
    """
    if operation not in _CHANGES or not 400 <= (exc.status_code or 0) <= 499:
        return False
    if operation == "delete":
        return code != INVALID_SNAPSHOT_ID
    return code not in _MALFORMED_CODES or exc.message.startswith(_SNAPSHOT_STATE_WORDING)


def blame_class(failure: Failure, account: Account) -> Failure:
    """Name the class and its Secret in an authentication failure: that is where the fix lies."""
    if failure.code not in AUTH_CODES and not failure.code.startswith(("HTTP.401", "HTTP.403")):
        return failure
    secret = account.spec.credentials_secret_ref.name
    note = f"CloudSnapshotClass {account.class_name}: check the credentials in Secret {secret}"
    return Failure(
        failure.code, f"{failure.message} ({note})", failure.kind, failure.request_id, failure.cause
    )


def _transport_code(exc: EVSError) -> str:
    if exc.status_code is not None:
        return f"HTTP.{exc.status_code}"
    return type(exc).__name__.removeprefix("EVS").removesuffix("Error") or "Error"
