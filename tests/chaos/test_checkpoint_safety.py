"""Checkpoint safety (OWASP LLM03/LLM04, agentic memory poisoning of state): strict msgpack.

A crafted blob written straight into the checkpoint tables — a msgpack extension naming
``os.system``, a pickle, a LangChain ``constructor`` for ``subprocess.Popen`` — must never run
code when the thread is loaded: the next run fails closed with an ``error`` event
(``checkpoint_rejected``) and ``run_finished{error}``, history answers a 409 problem+json,
and the canary file is never created.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from pathlib import Path

import ormsgpack
import pytest

from tests.conftest import LiveServer, stream_run
from tests.fakes.openai_server import FakeOpenAI

EXT_CONSTRUCTOR_POS_ARGS = 1
EXT_METHOD_SINGLE_ARG = 3


class _Boom:
    def __init__(self, cmd: str) -> None:
        self.cmd = cmd

    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return (os.system, (self.cmd,))


def _payloads(canary: Path) -> dict[str, tuple[str, bytes]]:
    cmd = f"touch {canary}"
    ext = ormsgpack.Ext(EXT_CONSTRUCTOR_POS_ARGS, ormsgpack.packb(("os", "system", [cmd])))
    method = ormsgpack.Ext(
        EXT_METHOD_SINGLE_ARG, ormsgpack.packb(("subprocess", "getoutput", cmd, "__call__"))
    )
    lc = {
        "lc": 1,
        "type": "constructor",
        "id": ["subprocess", "Popen"],
        "kwargs": {"args": ["touch", str(canary)]},
    }
    return {
        "msgpack os.system": ("msgpack", ormsgpack.packb([ext])),
        "msgpack method call": ("msgpack", ormsgpack.packb([method])),
        "pickle": ("pickle", pickle.dumps([_Boom(cmd)])),
        "json constructor": ("json", json.dumps([lc]).encode()),
    }


@pytest.mark.parametrize(
    "kind", ["msgpack os.system", "msgpack method call", "pickle", "json constructor"]
)
def test_crafted_checkpoint_blob_fails_closed_without_running_code(
    live: LiveServer,
    fake_llm: FakeOpenAI,
    tmp_path: Path,
    kind: str,
    figure: Callable[[str, str], None],
) -> None:
    canary = tmp_path / "pwned"
    with live.client() as c:
        tid = c.post("/v1/threads").json()["thread_id"]
        _, frames = stream_run(c, tid, "What is the answer?")
        assert frames[-1].data["data"]["status"] == "success"
        type_, blob = _payloads(canary)[kind]
        n = live.sql(
            "UPDATE checkpoint_blobs SET type = %s, blob = %s"
            " WHERE thread_id = %s AND channel = 'messages' RETURNING 1",
            type_,
            blob,
            tid,
        )
        assert n, "the thread has no messages blob to tamper with"
        _, frames = stream_run(c, tid, "And now?")
        history = c.get(f"/v1/threads/{tid}/history")
    kinds = [(f.data["type"], f.data["data"].get("status")) for f in frames]
    finished = frames[-1].data["data"] if frames else {}
    errors = [f.data["data"] for f in frames if f.data["type"] == "error"]
    figure(
        f"checkpoint safety ({kind})",
        f"run ended {finished.get('status')!r} with error codes "
        f"{[e['code'] for e in errors]}; history {history.status_code}; "
        f"code executed: {canary.exists()}",
    )
    assert not canary.exists()
    assert finished.get("status") == "error", kinds
    assert [e["code"] for e in errors] == ["checkpoint_rejected"]
    assert "Traceback" not in json.dumps(errors)
    assert history.status_code == 409, history.text
    assert history.headers["content-type"] == "application/problem+json"
    assert history.json()["code"] == "checkpoint_rejected"
