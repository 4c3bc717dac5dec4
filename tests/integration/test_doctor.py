"""``keel doctor``: a stopped Postgres and a wrong model URL each give one clear failing line."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path

from api.doctor import run_checks
from core.settings import Settings
from tests.conftest import FakeOpenAI


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # closed again: nothing listens there


def _doctor(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "api.cli", "doctor", *args],
        env={**os.environ, "KEEL_ENV": "test", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_stopped_postgres_and_a_wrong_llm_url_fail_one_line_each() -> None:
    port = _closed_port()
    done = _doctor(
        {
            "KEEL_DATABASE__URL": f"postgresql://postgres@127.0.0.1:{port}/keel",
            "KEEL_LLM__PROVIDER": "openai",
            "KEEL_LLM__BASE_URL": f"http://127.0.0.1:{port}/v1",
        },
        "--only",
        "postgres,llm,quota_store",
    )
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    pg = [line for line in lines if " postgres " in line]
    llm = [line for line in lines if " llm " in line]
    assert len(pg) == 1 and pg[0].startswith("FAIL"), lines
    assert f"127.0.0.1:{port}" in pg[0] and "OperationalError" in pg[0]
    assert len(llm) == 1 and llm[0].startswith("FAIL"), lines
    assert f"http://127.0.0.1:{port}/v1/models" in llm[0] and "ConnectError" in llm[0]
    assert any(line.startswith("ok") and "quota_store" in line for line in lines), lines
    assert lines[-1] == "keel doctor: 1 ok, 2 failed"


def test_a_live_llm_and_database_pass(fake_llm: FakeOpenAI, db_url: str) -> None:
    settings = Settings(
        env="test",
        database={"url": db_url},
        llm={"provider": "openai", "base_url": fake_llm.base_url, "api_key": "k"},
    )
    checks = asyncio.run(run_checks(settings, ["postgres", "llm", "qdrant"]))
    assert [(c.name, c.ok) for c in checks] == [("postgres", True), ("llm", True)], checks


def test_tools_and_sandbox_are_checked(db_url: str, tmp_path: Path) -> None:
    settings = Settings(env="test", data_dir=tmp_path, database={"url": db_url})
    checks = {c.name: c for c in asyncio.run(run_checks(settings, ["tools", "sandbox"]))}
    assert checks["tools"].ok, checks["tools"].line()
    assert "sandbox" in checks


def test_an_unreachable_qdrant_server_fails_one_line() -> None:
    port = _closed_port()
    settings = Settings(env="test", memory={"session": {"url": f"http://127.0.0.1:{port}"}})
    [check] = asyncio.run(run_checks(settings, ["qdrant"]))
    assert (check.name, check.ok) == ("qdrant", False)
    assert f"http://127.0.0.1:{port}" in check.line() and "ConnectError" in check.line()
