"""The engine-less OCI image (hack/image.py): its config is the Dockerfile's, its SBOM and apt
sources parsing, and, end to end, the built archive's entry point run in a chroot of its root file
system as user 65532 until a CloudSnapshot is Ready."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import uuid
from pathlib import Path

import pytest
from hack import image
from hack.cluster import Cluster
from hack.cluster.controlplane import free_port
from hack.lock import RUNTIME_LOCK, read_lock
from hack.sandbox import (
    ManagedProcess,
    OperatorProcess,
    class_manifests,
    released_lease,
    start_simulator,
)
from packaging.utils import canonicalize_name

from tests.deploy.support import ROOT
from tests.waiting import eventually

DOCKERFILE = ROOT / "Dockerfile"


def _dockerfile_runtime_stage() -> dict[str, list[str]]:
    """Instruction -> arguments of the Dockerfile's last stage, continuation lines joined."""
    text = re.sub(r"\s*\\\n\s*", " ", DOCKERFILE.read_text())
    stages = re.split(r"(?m)^FROM ", text)
    instructions: dict[str, list[str]] = {}
    for line in stages[-1].splitlines()[1:]:
        if line.strip() and not line.startswith("#"):
            name, _, rest = line.partition(" ")
            instructions.setdefault(name, []).append(rest.strip())
    return instructions


def _pairs(arguments: list[str]) -> dict[str, str]:
    return dict(word.split("=", 1) for text in arguments for word in shlex.split(text))


def test_image_config_is_the_dockerfiles() -> None:
    stage = _dockerfile_runtime_stage()
    assert stage["USER"] == [image.USER]
    assert json.loads(stage["ENTRYPOINT"][0]) == list(image.ENTRYPOINT)
    assert [f"{port}/tcp" for port in stage["EXPOSE"]] == [image.PORT]
    assert _pairs(stage["LABEL"]) == image.LABELS
    env = _pairs(stage["ENV"])
    assert env.pop("PATH") == f"{image.VENV}/bin:$PATH"
    assert image.ENV["PATH"].startswith(f"{image.VENV}/bin:")
    assert {key: value for key, value in image.ENV.items() if key != "PATH"} == env
    (run,) = stage["RUN"]
    name, _, uid, gid, _, home, shell = image.PASSWD_LINE.strip().split(":")
    assert f"{uid}:{gid}" == image.USER
    assert f"{name}:x:{gid}:\n" == image.GROUP_LINE
    assert f"groupadd --gid {gid} {name} && " in run
    assert f"useradd --uid {uid} --gid {gid} --no-create-home --home-dir {home} " in run
    assert run.endswith(f"--shell {shell} {name}")


def test_config_args_carry_user_entrypoint_env_port_labels_and_time() -> None:
    args = image.config_args("1.2.3", 0)
    assert "--config.user=65532:65532" in args
    assert [a for a in args if a.startswith("--config.entrypoint=")] == [
        "--config.entrypoint=cloudsnap-operator",
        "--config.entrypoint=run",
    ]
    assert "--config.env=PYTHONUNBUFFERED=1" in args
    assert "--config.exposedports=8080/tcp" in args
    assert "--config.label=org.opencontainers.image.version=1.2.3" in args
    assert "--created=1970-01-01T00:00:00Z" in args


def test_debian_sources_keep_the_suites_entries_only() -> None:
    deb822 = (
        "Types: deb\nURIs: http://mirror.invalid/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
        "Types: deb-src\nURIs: http://mirror.invalid/debian\nSuites: bookworm\nComponents: main\n\n"
        "Types: deb\nURIs: http://other.invalid/apt\nSuites: nodistro\nComponents: main\n\n"
        "Types: deb\nURIs: http://mirror.invalid/debian\nSuites: trixie\nEnabled: no\n"
    )
    one_line = (
        "# deb http://commented.invalid/debian bookworm main\n"
        "deb [arch=amd64] http://mirror.invalid/debian-security bookworm-security main contrib\n"
        "deb http://vendor.invalid/apt cloud-sdk-bookworm main\n"
    )
    assert image.debian_sources([deb822, one_line]) == (
        "Types: deb\nURIs: http://mirror.invalid/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
        "Types: deb\nURIs: http://mirror.invalid/debian-security\nSuites: bookworm-security\n"
        "Components: main contrib\n"
    )
    with pytest.raises(SystemExit, match="no apt source"):
        image.debian_sources(["deb http://vendor.invalid/apt cloud-sdk-bookworm main\n"])


def test_sbom_lists_installed_debian_packages_and_python_distributions(tmp_path: Path) -> None:
    status = (
        "Package: python3.11\nStatus: install ok installed\nVersion: 3.11.2-6+deb12u9\n\n"
        "Package: gone\nStatus: deinstall ok config-files\nVersion: 1.0\n\n"
        "Package: bash\nStatus: install ok installed\nVersion: 5.2.15-2+b13\n"
    )
    site = tmp_path / "site-packages"
    (site / "kopf-1.45.0.dist-info").mkdir(parents=True)
    (site / "kopf-1.45.0.dist-info/METADATA").write_text(
        "Metadata-Version: 2.4\nName: kopf\nVersion: 1.45.0\nLicense-Expression: MIT\n"
    )
    packages = [*image.deb_packages(status), *image.python_packages(site)]
    assert [(p.name, p.version) for p in packages] == [
        ("bash", "5.2.15-2+b13"),
        ("python3.11", "3.11.2-6+deb12u9"),
        ("kopf", "1.45.0"),
    ]
    document = image.spdx_document(packages, version="1.2.3", created=0)
    assert document == image.spdx_document(packages, version="1.2.3", created=0)
    assert document["spdxVersion"] == "SPDX-2.3"
    assert document["creationInfo"] == {
        "created": "1970-01-01T00:00:00Z",
        "creators": ["Tool: cloudsnap-hack.image"],
    }
    entries = document["packages"]
    assert isinstance(entries, list)
    assert entries[0]["primaryPackagePurpose"] == "CONTAINER"
    purls = [entry["externalRefs"][0]["referenceLocator"] for entry in entries[1:]]
    assert purls == [
        "pkg:deb/debian/bash@5.2.15-2+b13?distro=debian-12",
        "pkg:deb/debian/python3.11@3.11.2-6+deb12u9?distro=debian-12",
        "pkg:pypi/kopf@1.45.0",
    ]
    assert entries[3]["licenseDeclared"] == "MIT"
    relationships = document["relationships"]
    assert isinstance(relationships, list)
    assert [r["relationshipType"] for r in relationships] == ["DESCRIBES"] + ["CONTAINS"] * 3


def test_compilers_are_found(tmp_path: Path) -> None:
    for name in ("gcc-12", "cc", "x86_64-linux-gnu-gcc-12", "python3", "ccache-not", "ldd"):
        (tmp_path / "usr/bin").mkdir(parents=True, exist_ok=True)
        (tmp_path / "usr/bin" / name).touch()
    assert image.compilers(tmp_path) == [
        "/usr/bin/cc",
        "/usr/bin/gcc-12",
        "/usr/bin/x86_64-linux-gnu-gcc-12",
    ]


def test_the_operator_never_imports_the_simulator_it_ships_beside() -> None:
    """The image keeps the project's one wheel whole (evs_simulator included, as the Dockerfile's
    does); the simulator is inert there only as long as the operator does not import it."""
    for path in (ROOT / "operator/cloudsnap").rglob("*.py"):
        assert not re.search(r"^\s*(from|import) evs_simulator", path.read_text(), re.M), path


def _can_build() -> str | None:
    """Why the image cannot be built here, or None."""
    if os.geteuid() != 0:
        return "building and chrooting into the image needs root"
    missing = [tool for tool in ("mmdebstrap", "umoci", "unshare") if shutil.which(tool) is None]
    return f"apt-get install {' '.join(missing)}" if missing else None


@pytest.mark.skipif(_can_build() is not None, reason=str(_can_build()))
async def test_the_built_image_runs_until_a_cloudsnapshot_is_ready(
    cluster: Cluster, cloudsnap_crds: object, namespace: str, tmp_path: Path
) -> None:
    built = image.cached_build()
    config = image.image_config(built.archive)
    runtime = config["config"]
    assert isinstance(runtime, dict)
    assert runtime["User"] == image.USER
    assert runtime["Entrypoint"] == list(image.ENTRYPOINT)
    assert runtime["ExposedPorts"] == {image.PORT: {}}
    env = dict(item.split("=", 1) for item in runtime["Env"])
    assert env == image.ENV
    sbom = json.loads(built.sbom.read_text())
    names = {entry["name"] for entry in sbom["packages"]}
    assert {"python3.11", "ca-certificates", "kopf", "kubernetes", "cloudsnap"} <= names
    assert not names & {"gcc", "gcc-12", "cpp", "binutils", "apt", *image.VENV_ONLY}
    python = {
        str(canonicalize_name(entry["name"])): entry["versionInfo"]
        for entry in sbom["packages"]
        if entry["SPDXID"].startswith("SPDXRef-pypi-")
    }
    # The venv's own installers (ensurepip's, as in the Dockerfile's venv) beside exactly the lock.
    assert python.keys() - read_lock(RUNTIME_LOCK).keys() == {"cloudsnap", "pip", "setuptools"}
    assert {name: python[name] for name in read_lock(RUNTIME_LOCK)} == read_lock(RUNTIME_LOCK)

    rootfs = image.unpack(built.archive, tmp_path / "bundle")
    assert image.compilers(rootfs) == []
    assert json.loads((rootfs / image.SBOM_PATH).read_text()) == sbom

    volume = str(uuid.uuid4())
    sim = start_simulator(tmp_path / "sim", volumes=[f"{volume}:10:available"])
    operator: OperatorProcess | None = None
    try:
        cluster.kubectl(
            "apply", "-f", "-",
            input=class_manifests(sim, class_name=f"img-{namespace}", operator_namespace=namespace),
        )  # fmt: skip
        cluster.kubectl("create", "-f", "-", input=released_lease(namespace))
        port = free_port()
        argv = [*runtime["Entrypoint"], "--operator-namespace", namespace, "--namespace", namespace]
        argv += ["--metrics-port", str(port), "--log-format", "json"]
        child_env = {**env, "KUBECONFIG": "/tmp/kubeconfig", "CLOUDSNAP_METRICS_HOST": "127.0.0.1"}
        command = image.chroot_argv(rootfs, cluster.kubeconfig, argv)
        operator = OperatorProcess(
            ManagedProcess(command, tmp_path / "operator.log", child_env), port
        )
        operator.process.start()
        operator.wait_ready(timeout=120)
        assert operator.process.proc is not None
        assert _uid_of_child(operator.process.proc.pid) == 65532

        doc = {
            "apiVersion": "evs.cloudsnap.io/v1alpha1",
            "kind": "CloudSnapshot",
            "metadata": {"name": "from-the-image", "namespace": namespace},
            "spec": {"volumeID": volume},
        }
        cluster.kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(doc))

        def ready() -> dict[str, str] | None:
            out = cluster.kubectl("-n", namespace, "get", "csnap", "from-the-image", "-o", "json")
            status = json.loads(out.stdout).get("status", {})
            for condition in status.get("conditions", []):
                if condition["type"] == "Ready" and condition["status"] == "True":
                    return dict(status)
            return None

        status = await eventually(ready, timeout=120, what="csnap/from-the-image Ready")
        assert status["snapshotID"]
    finally:
        if operator is not None:
            operator.process.stop()
            cluster.kubectl(
                "-n", namespace, "patch", "csnap", "from-the-image", "--type=merge",
                "-p", '{"metadata":{"finalizers":null}}', check=False,
            )  # fmt: skip
        cluster.kubectl("delete", "csnapclass", f"img-{namespace}", "--ignore-not-found")
        sim.process.stop()
    assert sim.secret_key not in operator.process.log_text()


def _uid_of_child(pid: int) -> int:
    """The real uid of the operator, the process the chroot started under `unshare` (`pid`)."""
    (child,) = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    uid_line = next(
        line for line in Path(f"/proc/{child}/status").read_text().splitlines()
        if line.startswith("Uid:")
    )  # fmt: skip
    return int(uid_line.split()[1])
