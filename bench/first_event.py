"""Time to first event of a run over HTTP SSE, against a running `keel serve`.

    .venv/bin/python bench/first_event.py --url http://127.0.0.1:8000 --n 10

Prints the median and p90 of: first SSE event (run_started), the plan event, the first
text_delta, and run_finished, measured from just before the POST.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import httpx

from core.identity import issue_token
from core.settings import get_settings


def one_run(client: httpx.Client, message: str) -> dict[str, float]:
    thread_id = client.post("/v1/threads").json()["thread_id"]
    marks: dict[str, float] = {}
    t0 = time.perf_counter()
    body = {"input": {"message": message}}
    with client.stream("POST", f"/v1/threads/{thread_id}/runs", json=body) as resp:
        resp.raise_for_status()
        for line in resp.iter_lines():
            if not line.startswith("data: "):
                continue
            ev = json.loads(line[6:])
            key = {
                "run_started": "first_event",
                "plan": "plan",
                "text_delta": "first_token",
                "run_finished": "finished",
            }.get(ev["type"])
            if key and key not in marks:
                marks[key] = (time.perf_counter() - t0) * 1000
    return marks


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--n", type=int, default=10)
    p.add_argument("--message", default="Why is the sky blue? Answer briefly.")
    a = p.parse_args()
    token = issue_token(get_settings().auth, user="bench", tenant="bench", scopes=[])
    with httpx.Client(
        base_url=a.url, timeout=300, headers={"Authorization": f"Bearer {token}"}
    ) as client:
        rows = [one_run(client, a.message) for _ in range(a.n)]
    for key in ("first_event", "plan", "first_token", "finished"):
        vals = sorted(r[key] for r in rows if key in r)
        if vals:
            p90 = vals[min(len(vals) - 1, int(0.9 * len(vals)))]
            print(
                f"{key:12s} median {statistics.median(vals):9.1f} ms  p90 {p90:9.1f} ms"
                f"  (n={len(vals)})"
            )


if __name__ == "__main__":
    main()
