"""The evaluation's HTTP client: one turn = a run's SSE stream, plus the runs that resume it.

A run that ends ``interrupted`` on a ``confirmation_required`` is decided through ``POST
/v1/runs/{run_id}/confirm`` and the resumed run's stream is read the same way, so a turn's
events are every event of its runs, in order. Run time is the client's wall time from the
request to ``run_finished``, summed over the turn's runs (time spent deciding is not in it).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

Event = dict[str, Any]
# Decides a held call: its ``confirmation_required`` data → approve?
Decide = Callable[[dict[str, Any]], bool]

MAX_CONFIRMATIONS = 4
MAX_QUOTA_WAITS = 3


class TurnFailed(Exception):
    """The turn could not be run (HTTP refusal, broken stream); the message says why."""


@dataclass
class RunRecord:
    """One run of a turn, as the client saw it."""

    run_id: str
    status: str
    seconds: float
    tokens: int
    events: list[Event]


@dataclass
class TurnRecord:
    """Everything one turn produced."""

    thread_id: str
    runs: list[RunRecord] = field(default_factory=list)

    @property
    def events(self) -> list[Event]:
        """Every event of the turn's runs, in order."""
        return [e for r in self.runs for e in r.events]

    @property
    def status(self) -> str:
        """The last run's final status."""
        return self.runs[-1].status if self.runs else "none"

    @property
    def seconds(self) -> float:
        """Run time: the sum of the runs' wall times."""
        return sum(r.seconds for r in self.runs)

    @property
    def tokens(self) -> int:
        """Tokens used, from ``run_finished.usage``."""
        return sum(r.tokens for r in self.runs)

    @property
    def answer(self) -> str:
        """The streamed answer text."""
        return "".join(e["data"]["text"] for e in self.events if e["type"] == "text_delta")


def sse_events(lines: Iterable[str]) -> Iterator[Event]:
    """Envelopes of an SSE stream given as lines (comments and pings skipped)."""
    data: list[str] = []
    for raw in lines:
        line = raw.rstrip("\r")
        if line == "":
            if data:
                yield json.loads("\n".join(data))
            data = []
        elif line.startswith("data:"):
            value = line[5:]
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        yield json.loads("\n".join(data))


class Keel:
    """A caller of one Keel: a bearer token and an HTTP client."""

    def __init__(self, url: str, token: str, timeout_s: float = 300.0) -> None:
        """Talk to ``url`` as the holder of ``token``; a run's stream may take ``timeout_s``."""
        self.http = httpx.Client(
            base_url=url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(timeout_s, connect=10.0),
        )

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()

    def __enter__(self) -> Keel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def new_thread(self) -> str:
        """A new thread owned by the caller."""
        r = self.http.post("/v1/threads")
        if r.status_code != 201:
            raise TurnFailed(f"POST /v1/threads answered {r.status_code}: {r.text[:200]}")
        thread_id: str = r.json()["thread_id"]
        return thread_id

    def turn(self, thread_id: str, message: str, decide: Decide) -> TurnRecord:
        """Run ``message`` on the thread, deciding every held call with ``decide``."""
        record = TurnRecord(thread_id)
        run = self._stream(
            f"/v1/threads/{thread_id}/runs", {"input": {"message": message}, "agent": "research"}
        )
        record.runs.append(run)
        for _ in range(MAX_CONFIRMATIONS):
            if run.status != "interrupted":
                break
            held = [e for e in run.events if e["type"] == "confirmation_required"]
            if not held:
                break
            asked = held[-1]["data"]
            body = {"approve": decide(asked), "confirmation_id": asked["confirmation_id"]}
            run = self._stream(f"/v1/runs/{run.run_id}/confirm", body)
            record.runs.append(run)
        return record

    def _stream(self, path: str, body: dict[str, Any]) -> RunRecord:
        for _ in range(MAX_QUOTA_WAITS + 1):
            started = time.monotonic()
            with self.http.stream("POST", path, json=body) as resp:
                if resp.status_code == 429:
                    resp.read()
                    wait = min(float(resp.headers.get("retry-after", "5")), 60.0)
                    time.sleep(wait)
                    continue
                if resp.status_code != 200:
                    resp.read()
                    raise TurnFailed(f"POST {path} answered {resp.status_code}: {resp.text[:300]}")
                events: list[Event] = []
                for event in sse_events(resp.iter_lines()):
                    events.append(event)
                    if event["type"] == "run_finished":
                        break
            seconds = time.monotonic() - started
            if not events or events[-1]["type"] != "run_finished":
                raise TurnFailed(f"the stream of {path} ended without run_finished")
            finished = events[-1]["data"]
            return RunRecord(
                run_id=events[-1]["run_id"],
                status=finished["status"],
                seconds=seconds,
                tokens=int(finished.get("usage", {}).get("total_tokens", 0)),
                events=events,
            )
        raise TurnFailed(f"POST {path} refused over quota {MAX_QUOTA_WAITS + 1} times")
