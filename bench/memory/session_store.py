"""Session memory on qdrant-client local mode: batched versus per-fact writes, and search time.

.venv/bin/python -m bench.memory.session_store
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from bench.memory.fixtures import PAIRS
from core.embeddings import MiniLMEmbedder
from core.settings import SessionMemorySettings
from memory.session import Fact, open_session_memory

N = 96


async def main() -> None:
    emb = MiniLMEmbedder()
    texts = [f"{f} (note {i})" for i in range(N // len(PAIRS)) for f, _ in PAIRS]
    emb.embed_sync(texts)  # cached: this measures the store, not the model
    with tempfile.TemporaryDirectory() as d:
        store = await open_session_memory(SessionMemorySettings(), Path(d), embedder=emb)
        facts = [
            Fact(tenant="t", thread_id="a", source=str(i), kind="finding", text=t)
            for i, t in enumerate(texts)
        ]
        t0 = time.perf_counter()
        await store.remember(facts)
        batch = time.perf_counter() - t0
        single_facts = [f.model_copy(update={"thread_id": "b"}) for f in facts]
        t0 = time.perf_counter()
        for f in single_facts:
            await store.remember([f])
        single = time.perf_counter() - t0
        searches = []
        for _, q in PAIRS:
            emb.embed_sync([q])
            t0 = time.perf_counter()
            await store.recall("t", "a", q, limit=4)
            searches.append(time.perf_counter() - t0)
        await store.close()
    print(f"{N} facts: one batched upsert {batch * 1000:.0f} ms ({batch / N * 1000:.2f} ms/fact);")
    print(f"          one upsert per fact {single * 1000:.0f} ms ({single / N * 1000:.2f} ms/fact)")
    print(
        f"search in a {2 * N}-point collection, filtered to one thread: "
        f"{statistics.median(searches) * 1000:.2f} ms median"
    )


if __name__ == "__main__":
    asyncio.run(main())
