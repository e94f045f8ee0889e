"""The EVS snapshot name a CloudSnapshot gets when its spec names none (docs/lifecycle.md)."""

import hashlib

from cloudsnap.api.constants import EVS_NAME_MAX_CHARS, EVS_TEXT_MAX_BYTES, RESERVED_NAME_PREFIX
from cloudsnap.api.models import CloudSnapshotSpec

_DIGEST_CHARS = 8
_HEAD_CHARS = 32
_ESCAPE_PREFIX = "k8s-"


def effective_snapshot_name(namespace: str, name: str, spec: CloudSnapshotSpec) -> str:
    """spec.name, else "<namespace>-<name>" made to fit EVS's rules.

    The default must be stable (it is what a rename is compared with), fit the strictest limit
    EVS states (64 characters; 255 UTF-8 bytes) and never look like a backup's snapshot. An
    explicit name is the user's: admission checks it against the byte limit only.
    """
    if spec.name is not None:
        return spec.name
    return _fit_evs_name(f"{namespace}-{name}")


def _fit_evs_name(text: str) -> str:
    """Escape the reserved prefix, then shorten to 64 characters by cutting out the middle.

    A shortened name keeps its head (the namespace) and its tail (the end of the name: a
    schedule's child ends in its slot), with a digest of the whole between them, so two long
    names that share both ends still differ.
    """
    if text.startswith(RESERVED_NAME_PREFIX):
        text = _ESCAPE_PREFIX + text
    if len(text) <= EVS_NAME_MAX_CHARS and len(text.encode()) <= EVS_TEXT_MAX_BYTES:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:_DIGEST_CHARS]
    tail_chars = EVS_NAME_MAX_CHARS - _HEAD_CHARS - _DIGEST_CHARS - 2
    # At most 54 characters of at most 4 bytes each, and the digest: within 255 bytes.
    return f"{text[:_HEAD_CHARS]}-{digest}-{text[-tail_chars:]}"


def default_disk_name(namespace: str, name: str) -> str:
    """The name of a restored disk whose spec names none: "<namespace>-<name>" of the restore,
    fitted to EVS's limits as a snapshot's default name is."""
    return _fit_evs_name(f"{namespace}-{name}")
