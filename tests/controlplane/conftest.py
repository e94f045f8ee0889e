"""Fixtures of the control-plane tests."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from hack.cluster import Cluster

from tests.controlplane.widgets import CRD_NAME, WIDGET_CRD


@pytest.fixture(scope="session")
def widget_crd(cluster: Cluster) -> Iterator[str]:
    """The Widget CRD, installed and Established for the session's tests."""
    cluster.kubectl("apply", "-f", "-", input=json.dumps(WIDGET_CRD))
    cluster.kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s")
    yield CRD_NAME
    cluster.kubectl("delete", "crd", CRD_NAME, "--wait=false", "--ignore-not-found")
