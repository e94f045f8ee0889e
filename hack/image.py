"""Build the operator image without a container engine, as an OCI archive, reproducibly.

The Dockerfile's image for machines that have no Docker and no registry to pull a base from:

1. ``mmdebstrap`` makes a minimal Debian root file system (the ``essential`` set, Debian's
   python3 and ca-certificates) from the Debian sources this machine's apt is configured with.
2. Inside it (``chroot``), ``deploy/docker/install.sh`` runs the Dockerfile's two install steps:
   the locked wheels (hash-checked, wheels only, from a wheelhouse downloaded beforehand, no index)
   into ``/opt/venv``, then cloudsnap's own wheel built from the checkout, and ``pip check``.
3. What an image does not need goes (the packages that only made the venv, documentation, logs,
   caches); a compiler anywhere fails the build. An SPDX SBOM of every Debian package and Python
   distribution is written into the image (``SBOM_PATH``) and next to the archive.
4. ``umoci`` makes one layer of the tree and sets the Dockerfile's config (user 65532:65532,
   entry point, environment, port, labels); the OCI layout is archived as a tar.

Every time stamp is ``SOURCE_DATE_EPOCH`` (default: the time of the last commit that changed an
input, ``INPUTS``), so equal inputs and equal Debian packages give a byte-identical archive. Built
images are cached under ``~/.cache/cloudsnap/image/<key>``, the key a digest of every input file
and that time (``inputs_key``).

Needs root, ``mmdebstrap`` and ``umoci`` (Debian packages). Run: ``python -m hack.image
[--output DIR] [--rebuild]``; ``make image`` writes ``dist/``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path

from hack.tools.install import cache_root

REPO = Path(__file__).resolve().parent.parent
INSTALL_SCRIPT = REPO / "deploy" / "docker" / "install.sh"
LOCK = REPO / "requirements.lock"
NAME = "cloudsnap-operator"
ARCHIVE_NAME = f"{NAME}.oci.tar"
SBOM_NAME = f"{NAME}.spdx.json"
SUITE = "bookworm"
# The Dockerfile's base is python:3.11-slim-bookworm; Debian's python3 of that release is 3.11.
PACKAGES = ("python3", "python3-venv", "ca-certificates")
# Needed to make /opt/venv (ensurepip and its wheels), not to run it: purged afterwards.
VENV_ONLY = (
    "python3-venv",
    "python3.11-venv",
    "python3-pip-whl",
    "python3-setuptools-whl",
    "python3-distutils",
    "python3-lib2to3",
)
# The wheel platforms Debian 12's glibc 2.36 on amd64 runs (pip needs them spelled out).
GLIBC_MINOR = 36
PLATFORMS = (
    *(f"manylinux_2_{minor}_x86_64" for minor in range(GLIBC_MINOR, 4, -1)),
    "manylinux2014_x86_64",
    "manylinux2010_x86_64",
    "manylinux1_x86_64",
)
VENV = "/opt/venv"
# Where the build's inputs (install.sh, the lock, the wheels) sit in the tree while it installs.
STAGING = "/cloudsnap-build"
SBOM_PATH = f"usr/share/doc/{NAME}/sbom.spdx.json"
USER = "65532:65532"
# A name for that uid and gid (the Dockerfile's useradd makes the same): getpass.getuser(), which
# kopf calls at start-up unless POD_ID is set, fails for a uid without a passwd entry.
ACCOUNT = "nonroot"
PASSWD_LINE = f"{ACCOUNT}:x:{USER}:{ACCOUNT}:/nonexistent:/usr/sbin/nologin\n"
GROUP_LINE = f"{ACCOUNT}:x:{USER.split(':')[1]}:\n"
ENTRYPOINT = ("cloudsnap-operator", "run")
PORT = "8080/tcp"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
ENV = {
    "PATH": f"{VENV}/bin:{SYSTEM_PATH}",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONUNBUFFERED": "1",
}
LABELS = {
    "org.opencontainers.image.title": NAME,
    "org.opencontainers.image.description": (
        "Declarative Huawei Cloud EVS disk snapshots for Kubernetes"
    ),
    "org.opencontainers.image.licenses": "Apache-2.0",
}
# Executables whose presence means a toolchain slipped in (the image must not build code).
COMPILERS = re.compile(r"(gcc|g\+\+|cc|c\+\+|cpp|clang|tcc|ld|as|x86_64-linux-gnu-\w+)(-[\d.]+)?")
# Files and trees an image does not need; documentation keeps each package's copyright.
DROPPED = (
    "var/lib/apt/lists",
    "var/cache",
    "var/log",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "usr/share/lintian",
)
SOURCES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))
# What the image is made of: the lock, the project (pyproject names README.md as its readme), the
# install steps and this build script.
INPUTS = (
    LOCK,
    REPO / "pyproject.toml",
    REPO / "README.md",
    REPO / "operator",
    INSTALL_SCRIPT,
    Path(__file__).resolve(),
)
# Cached images kept (of different inputs: other branches and checkouts share the cache).
KEPT = 3


@dataclass(frozen=True)
class Package:
    """One SBOM entry: a Debian package or a Python distribution."""

    ecosystem: str  # "deb" or "pypi", as in a package URL
    name: str
    version: str
    license: str = "NOASSERTION"


@dataclass(frozen=True)
class Built:
    """A finished build: the archive, its SBOM, and the image's manifest digest."""

    archive: Path
    sbom: Path
    digest: str


def _run(argv: Sequence[str], *, env: Mapping[str, str] | None = None) -> str:
    """Run a build step; on failure, exit with the end of its output."""
    result = subprocess.run(  # noqa: S603 - fixed argv of our own, no shell
        list(argv), capture_output=True, text=True, env=env, check=False
    )
    if result.returncode != 0:
        raise SystemExit(
            f"{argv[0]} failed ({result.returncode}):\n{result.stdout[-3000:]}"
            f"{result.stderr[-3000:]}"
        )
    return result.stdout


def source_date_epoch() -> int:
    """Every time stamp in the image: SOURCE_DATE_EPOCH when set, else the time of the last
    commit that changed an input (a commit of anything else leaves the image's bytes alone)."""
    if "SOURCE_DATE_EPOCH" in os.environ:
        return int(os.environ["SOURCE_DATE_EPOCH"])
    inputs = [str(path.relative_to(REPO)) for path in INPUTS]
    return int(_run(["git", "-C", str(REPO), "log", "-1", "--format=%ct", "--", *inputs]).strip())


def project_version() -> str:
    """cloudsnap's version, from pyproject (the image's tag and version label)."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    return str(pyproject["project"]["version"])


def image_cache() -> Path:
    """Built images (one directory per inputs key) and the wheelhouse, beside the tools cache."""
    return cache_root().parent / "image"


def input_files() -> list[Path]:
    """Every file whose content the image depends on (the cache key's inputs)."""
    return sorted(
        path
        for root in INPUTS
        for path in ([root] if root.is_file() else root.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts and ".egg-info" not in str(path)
    )


def inputs_key(files: Iterable[Path], epoch: int) -> str:
    """A digest of the files' paths and contents and the time stamp: equal keys build equal
    images."""
    digest = hashlib.sha256(str(epoch).encode() + b"\0")
    for path in files:
        digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:20]


def debian_sources(texts: Iterable[str], suite: str = SUITE) -> str:
    """The deb822 stanzas and one-line ``deb`` entries of `suite` (and its -updates/-security
    siblings) among apt sources texts, as one deb822 text for mmdebstrap."""
    stanzas: list[str] = []
    for text in texts:
        for stanza in re.split(r"\n\s*\n", text):
            fields = dict(
                (key.strip(), value.strip())
                for key, _, value in (
                    line.partition(":")
                    for line in stanza.splitlines()
                    if line.strip() and not line.startswith(("#", " ", "\t"))
                )
            )
            suites = fields.get("Suites", "").split()
            if "URIs" in fields and "deb" in fields.get("Types", "").split():
                kept = [s for s in suites if s == suite or s.startswith(f"{suite}-")]
                if kept and fields.get("Enabled", "yes") != "no":
                    stanzas.append(_stanza(fields["URIs"], kept, fields))
        for line in text.splitlines():
            words = re.sub(r"\[[^]]*\]", "", line).split()
            if words[:1] == ["deb"] and len(words) >= 4:
                uri, one_suite, *components = words[1:]
                if one_suite == suite or one_suite.startswith(f"{suite}-"):
                    fields = {"Components": " ".join(components)}
                    stanzas.append(_stanza(uri, [one_suite], fields))
    if not stanzas:
        raise SystemExit(f"no apt source for Debian {suite} is configured")
    return "\n".join(stanzas)


def _stanza(uris: str, suites: Sequence[str], fields: Mapping[str, str]) -> str:
    lines = ["Types: deb", f"URIs: {uris}", f"Suites: {' '.join(suites)}"]
    lines.append(f"Components: {fields.get('Components', 'main')}")
    if "Signed-By" in fields:
        lines.append(f"Signed-By: {fields['Signed-By']}")
    return "\n".join(lines) + "\n"


def configured_sources() -> list[str]:
    """The texts of this machine's apt sources (sources.list and sources.list.d/*)."""
    texts: list[str] = []
    for place in SOURCES:
        files = [place] if place.is_file() else sorted(place.glob("*"))
        texts += [
            path.read_text()
            for path in files
            if path.is_file() and path.suffix in {".list", ".sources"}
        ]
    return texts


def deb_packages(status: str) -> list[Package]:
    """Installed packages from a dpkg status file's text, by name."""
    packages = []
    for stanza in status.split("\n\n"):
        fields = HeaderParser().parsestr(stanza)
        if fields["Package"] and "installed" in (fields["Status"] or "").split():
            packages.append(Package("deb", fields["Package"], fields["Version"]))
    return sorted(packages, key=lambda package: package.name)


def python_packages(site_packages: Path) -> list[Package]:
    """Distributions installed in a site-packages directory, by name."""
    packages = []
    for metadata in site_packages.glob("*.dist-info/METADATA"):
        fields = HeaderParser().parsestr(metadata.read_text(errors="replace"))
        license_ = fields["License-Expression"] or "NOASSERTION"
        packages.append(Package("pypi", fields["Name"], fields["Version"], license_))
    return sorted(packages, key=lambda package: package.name.lower())


def purl(package: Package) -> str:
    """The package URL that identifies the package across scanners."""
    if package.ecosystem == "deb":
        return f"pkg:deb/debian/{package.name}@{package.version}?distro=debian-12"
    return f"pkg:pypi/{package.name.lower().replace('_', '-')}@{package.version}"


def spdx_document(packages: Sequence[Package], *, version: str, created: int) -> dict[str, object]:
    """An SPDX 2.3 document describing the image as a container of these packages."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created))
    listing = "\n".join(purl(package) for package in packages).encode()
    image_id = "SPDXRef-image"
    entries: list[dict[str, object]] = [
        {
            "SPDXID": image_id,
            "name": NAME,
            "versionInfo": version,
            "primaryPackagePurpose": "CONTAINER",
            "downloadLocation": "NOASSERTION",
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": "Apache-2.0",
            "copyrightText": "NOASSERTION",
        }
    ]
    relationships = [
        {
            "spdxElementId": "SPDXRef-DOCUMENT",
            "relationshipType": "DESCRIBES",
            "relatedSpdxElement": image_id,
        }
    ]
    for index, package in enumerate(packages):
        ref = f"SPDXRef-{package.ecosystem}-{index}"
        entries.append(
            {
                "SPDXID": ref,
                "name": package.name,
                "versionInfo": package.version,
                "downloadLocation": "NOASSERTION",
                "licenseConcluded": "NOASSERTION",
                "licenseDeclared": package.license,
                "copyrightText": "NOASSERTION",
                "externalRefs": [
                    {
                        "referenceCategory": "PACKAGE-MANAGER",
                        "referenceType": "purl",
                        "referenceLocator": purl(package),
                    }
                ],
            }
        )
        relationships.append(
            {"spdxElementId": image_id, "relationshipType": "CONTAINS", "relatedSpdxElement": ref}
        )
    return {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": f"{NAME}-{version}",
        # Unique per content, as SPDX asks, and reproducible.
        "documentNamespace": (
            f"https://spdx.org/spdxdocs/{NAME}-{version}-{hashlib.sha256(listing).hexdigest()}"
        ),
        "creationInfo": {"created": stamp, "creators": ["Tool: cloudsnap-hack.image"]},
        "packages": entries,
        "relationships": relationships,
    }


def config_args(version: str, created: int) -> list[str]:
    """``umoci config`` options giving the image the Dockerfile's user, entry point, env, port
    and labels (plus the version), created at `created`."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created))
    args = [f"--config.user={USER}", "--clear=config.entrypoint", "--clear=config.cmd"]
    args += [f"--config.entrypoint={part}" for part in ENTRYPOINT]
    args += [f"--config.env={key}={value}" for key, value in ENV.items()]
    args += [f"--config.exposedports={PORT}", "--config.workingdir=/"]
    labels = {**LABELS, "org.opencontainers.image.version": version}
    args += [f"--config.label={key}={value}" for key, value in labels.items()]
    args += ["--os=linux", "--architecture=amd64", f"--created={stamp}", "--author=cloudsnap"]
    args += [f"--history.created={stamp}", "--history.created_by=hack/image.py config"]
    return args


def compilers(root: Path) -> list[str]:
    """Paths (under `root`) of compiler and assembler/linker executables."""
    found = []
    for directory in ("usr/bin", "usr/local/bin", "bin", f"{VENV.lstrip('/')}/bin"):
        place = root / directory
        if place.is_dir():
            found += [
                f"/{directory}/{entry.name}"
                for entry in sorted(place.iterdir())
                if COMPILERS.fullmatch(entry.name)
            ]
    return found


def _chroot(root: Path, argv: Sequence[str], env: Mapping[str, str]) -> str:
    """Run `argv` as root in the root file system, with only `env`."""
    return _run(["chroot", str(root), *argv], env={"PATH": SYSTEM_PATH, **env})


def _download_wheels(wheelhouse: Path) -> None:
    """The lock's wheels for the image, hash-checked, into `wheelhouse` (kept between builds)."""
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--disable-pip-version-check",
            "--require-hashes",
            "--only-binary=:all:",
            "--no-deps",
            "--python-version",
            "3.11",
            "--implementation",
            "cp",
            *(f"--platform={platform}" for platform in PLATFORMS),
            "--dest",
            str(wheelhouse),
            "--requirement",
            str(LOCK),
        ]
    )


def _app_wheel(work: Path, epoch: int) -> Path:
    """cloudsnap's wheel, built from a copy of the checkout's sources (nothing stale from a
    previous build directory can slip in)."""
    src = work / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(
        REPO / "operator",
        src / "operator",
        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
    )
    wheels = work / "app"
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--disable-pip-version-check",
            "--wheel-dir",
            str(wheels),
            str(src),
        ],
        env={**os.environ, "SOURCE_DATE_EPOCH": str(epoch)},
    )
    (wheel,) = wheels.glob("*.whl")
    return wheel


def make_rootfs(root: Path, work: Path, wheelhouse: Path, epoch: int) -> list[Package]:
    """Bootstrap Debian into `root` and install the operator in it; return the SBOM's packages."""
    sources = work / "debian.sources"
    sources.write_text(debian_sources(configured_sources()))
    _run(
        [
            "mmdebstrap",
            "--quiet",
            "--mode=root",
            "--variant=essential",
            "--format=directory",
            f"--include={','.join(PACKAGES)}",
            "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
            SUITE,
            str(root),
            str(sources),
        ],
        env={**os.environ, "SOURCE_DATE_EPOCH": str(epoch)},
    )
    build = root / STAGING.lstrip("/")
    shutil.copytree(wheelhouse, build / "wheels")
    shutil.copy2(INSTALL_SCRIPT, build / "install.sh")
    shutil.copy2(LOCK, build / LOCK.name)
    wheel = _app_wheel(work, epoch)
    shutil.copy2(wheel, build / wheel.name)
    # SOURCE_DATE_EPOCH makes pip's byte-compilation write hash-based .pyc files (no mtimes).
    env = {
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "SOURCE_DATE_EPOCH": str(epoch),
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": f"{STAGING}/wheels",
    }
    install = ["sh", f"{STAGING}/install.sh"]
    _chroot(root, [*install, "deps", VENV, f"{STAGING}/{LOCK.name}"], env)
    _chroot(root, [*install, "app", VENV, f"{STAGING}/{wheel.name}"], env)
    _chroot(root, ["dpkg", "--purge", *VENV_ONLY], env)
    shutil.rmtree(build)
    for name, line in (("passwd", PASSWD_LINE), ("group", GROUP_LINE)):
        with (root / "etc" / name).open("a") as accounts:
            accounts.write(line)
    _strip(root)
    found = compilers(root)
    if found:
        raise SystemExit(f"the image must carry no compiler: {found}")
    (site_packages,) = (root / VENV.lstrip("/")).glob("lib/python3*/site-packages")
    return [
        *deb_packages((root / "var/lib/dpkg/status").read_text()),
        *python_packages(site_packages),
    ]


def _strip(root: Path) -> None:
    """Drop what the running image never reads (documentation but the copyright files)."""
    for relative in DROPPED:
        place = root / relative
        if place.is_dir():
            shutil.rmtree(place)
            place.mkdir()
    for path in (root / "usr/share/doc").rglob("*"):
        if path.is_file() and path.name != "copyright":
            path.unlink()
    for relative in ("var/lib/dpkg/status-old", "var/lib/dpkg/available-old", "etc/machine-id"):
        (root / relative).unlink(missing_ok=True)
    for leftover in (root / "tmp").iterdir():
        shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()


def _clamp(root: Path, epoch: int) -> None:
    """Every time stamp after `epoch` becomes `epoch` (what the build itself wrote)."""
    for directory, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = os.path.join(directory, name)
            if os.lstat(path).st_mtime > epoch:
                os.utime(path, (epoch, epoch), follow_symlinks=False)
    os.utime(root, (epoch, epoch))


def pack(root: Path, layout: Path, version: str, epoch: int) -> str:
    """Make the OCI layout at `layout` (one layer of `root`, the config); return its digest."""
    image = f"{layout}:{version}"
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
    _run(["umoci", "init", "--layout", str(layout)])
    _run(["umoci", "new", "--image", image])
    _run(
        [
            "umoci",
            "insert",
            "--image",
            image,
            f"--history.created={stamp}",
            "--history.created_by=hack/image.py: Debian and /opt/venv",
            str(root),
            "/",
        ]
    )
    _run(["umoci", "config", "--image", image, *config_args(version, epoch)])
    _run(["umoci", "gc", "--layout", str(layout)])
    index = json.loads((layout / "index.json").read_text())
    (manifest,) = index["manifests"]
    return str(manifest["digest"])


def archive(layout: Path, output: Path, epoch: int) -> None:
    """A tar of the OCI layout (what ``oci-archive:`` transports read), with fixed metadata."""

    def normalized(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.mtime = epoch
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mode = 0o755 if info.isdir() else 0o644
        return info

    with tarfile.open(output, "w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(layout.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(layout)), recursive=False, filter=normalized)


def build(destination: Path, epoch: int) -> Built:
    """Build the archive and SBOM into `destination` (a fresh directory)."""
    version = project_version()
    wheelhouse = image_cache() / "wheels"
    wheelhouse.mkdir(parents=True, exist_ok=True)
    _download_wheels(wheelhouse)
    destination.mkdir(parents=True)
    with tempfile.TemporaryDirectory(dir=destination.parent, prefix=".work-") as scratch:
        work = Path(scratch)
        root = work / "rootfs"
        packages = make_rootfs(root, work, wheelhouse, epoch)
        sbom = json.dumps(spdx_document(packages, version=version, created=epoch), indent=2)
        (root / SBOM_PATH).parent.mkdir(parents=True, exist_ok=True)
        (root / SBOM_PATH).write_text(sbom + "\n")
        _clamp(root, epoch)
        digest = pack(root, work / "layout", version, epoch)
        archive(work / "layout", destination / ARCHIVE_NAME, epoch)
    (destination / SBOM_NAME).write_text(sbom + "\n")
    (destination / "digest").write_text(digest + "\n")
    return Built(destination / ARCHIVE_NAME, destination / SBOM_NAME, digest)


def cached_build(*, rebuild: bool = False) -> Built:
    """The image for the current inputs, from the cache or built into it.

    A build lands in the cache by a rename, so a reader (another checkout's tests, a concurrent
    build of the same inputs, whose result is the same bytes) never sees half an image.
    """
    cache = image_cache()
    epoch = source_date_epoch()
    place = cache / inputs_key(input_files(), epoch)
    if rebuild and place.exists():
        shutil.rmtree(place)
    if not place.exists():
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache, prefix=".build-") as scratch:
            fresh = Path(scratch) / "image"
            build(fresh, epoch)
            with contextlib.suppress(OSError):  # built meanwhile by someone else: the same
                fresh.rename(place)
        _prune(cache)
    os.utime(place)  # last used, for _prune
    digest = (place / "digest").read_text().strip()
    return Built(place / ARCHIVE_NAME, place / SBOM_NAME, digest)


def _prune(cache: Path) -> None:
    """Keep the KEPT images used last (checkouts of other inputs may still use them)."""
    images = [
        entry
        for entry in cache.iterdir()
        if entry.is_dir() and entry.name != "wheels" and not entry.name.startswith(".")
    ]
    images.sort(key=lambda entry: entry.stat().st_mtime, reverse=True)
    for stale in images[KEPT:]:
        shutil.rmtree(stale, ignore_errors=True)


def image_config(archive_path: Path) -> dict[str, object]:
    """The OCI image config (``config`` and the rest) of the archive's one image."""
    with tarfile.open(archive_path) as tar:

        def blob(digest: str) -> dict[str, object]:
            member = tar.extractfile(f"blobs/{digest.replace(':', '/')}")
            assert member is not None
            document: dict[str, object] = json.load(member)
            return document

        index = tar.extractfile("index.json")
        assert index is not None
        (entry,) = json.load(index)["manifests"]
        manifest = blob(entry["digest"])
        config = manifest["config"]
        assert isinstance(config, dict)
        return blob(config["digest"])


def unpack(archive_path: Path, bundle: Path) -> Path:
    """Unpack the archive's image as umoci does for a runtime; return its root file system."""
    layout = bundle.parent / f"{bundle.name}-layout"
    with tarfile.open(archive_path) as tar:
        tar.extractall(layout, filter="data")
    _run(["umoci", "unpack", "--image", f"{layout}:{project_version()}", str(bundle)])
    shutil.rmtree(layout)
    return bundle / "rootfs"


# Runs in a mount namespace of its own, so every mount goes with the process, even on a crash.
_IN_CHROOT = """root=$1 user=$2 kubeconfig=$3
shift 3
mount --bind "$root" "$root"
mount -o remount,bind,ro "$root"
mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
install -o "${user%:*}" -g "${user#*:}" -m 0600 "$kubeconfig" "$root/tmp/kubeconfig"
exec chroot --userspec="$user" "$root" "$@"
"""


def chroot_argv(rootfs: Path, kubeconfig: Path, argv: Sequence[str]) -> list[str]:
    """A command that runs `argv` as the image's user in `rootfs`, as the chart's pod runs it:
    the root read-only, a fresh writable /tmp (holding the kubeconfig, /tmp/kubeconfig), /proc and
    /dev. Its environment is the caller's: pass the image's (``image_config``) plus KUBECONFIG."""
    unshare = ["unshare", "--mount", "--propagation=private", "--fork", "--"]
    return [*unshare, "sh", "-euc", _IN_CHROOT, "sh", str(rootfs), USER, str(kubeconfig), *argv]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, help="copy the archive and SBOM into this directory")
    parser.add_argument("--rebuild", action="store_true", help="ignore a cached build")
    args = parser.parse_args()
    started = time.monotonic()
    built = cached_build(rebuild=args.rebuild)
    archive_path, sbom = built.archive, built.sbom
    if args.output is not None:
        args.output.mkdir(parents=True, exist_ok=True)
        archive_path = Path(shutil.copy2(built.archive, args.output / ARCHIVE_NAME))
        sbom = Path(shutil.copy2(built.sbom, args.output / SBOM_NAME))
    size = archive_path.stat().st_size / 2**20
    print(
        f"{archive_path} ({size:.1f} MiB, {built.digest}) and {sbom} "
        f"in {time.monotonic() - started:.0f}s"
    )


if __name__ == "__main__":
    main()
