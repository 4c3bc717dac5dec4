"""``python -m bench.eval``: run the task set against a live Keel and write the results.

    python -m bench.eval [--only ID,PREFIX*] [--category memory,github] [--out bench/eval]
    python -m bench.eval --url http://127.0.0.1:8000 [--database-url URL] [--jwt-secret S]
    python -m bench.eval --model-file path/to/other.gguf | --llm-base-url http://host/v1

Without ``--url`` it starts its own ``keel serve`` (dev config, a fresh data directory, the
packaged model) and stops it after. Tasks run one at a time; exit code 0 when all pass, 1 when
any fails, 2 when the set or the stack cannot be used.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.eval import report
from bench.eval.runner import TaskResult, regrade, run_task
from bench.eval.stack import OwnStack, Stack
from bench.eval.tasks import HERE, load, validate
from bench.host import machine


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="keel eval", description=__doc__.split("\n")[0])
    p.add_argument("--tasks", nargs="*", type=Path, help="task files (default: tasks/*.yaml)")
    p.add_argument("--only", default="", help="comma-separated task ids (ID or PREFIX*)")
    p.add_argument("--category", default="", help="comma-separated categories")
    p.add_argument("--out", type=Path, default=HERE, help="where RESULTS.md and results.json go")
    p.add_argument("--no-write", action="store_true", help="print only")
    p.add_argument("--events", type=Path, help="write each task's events to DIR/<id>.jsonl")
    p.add_argument("--url", help="a running Keel (default: start one)")
    p.add_argument("--database-url", help="with --url: its database, for the corpus and seeds")
    p.add_argument("--jwt-secret", help="with --url: its JWT secret (default: the config's)")
    p.add_argument("--model-file", type=Path, help="serve this GGUF instead of the packaged one")
    p.add_argument("--llm-base-url", help="an OpenAI-compatible model URL instead")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per run stream")
    p.add_argument("--keep-data", action="store_true", help="keep the own stack's data dir")
    p.add_argument("--list", action="store_true", help="list the selected tasks and exit")
    p.add_argument(
        "--render",
        type=Path,
        help="write RESULTS.md again from this results.json; with --events, grade it again"
        " from the recorded events with the current checks (no run)",
    )
    return p


def _given_stack(args: argparse.Namespace) -> Stack:
    from core.settings import get_settings

    auth = get_settings().auth
    if args.jwt_secret:
        auth = auth.model_copy(update={"jwt_secret": args.jwt_secret})
    model = args.llm_base_url or (args.model_file.name if args.model_file else "as served")
    return Stack(url=args.url.rstrip("/"), auth=auth, database_url=args.database_url, model=model)


def _regraded(results: list[TaskResult], events_dir: Path) -> list[TaskResult]:
    import json

    tasks = {t.id: t for t in load()}
    out = []
    for old in results:
        path = events_dir / f"{old.id}.jsonl"
        if old.id not in tasks or not path.exists():
            out.append(old)
            continue
        events = [json.loads(line) for line in path.read_text().splitlines()]
        out.append(regrade(tasks[old.id], old, events))
    return out


def _split(text: str) -> list[str]:
    return [x for x in text.split(",") if x]


def main(argv: list[str] | None = None) -> int:
    """Run the evaluation; see the module docstring."""
    args = _parser().parse_args(argv)
    if args.render:
        rendered, meta = report.read(args.render)
        if args.events:
            rendered = _regraded(rendered, args.events)
            meta.note = (
                f"graded again at commit `{report.commit()}` from the run's recorded events"
                " (`--render results.json --events DIR`): same runs, current checks"
            )
        report.write(rendered, meta, args.out)
        print(report.totals(rendered))
        return 0
    tasks = load(args.tasks, _split(args.only), _split(args.category))
    problems = validate(tasks)
    if problems:
        print("eval: the task set is invalid:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 2
    if not tasks:
        print("eval: no task selected", file=sys.stderr)
        return 2
    if args.list:
        for task in tasks:
            print(f"{task.category:<14} {task.id:<28} {len(task.turns)} turn(s)")
        return 0
    own = None if args.url else OwnStack(args.model_file, args.llm_base_url, args.keep_data)
    load_start, sha = os.getloadavg(), report.commit()  # the code that runs, not a later one
    started, t0 = datetime.now(UTC), time.monotonic()
    results: list[TaskResult] = []
    try:
        stack = own.start() if own is not None else _given_stack(args)
        print(f"eval: {len(tasks)} tasks against {stack.url}, model {stack.model}", flush=True)
        for task in tasks:
            result = run_task(stack, task, args.timeout)
            results.append(result)
            print(report.line(result), flush=True)
            if args.events:
                report.write_events(result, args.events)
    except RuntimeError as exc:
        print(f"eval: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("eval: interrupted; reporting the tasks that ran", file=sys.stderr)
    finally:
        if own is not None:
            own.stop()
    if not results:
        return 2
    print(report.totals(results), flush=True)
    meta = report.Meta(
        started=started.isoformat(timespec="seconds"),
        finished=datetime.now(UTC).isoformat(timespec="seconds"),
        wall_s=round(time.monotonic() - t0, 1),
        commit=sha,
        model=stack.model,
        url=args.url or "own keel serve (dev config, fresh data dir)",
        machine=machine(),
        load_start=load_start,
        load_end=os.getloadavg(),
        argv=["python -m bench.eval", *(argv if argv is not None else sys.argv[1:])],
    )
    if not args.no_write:
        report.write(results, meta, args.out)
        print(f"eval: wrote {args.out / 'RESULTS.md'} and {args.out / 'results.json'}")
    return 0 if all(r.passed for r in results) else 1
