"""Print a markdown table from bench/llm_choice/results/*.json (one row per run file)."""

import json
import sys
from pathlib import Path

RES = Path(__file__).resolve().parent / "results"
COLS = [
    ("run", lambda f, s: f.stem),
    ("GGUF MB", lambda f, s: s["gguf_mb"]),
    ("start→/health s", lambda f, s: s["start_to_health_s"]),
    ("RSS idle/after MB", lambda f, s: f"{s['rss_idle_mb']:.0f}/{s['rss_after_mb']:.0f}"),
    ("valid plans", lambda f, s: f"{s['plan_valid_rate']:.0%}"),
    ("1st-step tool acc", lambda f, s: f"{s['first_tool_acc']:.0%}"),
    ("mean steps", lambda f, s: s["mean_steps"]),
    ("plan latency median s", lambda f, s: s["plan_latency_median_s"]),
    ("max s", lambda f, s: s["plan_latency_max_s"]),
    ("decode tok/s client", lambda f, s: s["stream_decode_tok_s_client_median"]),
    ("decode tok/s server", lambda f, s: s["stream_decode_tok_s_server"]),
    ("load 1m", lambda f, s: "→".join(str(x) for x in s.get("loadavg_1m_before_after", []))),
]


def main(paths):
    files = [Path(p) for p in paths] or sorted(RES.glob("*.json"))
    print("| " + " | ".join(c for c, _ in COLS) + " |")
    print("|" + "---|" * len(COLS))
    for f in files:
        s = json.loads(f.read_text())["summary"]
        print("| " + " | ".join(str(fn(f, s)) for _, fn in COLS) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
