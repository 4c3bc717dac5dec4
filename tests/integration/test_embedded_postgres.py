"""The embedded Postgres is shared, never taken over: CLI commands beside ``keel serve``.

Regression for the probe finding "``keel apikey`` run while ``keel serve`` runs stops the
server's embedded Postgres; ``/readyz`` answers 503 from then on". Real processes: ``keel serve``
on the embedded server (no ``database.url``), ``keel apikey`` and ``keel ingest`` beside it, then
a ``kill -9`` of the postmaster, which the server must survive by itself.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from core.db import free_port
from tests.conftest import FakeOpenAI

SECRET = "embedded-postgres-test-secret-at-least-32-bytes"


def _env(data_dir: Path, fake_llm: FakeOpenAI) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    return {
        **env,
        "KEEL_ENV": "test",
        "KEEL_DATA_DIR": str(data_dir),
        "KEEL_AUTH__JWT_SECRET": SECRET,
        "KEEL_LLM__PROVIDER": "openai",
        "KEEL_LLM__BASE_URL": fake_llm.base_url,
        "KEEL_LLM__MODEL": "fake",
        "KEEL_LLM__API_KEY": "test",
        "KEEL_LOG__LEVEL": "WARNING",
        "KEEL_TRACING__ENABLED": "false",
        "KEEL_MEMORY__SESSION__ENABLED": "false",
    }


def _keel(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def _postmaster_pid(data_dir: Path) -> int | None:
    try:
        pid = int((data_dir / "pg" / "postmaster.pid").read_text().splitlines()[0])
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return None
    return pid


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, within_s: float) -> None:
    deadline = time.monotonic() + within_s
    last = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"keel serve exited:\n{log.read_text()[-3000:]}")
        try:
            r = httpx.get(f"{url}/readyz", timeout=3)
            if r.status_code == 200:
                return
            last = r.text
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.2)
    raise AssertionError(f"/readyz not 200 within {within_s} s: {last}")


@pytest.fixture
def served(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> Iterator[tuple[str, dict[str, str], Path, subprocess.Popen[bytes]]]:
    data_dir = tmp_path / "data"
    env = _env(data_dir, fake_llm)
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, proc, log, 180)
        yield url, env, data_dir, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        if (pid := _postmaster_pid(data_dir)) is not None:
            os.kill(pid, signal.SIGKILL)


def test_cli_commands_beside_serve_leave_its_database_up(
    served: tuple[str, dict[str, str], Path, subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    url, env, data_dir, proc = served
    postmaster = _postmaster_pid(data_dir)
    assert postmaster is not None

    created = _keel(env, "apikey", "create", "--user", "svc", "--tenant", "acme", "--tier", "pro")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert httpx.get(f"{url}/readyz", timeout=5).status_code == 200
    # The key went into the server's own database: the server accepts it.
    r = httpx.get(f"{url}/v1/threads", headers={"X-API-Key": key}, timeout=10)
    assert r.status_code == 200, r.text

    doc = tmp_path / "policy.md"
    doc.write_text("# Vacation policy\n\nEveryone gets 25 days of paid vacation a year.\n")
    ingested = _keel(env, "ingest", str(doc), "--tenant", "acme")
    assert ingested.returncode == 0, ingested.stderr
    assert httpx.get(f"{url}/readyz", timeout=5).status_code == 200
    assert _postmaster_pid(data_dir) == postmaster  # shared, never restarted

    key_id = created.stderr.split("API key ", 1)[1].split()[0]
    revoked = _keel(env, "apikey", "revoke", key_id)
    assert revoked.returncode == 0, revoked.stderr
    r = httpx.get(f"{url}/v1/threads", headers={"X-API-Key": key}, timeout=10)
    assert r.status_code == 401, r.text
    assert httpx.get(f"{url}/readyz", timeout=5).status_code == 200

    proc.terminate()
    assert proc.wait(60) == 0
    assert _postmaster_pid(data_dir) is None  # the last user stopped it


def test_serve_recovers_when_its_embedded_postgres_dies(
    served: tuple[str, dict[str, str], Path, subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    url, _env_, data_dir, proc = served
    postmaster = _postmaster_pid(data_dir)
    assert postmaster is not None
    os.kill(postmaster, signal.SIGKILL)
    _wait_ready(url, proc, tmp_path / "serve.log", 60)
    restarted = _postmaster_pid(data_dir)
    assert restarted is not None and restarted != postmaster
