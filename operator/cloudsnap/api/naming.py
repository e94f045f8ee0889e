"""The EVS snapshot name a CloudSnapshot gets when its spec names none (docs/lifecycle.md)."""

import hashlib

from cloudsnap.api.constants import EVS_TEXT_MAX_BYTES, RESERVED_NAME_PREFIX
from cloudsnap.api.models import CloudSnapshotSpec

_DIGEST_CHARS = 8
_ESCAPE_PREFIX = "k8s-"


def effective_snapshot_name(namespace: str, name: str, spec: CloudSnapshotSpec) -> str:
    """spec.name, else "<namespace>-<name>" made to fit EVS's rules.

    The default must be stable (it is what a rename is compared with), fit 255 UTF-8 bytes and never
    look like a backup's snapshot; admission already guarantees all that for an explicit name.
    """
    if spec.name is not None:
        return spec.name
    return _fit_evs_name(f"{namespace}-{name}")


def _fit_evs_name(text: str) -> str:
    """Escape the reserved prefix, then cut to 255 bytes on a character boundary.

    A cut name ends in a digest of the whole so two long names sharing a prefix stay apart.
    """
    if text.startswith(RESERVED_NAME_PREFIX):
        text = _ESCAPE_PREFIX + text
    encoded = text.encode()
    if len(encoded) <= EVS_TEXT_MAX_BYTES:
        return text
    digest = hashlib.sha256(encoded).hexdigest()[:_DIGEST_CHARS]
    head = encoded[: EVS_TEXT_MAX_BYTES - _DIGEST_CHARS - 1].decode(errors="ignore")
    return f"{head}-{digest}"
