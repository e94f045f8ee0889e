"""Pieces of the harness that need no control plane: key material and the tools cache."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hack.cluster import pki
from hack.tools import install


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_client_and_serving_certs_are_issued_by_the_ca(tmp_path: Path) -> None:
    keys = pki.generate(tmp_path)
    ca = load(keys.ca_cert)

    admin = load(keys.admin_cert)
    manager = load(keys.controller_manager_cert)
    serving = load(keys.serving_cert)

    for cert in (admin, manager, serving):
        cert.verify_directly_issued_by(ca)
    # The user the bootstrap RBAC policy binds the controller-manager's own role to.
    assert manager.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
        "system:kube-controller-manager"
    )
    assert admin.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == (
        "system:masters"
    )
    assert (
        ExtendedKeyUsageOID.CLIENT_AUTH
        in admin.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    )
    sans = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "127.0.0.1" in [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)]


def test_each_generation_is_fresh_and_private_keys_are_owner_only(tmp_path: Path) -> None:
    first = pki.generate(tmp_path / "a")
    second = pki.generate(tmp_path / "b")

    assert first.ca_cert.read_bytes() != second.ca_cert.read_bytes()
    for key in (
        first.admin_key,
        first.controller_manager_key,
        first.serving_key,
        first.sa_private_key,
    ):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_tools_bin_is_versioned_under_xdg_cache_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))

    bin_dir = install.tools_bin()

    assert bin_dir == tmp_path / "cloudsnap" / "tools" / install.versions_key() / "bin"
    for version in (
        install.KUBE_VERSION,
        install.KUBE_OLDEST_VERSION,
        install.ETCD_VERSION,
        install.HELM_VERSION,
        install.PROMETHEUS_VERSION,
        install.KUBE_SCORE_VERSION,
    ):
        assert version in install.versions_key()


@pytest.mark.parametrize(
    ("printed", "accepted"),
    [("etcd Version: 3.7.3\nGit SHA: abc", True), ("etcd Version: 3.6.16", False), ("", False)],
)
def test_cached_binary_is_reused_only_at_the_pinned_version(
    tmp_path: Path, printed: str, accepted: bool
) -> None:
    etcd = next(tool for tool in install.TOOLS if tool.name == "etcd")
    binary = tmp_path / "etcd"
    binary.write_text(f"#!/bin/sh\nprintf '%s\\n' '{printed}'\n")
    binary.chmod(0o755)

    version = install.installed_version(binary, etcd)

    assert (version == f"etcd Version: {install.ETCD_VERSION.lstrip('v')}") is accepted


def test_missing_binary_is_not_installed(tmp_path: Path) -> None:
    helm = next(tool for tool in install.TOOLS if tool.name == "helm")

    assert install.installed_version(tmp_path / "helm", helm) is None


def test_a_pinned_binary_is_copied_from_another_versions_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    etcd = next(tool for tool in install.TOOLS if tool.name == "etcd")
    for key, version in (("a-older", "3.6.16"), ("b-other-pins", install.ETCD_VERSION.lstrip("v"))):
        binary = install.cache_root() / key / "bin" / "etcd"
        binary.parent.mkdir(parents=True)
        binary.write_text(f"#!/bin/sh\nprintf '%s\\n' 'etcd Version: {version}'\n")
        binary.chmod(0o755)
    bin_dir = install.tools_bin()
    bin_dir.mkdir(parents=True)
    messages: list[str] = []

    assert install.reuse(etcd, bin_dir / "etcd", messages.append)
    assert install.installed_version(bin_dir / "etcd", etcd) is not None
    assert messages == [f"etcd {install.ETCD_VERSION}: copied from b-other-pins"]
    helm = next(tool for tool in install.TOOLS if tool.name == "helm")
    assert not install.reuse(helm, bin_dir / "helm", messages.append)
