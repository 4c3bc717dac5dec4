"""``keel serve --host/--port``: the bind address and port override the configuration."""

from __future__ import annotations

import pytest

from api.cli import _bound, build_parser
from core.settings import Settings


def test_serve_accepts_host_and_port_as_uvicorn_does() -> None:
    args = build_parser().parse_args(["serve", "--host", "0.0.0.0", "--port", "9123"])
    bound = _bound(Settings(env="test"), args.host, args.port)
    assert (bound.server.host, bound.server.port) == ("0.0.0.0", 9123)


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("10.1.2.3", ["127.0.0.1", "localhost", "::1", "10.1.2.3"]),
        ("0.0.0.0", ["127.0.0.1", "localhost", "::1"]),
        ("localhost", ["127.0.0.1", "localhost", "::1"]),
    ],
)
def test_a_named_host_is_served_a_wildcard_names_none(host: str, allowed: list[str]) -> None:
    bound = _bound(Settings(env="test"), host, None)
    assert bound.server.allowed_hosts == allowed
    assert bound.server.port == Settings(env="test").server.port


def test_serve_without_arguments_keeps_the_configuration() -> None:
    settings = Settings(env="test")
    assert _bound(settings, None, None).server == settings.server
