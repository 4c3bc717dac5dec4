"""Measure a packaged local GGUF as Keel's planner model.

Usage (from /work/main):
    python bench/llm_choice/measure.py --model smollm2|qwen05|qwen15 [--models-dir DIR]
                                       [--gguf PATH] [--port N] [--out results/NAME.json]

It starts bench/llm_choice/serve.py in a subprocess, waits for /health, then measures:
  * start time (Popen -> /health ok), GGUF size, server RSS (VmRSS and peak VmHWM);
  * 20 labelled research questions through
    ChatOpenAI(...).with_structured_output(Plan, method="json_schema", include_raw=True):
    plan validity rate, first-step tool accuracy, median latency per plan;
  * streaming decode speed on a ~150-token plain answer (client-side tokens/s via
    ChatOpenAI.stream, and the server's own `timings.predicted_per_second`).
The plan schema is the planner's own (``graphs.state.Plan``). GGUFs are expected in
--models-dir (default /tmp/llmchoice/models) under the names that bench/llm_choice/get_models.sh
produces.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from graphs.state import Plan

HERE = Path(__file__).resolve().parent

MODELS = {
    "smollm2": "SmolLM2-135M-Instruct.Q4_1.gguf",
    "qwen05": "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    "qwen15": "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
}

SYSTEM = (
    "You are the planner of a research assistant. Turn the user's question into a short "
    "plan of 1 to 3 steps (usually 1). Each step has a short description and exactly one "
    "tool:\n"
    "- github_trending: trending or popular GitHub repositories, stars, new projects\n"
    "- documents: the user's own uploaded files, notes, PDFs, reports, knowledge base\n"
    "- python_exec: calculations, statistics, unit conversions, data analysis, plots\n"
    "- calendar: the user's meetings, schedule, availability, appointments\n"
    "- none: general knowledge the assistant can answer directly\n"
    "Answer with JSON only."
)

FEW_SHOT = [
    (
        "Which Go repositories are trending on GitHub today?",
        [("Fetch today's trending Go repositories", "github_trending")],
    ),
    (
        "What did my meeting notes from Monday say about the budget?",
        [("Search the user's documents for Monday's meeting notes on the budget", "documents")],
    ),
    (
        "Calculate the monthly payment on a 200000 loan at 5% over 30 years.",
        [("Compute the loan payment with the annuity formula", "python_exec")],
    ),
    (
        "Do I have anything booked on Thursday morning?",
        [("Look up Thursday morning in the user's calendar", "calendar")],
    ),
    ("Why is the sky blue?", [("Explain Rayleigh scattering from general knowledge", "none")]),
]

# (question, expected first-step tool)
QUESTIONS: list[tuple[str, str]] = [
    ("What Python repositories are trending on GitHub this week?", "github_trending"),
    ("Which Rust projects gained the most stars today?", "github_trending"),
    ("Show me the hottest new machine learning repos right now.", "github_trending"),
    ("Are there any trending TypeScript frameworks on GitHub this month?", "github_trending"),
    ("Summarize the quarterly report I uploaded yesterday.", "documents"),
    ("Search my notes for anything about the Postgres migration.", "documents"),
    ("What does my contract PDF say about the termination clause?", "documents"),
    ("Find the section in my knowledge base that covers onboarding.", "documents"),
    ("Compute the compound interest on $5,000 at 4% over 10 years.", "python_exec"),
    ("Plot y = sin(x) * x for x from 0 to 20.", "python_exec"),
    ("What is the standard deviation of 3, 7, 7, 19, 24?", "python_exec"),
    ("Convert 98.6 Fahrenheit to Celsius and show the calculation.", "python_exec"),
    ("What meetings do I have tomorrow?", "calendar"),
    ("Schedule a call with Anna next Tuesday at 3pm.", "calendar"),
    ("Am I free on Friday afternoon?", "calendar"),
    ("Move my dentist appointment to next week.", "calendar"),
    ("What is the capital of Australia?", "none"),
    ("Explain the difference between TCP and UDP.", "none"),
    ("Who wrote Pride and Prejudice?", "none"),
    ("What does the acronym REST stand for in web APIs?", "none"),
]

STREAM_PROMPT = (
    "In about 150 words, explain how a hash table works: hashing, buckets, "
    "collisions and resizing. Write plain prose, no lists, no code."
)


def few_shot_messages():
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

    msgs = [SystemMessage(SYSTEM)]
    for q, steps in FEW_SHOT:
        plan = {"steps": [{"description": d, "tool": t} for d, t in steps]}
        msgs += [HumanMessage(q), AIMessage(json.dumps(plan))]
    return msgs


def http_json(url: str, body: dict | None = None, timeout: float = 120):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def proc_mem_mb(pid: int) -> dict:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        if k in ("VmRSS", "VmHWM"):
            out[k] = round(int(v.split()[0]) / 1024, 1)
    return out


def start_server(gguf: Path, port: int, ctx: int, log_path: Path, extra=()):
    log = open(log_path, "w")
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [
            sys.executable,
            str(HERE / "serve.py"),
            "--model",
            str(gguf),
            "--port",
            str(port),
            "--ctx",
            str(ctx),
            *extra,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = t0 + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}; see {log_path}")
        try:
            if http_json(f"http://127.0.0.1:{port}/health", timeout=1).get("status") == "ok":
                ready = time.monotonic() - t0
                m = re.search(r"load_s=([0-9.]+)", log_path.read_text())
                return proc, ready, float(m.group(1)) if m else None
        except Exception:
            pass
        time.sleep(0.05)
    proc.terminate()
    raise RuntimeError("server did not become healthy in 180 s")


def run_plans(base_url: str, max_tokens: int):
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(
        base_url=base_url, api_key="local", model="local", max_tokens=max_tokens, temperature=0
    )
    planner = llm.with_structured_output(Plan, method="json_schema", include_raw=True)
    prefix = few_shot_messages()
    from langchain_core.messages import HumanMessage

    # one warm-up call (fills the prompt cache with the shared prefix; not counted)
    planner.invoke(prefix + [HumanMessage("What is 2 + 2?")])

    rows = []
    for q, want in QUESTIONS:
        t = time.perf_counter()
        err = None
        parsed = None
        raw_text = None
        usage = None
        try:
            res = planner.invoke(prefix + [HumanMessage(q)])
            parsed = res.get("parsed")
            raw = res.get("raw")
            raw_text = getattr(raw, "content", None)
            usage = getattr(raw, "usage_metadata", None)
            if res.get("parsing_error") is not None:
                err = repr(res["parsing_error"])[:300]
        except Exception as e:  # e.g. openai LengthFinishReasonError on truncated JSON
            err = f"{type(e).__name__}: {e}"[:300]
        dt = time.perf_counter() - t
        ok = isinstance(parsed, Plan)
        tools = [s.tool for s in parsed.steps] if ok else []
        rows.append(
            {
                "question": q,
                "expected": want,
                "latency_s": round(dt, 3),
                "valid": ok,
                "tools": tools,
                "first_ok": ok and tools[0] == want,
                "any_ok": ok and want in tools,
                "out_tokens": (usage or {}).get("output_tokens"),
                "error": err,
                "raw": raw_text if not ok else None,
                "plan": parsed.model_dump() if ok else None,
            }
        )
        print(f"  {dt:5.2f}s valid={ok!s:5} want={want:15} got={tools}", flush=True)
    return rows


def run_stream(base_url: str, port: int, reps: int = 3):
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(
        base_url=base_url,
        api_key="local",
        model="local",
        max_tokens=200,
        temperature=0,
        stream_usage=True,
    )
    client = []
    for _ in range(reps):
        t0 = time.perf_counter()
        first = last = None
        n_chunks = 0
        out_tokens = None
        for ch in llm.stream(STREAM_PROMPT):
            now = time.perf_counter()
            if ch.content:
                n_chunks += 1
                first = first or now
                last = now
            if ch.usage_metadata:
                out_tokens = ch.usage_metadata.get("output_tokens")
        n = out_tokens or n_chunks
        client.append(
            {
                "ttft_s": round(first - t0, 3),
                "chunks": n_chunks,
                "out_tokens": out_tokens,
                "total_s": round(last - t0, 3),
                "decode_tok_s": round((n - 1) / (last - first), 1) if last > first else None,
            }
        )
    # the server's own timings (not surfaced by langchain): one raw streaming request
    server_timings = None
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/chat/completions",
        data=json.dumps(
            {
                "model": "local",
                "max_tokens": 200,
                "temperature": 0,
                "stream": True,
                "stream_options": {"include_usage": True},
                "messages": [{"role": "user", "content": STREAM_PROMPT}],
            }
        ).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=300) as r:
        for line in r:
            line = line.decode().strip()
            if line.startswith("data: {"):
                obj = json.loads(line[6:])
                if obj.get("timings"):
                    server_timings = obj["timings"]
    return client, server_timings


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, choices=sorted(MODELS))
    ap.add_argument(
        "--models-dir", default=os.environ.get("KEEL_MODELS_DIR", "/tmp/llmchoice/models")
    )
    ap.add_argument("--gguf", help="explicit GGUF path (overrides --models-dir)")
    ap.add_argument("--port", type=int, default=18090)
    ap.add_argument("--ctx", type=int, default=4096)
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument(
        "--serve-arg",
        action="append",
        default=[],
        help="extra serve.py argument, e.g. --serve-arg=--no-repack",
    )
    ap.add_argument("--out", help="JSON results path (default results/<model>.json here)")
    args = ap.parse_args(argv)

    gguf = Path(args.gguf or Path(args.models_dir) / MODELS[args.model])
    out = Path(args.out or HERE / "results" / f"{args.model}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    log_path = Path(f"/tmp/llmchoice/server-{args.model}.log")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    base_url = f"http://127.0.0.1:{args.port}/v1"

    load_before = os.getloadavg()
    print(f"[{args.model}] {gguf} ({gguf.stat().st_size / 1e6:.1f} MB)", flush=True)
    proc, start_s, load_s = start_server(gguf, args.port, args.ctx, log_path, args.serve_arg)
    try:
        mem_idle = proc_mem_mb(proc.pid)
        print(f"  ready in {start_s:.2f}s, idle {mem_idle}", flush=True)
        t = time.perf_counter()
        rows = run_plans(base_url, args.max_tokens)
        plans_wall = time.perf_counter() - t
        stream_client, stream_server = run_stream(base_url, args.port)
        mem_after = proc_mem_mb(proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()

    n = len(rows)
    lat = [r["latency_s"] for r in rows]
    summary = {
        "model": args.model,
        "gguf": str(gguf),
        "gguf_mb": round(gguf.stat().st_size / 1e6, 1),
        "start_to_health_s": round(start_s, 2),
        "model_load_s_in_process": load_s,
        "rss_idle_mb": mem_idle.get("VmRSS"),
        "rss_after_mb": mem_after.get("VmRSS"),
        "rss_peak_mb": mem_after.get("VmHWM"),
        "plan_valid_rate": sum(r["valid"] for r in rows) / n,
        "first_tool_acc": sum(r["first_ok"] for r in rows) / n,
        "any_step_tool_acc": sum(r["any_ok"] for r in rows) / n,
        "mean_steps": round(statistics.mean(len(r["tools"]) for r in rows if r["valid"]), 2)
        if any(r["valid"] for r in rows)
        else None,
        "plan_latency_median_s": round(statistics.median(lat), 3),
        "plan_latency_max_s": round(max(lat), 3),
        "plans_wall_s": round(plans_wall, 1),
        "plan_out_tokens_median": statistics.median(
            [r["out_tokens"] for r in rows if r["out_tokens"]] or [0]
        ),
        "stream_decode_tok_s_client_median": statistics.median(
            [c["decode_tok_s"] for c in stream_client if c["decode_tok_s"]]
        ),
        "stream_ttft_s_median": statistics.median([c["ttft_s"] for c in stream_client]),
        "stream_out_tokens": stream_client[0]["out_tokens"],
        "stream_decode_tok_s_server": round(stream_server["predicted_per_second"], 1)
        if stream_server
        else None,
        "prompt_tok_s_server": round(stream_server["prompt_per_second"], 1)
        if stream_server
        else None,
        "ctx": args.ctx,
        "max_tokens": args.max_tokens,
        "serve_args": args.serve_arg,
        # other work on this 2-core box skews timings: keep the 1-min load average
        "loadavg_1m_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
    }
    out.write_text(
        json.dumps(
            {
                "summary": summary,
                "rows": rows,
                "stream": stream_client,
                "stream_server_timings": stream_server,
            },
            indent=2,
        )
    )
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
