"""Settings: one shape for every environment, placeholder secrets refused in prod."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from core.settings import CONFIG_DIR, Settings


def _shape(d: Any) -> Any:
    return {k: _shape(v) for k, v in d.items()} if isinstance(d, dict) else None


def test_every_config_file_has_the_same_keys() -> None:
    shapes = {p.name: _shape(yaml.safe_load(p.read_text())) for p in CONFIG_DIR.glob("*.yaml")}
    assert set(shapes) == {"dev.yaml", "test.yaml", "prod.yaml"}
    assert shapes["dev.yaml"] == shapes["test.yaml"] == shapes["prod.yaml"]


@pytest.mark.parametrize("env", ["dev", "test"])
def test_dev_and_test_configs_validate(env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEL_ENV", env)
    assert Settings().env == env


def test_prod_refuses_the_placeholder_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEL_ENV", "prod")
    with pytest.raises(ValidationError, match="jwt_secret"):
        Settings()


def test_prod_refuses_the_placeholder_memory_master_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEL_ENV", "prod")
    monkeypatch.setenv("KEEL_AUTH__JWT_SECRET", "k" * 48)
    with pytest.raises(ValidationError, match="memory.master_key"):
        Settings()


def test_prod_accepts_a_real_secret_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEL_ENV", "prod")
    monkeypatch.setenv("KEEL_AUTH__JWT_SECRET", "k" * 48)
    monkeypatch.setenv("KEEL_MEMORY__MASTER_KEY", "m" * 48)
    monkeypatch.setenv("DATABASE_URL", "postgresql://db/keel")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://vllm:8000/v1")
    s = Settings()
    assert (s.database.url, s.llm.provider, s.llm.base_url) == (
        "postgresql://db/keel",
        "openai",
        "http://vllm:8000/v1",
    )
    assert s.llm.max_tokens == 384  # the rest still comes from prod.yaml


def test_unknown_keys_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        Settings(surprise=1)  # type: ignore[call-arg]


def test_tools_confirm_names_servers_tools_or_both() -> None:
    from tools.gateway import ToolGateway, ToolSpec

    settings = Settings(env="test", tools={"confirm": ["python_exec", "calendar.schedule_meeting"]})
    gateway = ToolGateway(settings)

    def spec(server: str, name: str) -> ToolSpec:
        return ToolSpec("p", server, "1.0.0", name, "", {}, (), False)

    assert gateway.needs_confirmation(spec("python_exec", "run_python"))
    assert gateway.needs_confirmation(spec("calendar", "schedule_meeting"))
    assert not gateway.needs_confirmation(spec("calendar", "list_events"))
    assert not gateway.needs_confirmation(spec("github_trending", "trending_repos"))
    with pytest.raises(ValidationError):
        Settings(env="test", tools={"confirm": ["Calendar schedule"]})
    assert Settings(env="test").tools.confirm == []  # the test config keeps it off


def test_dev_and_prod_confirm_the_tools_with_side_effects() -> None:
    for env in ("dev", "prod"):
        data = yaml.safe_load((CONFIG_DIR / f"{env}.yaml").read_text())
        assert data["tools"]["confirm"] == ["python_exec", "calendar.schedule_meeting"], env
