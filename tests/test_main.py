"""The command line: settings from flags and environment, logs that never carry a secret, and
the `crds` and `run` commands."""

from __future__ import annotations

import argparse
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloudsnap import logs
from cloudsnap.__main__ import main
from cloudsnap.settings import Settings, add_run_arguments, from_arguments
from tests.harness.replicas import operator_environment


def parse(*argv: str) -> Settings:
    parser = argparse.ArgumentParser()
    add_run_arguments(parser)
    return from_arguments(parser.parse_args(argv))


def test_flags_override_environment_over_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOUDSNAP_NAMESPACE", '["team-a", "team-b"]')
    monkeypatch.setenv("CLOUDSNAP_RESYNC_SECONDS", "42")
    monkeypatch.setenv("CLOUDSNAP_LOG_FORMAT", "json")
    settings = parse("--resync-seconds", "7", "--log-level", "debug")
    assert settings.namespace == ["team-a", "team-b"]
    assert settings.resync_seconds == 7.0
    assert settings.log_format == "json"
    assert settings.log_level == "DEBUG"
    assert settings.metrics_port == 8080
    timing = settings.timing()
    assert (timing.resync, timing.poll, timing.blocked) == (7.0, 2.0, 120.0)


def test_all_namespaces_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOUDSNAP_ALL_NAMESPACES", "true")
    monkeypatch.setenv("CLOUDSNAP_OPERATOR_NAMESPACE", "ops")
    settings = parse()
    assert settings.all_namespaces
    assert settings.operator_namespace == "ops"


def test_the_harnesses_timings_reach_the_operator(monkeypatch: pytest.MonkeyPatch) -> None:
    """The settings ignore unknown CLOUDSNAP_* variables, so a misspelt name in the harnesses'
    environment would silently leave the operator on its defaults."""
    for name, value in operator_environment(
        poll=0.25, backoff_base=0.5, backoff_max=3, blocked_retry=7, create_doubt=11, evs_timeout=13
    ).items():
        monkeypatch.setenv(name, value)
    settings = parse("--all-namespaces")
    timing = settings.timing()
    assert (timing.poll, timing.backoff.base, timing.backoff.cap) == (0.25, 0.5, 3.0)
    assert (timing.blocked, timing.create_doubt, settings.evs_timeout_seconds) == (7.0, 11.0, 13.0)


def test_watch_scope_must_be_chosen_once() -> None:
    with pytest.raises(ValueError, match="not both"):
        parse("--namespace", "a", "--all-namespaces")
    with pytest.raises(ValueError, match="choose the namespaces"):
        parse()


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    yield stream
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_logs_redact_registered_secrets_and_credential_patterns(
    captured: io.StringIO, fmt: str
) -> None:
    logs.configure("DEBUG", fmt)
    logging.getLogger().handlers[0].setStream(captured)  # type: ignore[attr-defined]
    secret = "registered-secret-value-123"
    logs.REDACTOR.add(secret)
    kopf_log = logging.getLogger("kopf.objects")
    kopf_log.warning("secret in kopf's log: %s", secret)
    logging.getLogger("cloudsnap").info(
        "Authorization: SDK-HMAC-SHA256 Access=AK, SignedHeaders=host, Signature=%s",
        "ab" * 32,
    )
    logging.getLogger("cloudsnap").info('{"secretKey": "unregistered-key-value"}')
    try:
        raise RuntimeError(f"failure mentioning {secret}")
    except RuntimeError:
        logging.getLogger("cloudsnap").exception("boom")
    text = captured.getvalue()
    assert secret not in text
    assert "ab" * 32 not in text
    assert "unregistered-key-value" not in text
    assert text.count(logs.REDACTED) >= 4
    if fmt == "json":
        lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
        assert {entry["logger"] for entry in lines} >= {"kopf.objects", "cloudsnap"}
        assert any("exception" in entry for entry in lines)


def test_base64_form_of_a_secret_is_redacted_too() -> None:
    redactor = logs.Redactor()
    redactor.add("another-secret-value")
    assert redactor("data: YW5vdGhlci1zZWNyZXQtdmFsdWU=") == f"data: {logs.REDACTED}"
    redactor.add("abc")  # too short to be told apart from ordinary text
    assert redactor("abc") == "abc"


def test_crds_command_writes_what_is_committed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path
    assert main(["crds", "--output", str(out)]) == 0
    written = sorted(p.name for p in out.iterdir())
    committed = Path(__file__).parents[1] / "crds"
    assert written == sorted(p.name for p in committed.glob("*.yaml"))
    for name in written:
        assert (out / name).read_text() == (committed / name).read_text()
    assert str(out) in capsys.readouterr().out


def test_run_refuses_an_ambiguous_scope_before_touching_the_cluster(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--namespace", "a", "--all-namespaces"])
    assert exit_info.value.code == 2
    assert "not both" in capsys.readouterr().err
