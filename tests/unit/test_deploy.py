"""compose.yaml follows the Compose spec; the Dockerfile installs what `make install` does."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "tests" / "compose" / "compose-spec.json"


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return data


def test_compose_yaml_validates_against_the_compose_specification() -> None:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    errors = list(jsonschema.Draft7Validator(schema).iter_errors(_compose()))
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors]


def test_the_schema_refuses_a_broken_compose_file() -> None:
    broken = _compose()
    broken["services"]["api"]["replicaz"] = 2  # unknown key
    broken["services"]["proxy"]["depends_on"] = {"api": {"condition": "whenever"}}
    errors = list(jsonschema.Draft7Validator(json.loads(SCHEMA.read_text())).iter_errors(broken))
    assert len(errors) >= 2


def test_compose_runs_two_api_replicas_behind_a_proxy_with_the_backing_services() -> None:
    services = _compose()["services"]
    assert services["api"]["deploy"]["replicas"] == 2
    assert {"proxy", "postgres", "redis", "qdrant", "otel-collector", "jaeger", "llm"} <= set(
        services
    )
    nginx = (ROOT / "config" / "deploy" / "nginx.conf").read_text()
    assert "proxy_buffering off;" in nginx


def _normalise(cmd: str) -> list[str]:
    """A uv/pip command with the interpreter and venv paths taken out."""
    words = shlex.split(cmd)
    out: list[str] = []
    skip = False
    for w in words:
        if skip:
            skip = False
            continue
        if w == "--python":
            skip = True
            continue
        out.append(
            re.sub(r"^.*/(uv|python)$", r"\1", w.replace("$(UV)", "uv").replace("$(BIN)/", ""))
        )
    return out


def _makefile_install() -> list[list[str]]:
    lines = (ROOT / "Makefile").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("$(STAMP):"))
    recipe: list[str] = []
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        recipe.append(line.strip())
    return [_normalise(c) for c in recipe if " pip " in c]


def _dockerfile_install() -> list[list[str]]:
    runs = [
        line.removeprefix("RUN ").strip()
        for line in (ROOT / "Dockerfile").read_text().splitlines()
        if line.startswith("RUN ")
    ]
    parts = [p.strip() for run in runs for p in run.split("&&")]
    return [_normalise(p) for p in parts if " pip " in p]


def test_the_dockerfile_installs_exactly_what_make_install_does() -> None:
    make, docker = _makefile_install(), _dockerfile_install()
    assert len(make) == 4, make  # uv itself, requirements.lock, models.lock, -e .
    assert docker == make


def test_the_image_runs_as_a_non_root_user_with_a_healthcheck() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert text.count("FROM ") >= 2
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1] not in {"root", "0"}
    assert "HEALTHCHECK" in text and "/healthz" in text
    assert "\nup:\n\tdocker compose up --build" in (ROOT / "Makefile").read_text()
