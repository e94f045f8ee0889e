"""`kubectl cloudsnap orphans`: EVS snapshots the operator made whose CloudSnapshot is gone.

The operator tags every snapshot it makes with its CloudSnapshot's UID, namespace and name
(docs/ownership.md). A snapshot so tagged whose UID is no CloudSnapshot's in this cluster, and
that no CloudSnapshot adopts, was left behind: kept by ``deletionPolicy: Retain``, or its resource
removed with its namespace or by force. This module lists them in one class's account with the
class's own credentials, through the operator's EVS client, and adopts them on request: a
CloudSnapshot with ``spec.snapshotID`` and ``deletionPolicy: Retain`` where the tag says.

It is the one part of the client that speaks to EVS, and so the one that needs the class's
Secret: whoever runs it must be allowed to read that Secret in the operator's namespace.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import kubernetes
from kubernetes.client.exceptions import ApiException

from cloudsnap.api.constants import (
    CLASS_PLURAL,
    GROUP,
    OWNER_NAME_METADATA_KEY,
    OWNER_NAMESPACE_METADATA_KEY,
    OWNER_UID_METADATA_KEY,
    VERSION,
)
from cloudsnap.api.constants import SECRET_ACCESS_KEY as ACCESS_KEY
from cloudsnap.api.constants import SECRET_SECRET_KEY as SECRET_KEY
from cloudsnap.api.constants import SECRET_SECURITY_TOKEN as SECURITY_TOKEN
from cloudsnap.api.models import CloudSnapshotClass
from cloudsnap.client import Client, NotFound, Snapshot
from cloudsnap.evs.auth import AKSKAuth
from cloudsnap.evs.client import EVSClient
from cloudsnap.evs.errors import EVSError


class EVSRefused(RuntimeError):
    """EVS refused to list the account's snapshots, or could not be reached."""


class NotAllowed(PermissionError):
    """The user may not read the class's credentials."""


@dataclass(frozen=True)
class Orphan:
    """A tagged EVS snapshot whose CloudSnapshot is gone, with what its tags say of it."""

    snapshot_id: str
    status: str
    size_gib: int
    created: datetime
    namespace: str
    name: str
    owner_uid: str


@dataclass(frozen=True)
class Account:
    """Where a class's snapshots live and the credentials to list them."""

    class_name: str
    cls: CloudSnapshotClass
    access_key: str
    secret_key: str
    security_token: str | None

    def evs(self) -> EVSClient:
        """The operator's EVS client for this account (close it after use)."""
        spec = self.cls.spec
        auth = AKSKAuth(
            self.access_key, self.secret_key, spec.project_id, security_token=self.security_token
        )
        return EVSClient(spec.evs_endpoint(), auth, spec.project_id, verify=spec.tls_verify())


def account(client: Client, class_name: str | None, operator_namespace: str) -> Account:
    """The class (``class_name``, else the default one) and its credentials, read from its
    Secret in ``operator_namespace``; NotFound when either is missing, ApiException when the
    API server refuses (RBAC)."""
    custom = kubernetes.client.CustomObjectsApi(client.api)
    cls = _class(custom, class_name)
    ref = cls.spec.credentials_secret_ref.name
    try:
        secret = kubernetes.client.CoreV1Api(client.api).read_namespaced_secret(
            ref, operator_namespace
        )
    except ApiException as exc:
        if exc.status == 404:
            raise NotFound(f"secret {operator_namespace}/{ref} not found") from None
        if exc.status == 403:
            raise NotAllowed(
                f"reading the credentials of class {cls.metadata.name} takes get on secret"
                f" {operator_namespace}/{ref}, which the API server refused"
            ) from None
        raise
    data = {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}
    access_key, secret_key = data.get(ACCESS_KEY, "").strip(), data.get(SECRET_KEY, "").strip()
    if not access_key or not secret_key:
        raise NotFound(f"secret {operator_namespace}/{ref} lacks {ACCESS_KEY} or {SECRET_KEY}")
    token = data.get(SECURITY_TOKEN, "").strip() or None
    return Account(cls.metadata.name or "", cls, access_key, secret_key, token)


def _class(custom: kubernetes.client.CustomObjectsApi, name: str | None) -> CloudSnapshotClass:
    if name:
        try:
            raw = custom.get_cluster_custom_object(GROUP, VERSION, CLASS_PLURAL, name)
        except ApiException as exc:
            if exc.status == 404:
                raise NotFound(f"cloudsnapshotclass {name} not found") from None
            raise
        return CloudSnapshotClass.model_validate(raw)
    listing = cast(dict[str, Any], custom.list_cluster_custom_object(GROUP, VERSION, CLASS_PLURAL))
    defaults = [
        (str(raw["metadata"].get("creationTimestamp", "")), cls)
        for raw in listing.get("items") or []
        if (cls := CloudSnapshotClass.model_validate(raw)).is_default()
    ]
    if not defaults:
        raise NotFound("no --class given and no CloudSnapshotClass is the default")
    # Several defaults: the newest wins, as for the operator and for StorageClasses.
    return max(defaults, key=lambda made: (made[0], made[1].metadata.name or ""))[1]


async def orphans(account: Account, snapshots: list[Snapshot]) -> list[Orphan]:
    """The account's snapshots tagged by the operator that none of ``snapshots`` (every
    CloudSnapshot of the cluster) owns or adopts, oldest first."""
    owners = {snap.uid for snap in snapshots}
    adopted = {snap.snapshot_id for snap in snapshots} | {
        snap.source.removeprefix("snapshot/") for snap in snapshots
    }
    found = []
    try:
        async with account.evs() as evs:
            async for snap in evs.iter_snapshots():
                tags: Mapping[str, str] = snap.metadata
                uid = tags.get(OWNER_UID_METADATA_KEY)
                if uid and uid not in owners and snap.id not in adopted:
                    found.append(
                        Orphan(
                            snapshot_id=snap.id,
                            status=snap.status,
                            size_gib=snap.size,
                            created=snap.created_at,
                            namespace=tags.get(OWNER_NAMESPACE_METADATA_KEY, ""),
                            name=tags.get(OWNER_NAME_METADATA_KEY, ""),
                            owner_uid=uid,
                        )
                    )
    except EVSError as exc:
        raise EVSRefused(
            f"EVS refused to list the snapshots of class {account.class_name}: {exc}"
        ) from None
    return sorted(found, key=lambda orphan: (orphan.created, orphan.snapshot_id))


@dataclass(frozen=True)
class Adoption:
    """What ``adopt`` did with one orphan."""

    orphan: Orphan
    namespace: str
    name: str
    adopted: bool
    why_not: str = ""


def adopt(
    client: Client, account: Account, orphan: Orphan, namespace: str | None = None
) -> Adoption:
    """A CloudSnapshot adopting the orphan (``spec.snapshotID``, the account's class,
    ``deletionPolicy: Retain``), named as its tag says, in the tag's namespace or ``namespace``.
    A name that exists is left alone, as is a snapshot EVS no longer calls available."""
    where = namespace or orphan.namespace
    if orphan.status != "available":
        return Adoption(orphan, where, orphan.name, False, f"it is {orphan.status}")
    try:
        client.get(where, orphan.name)
    except NotFound:
        pass
    else:
        return Adoption(orphan, where, orphan.name, False, "that name exists")
    try:
        client.create(
            where,
            orphan.name,
            snapshot_id=orphan.snapshot_id,
            class_name=account.class_name,
            deletion_policy="Retain",
        )
    except ApiException as exc:
        if exc.status == 404:
            return Adoption(orphan, where, orphan.name, False, f"namespace {where} not found")
        raise
    return Adoption(orphan, where, orphan.name, True)
