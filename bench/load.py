"""The load process for many concurrent streams (bench/suite.py's ``many_streams``).

    .venv/bin/python -m bench.load --url URL --token JWT --streams 500 --words 300 --word-ms 50

Opens ``streams`` runs at once on a running Keel, each on its own thread and each answering
``words`` words ``word_ms`` apart (the bench model's directive), reads every stream to its
end and prints one JSON line: text_delta events received per second over the window from the
first POST to the last event, and how many streams finished.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import httpx

from bench.servers import directive


async def main_async(a: argparse.Namespace) -> dict[str, float]:
    limits = httpx.Limits(max_connections=a.streams + 10, max_keepalive_connections=a.streams)
    headers = {"Authorization": f"Bearer {a.token}"}
    async with httpx.AsyncClient(base_url=a.url, timeout=600, limits=limits, headers=headers) as c:
        tids = []
        for _ in range(a.streams):
            tids.append((await c.post("/v1/threads")).json()["thread_id"])
        message = f"Stream please. {directive(a.words, a.word_ms)}"
        got: list[int] = []
        ok: list[bool] = []
        last_event = [0.0]

        async def one(tid: str) -> None:
            n = 0
            async with c.stream(
                "POST", f"/v1/threads/{tid}/runs", json={"input": {"message": message}}
            ) as r:
                if r.status_code != 200:
                    ok.append(False)
                    return
                async for line in r.aiter_lines():
                    if line == "event: text_delta":
                        n += 1
                        last_event[0] = time.perf_counter()
            got.append(n)
            ok.append(n == a.words)

        t0 = time.perf_counter()
        await asyncio.gather(*(one(t) for t in tids))
        window = last_event[0] - t0
    total = sum(got)
    return {
        "streams": a.streams,
        "finished": sum(ok),
        "events": total,
        "offered_events": a.streams * a.words,
        "window_s": round(window, 2),
        "ideal_window_s": a.words * a.word_ms / 1000,
        "delivered_per_s": total / window if window > 0 else 0.0,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--url", required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--streams", type=int, default=500)
    p.add_argument("--words", type=int, default=300)
    p.add_argument("--word-ms", type=float, default=50.0)
    print(json.dumps(asyncio.run(main_async(p.parse_args()))))


if __name__ == "__main__":
    main()
