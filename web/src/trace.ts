/**
 * The trace page (/traces/{id}): each run of the trace as a waterfall of its spans (the run,
 * each node phase, each tool call) from `GET /v1/traces/{id}`, with the UI's sign-in.
 */
import "./style.css";
import { ApiError, call, token } from "./api";
import { explain } from "./errors";

interface Span {
  kind: string;
  name: string;
  start: string;
  duration_ms: number;
  status: string;
}
interface Run {
  run_id: string;
  thread_id: string;
  status: string;
  spans: Span[];
}

const traceId = location.pathname.split("/").pop() ?? "";
const note = document.querySelector<HTMLElement>("#trace-note")!;
const out = document.querySelector<HTMLElement>("#runs")!;
document.querySelector("#trace-id")!.textContent = traceId;

function el(tag: string, cls: string, text = ""): HTMLElement {
  return Object.assign(document.createElement(tag), { className: cls, textContent: text });
}

function waterfall(run: Run): HTMLElement {
  const section = document.createElement("section");
  section.className = "trace-run card";
  section.dataset.run = run.run_id;
  section.append(el("h2", "", `Run ${run.run_id.slice(0, 8)} · ${run.status}`));
  const t0 = Math.min(...run.spans.map((s) => Date.parse(s.start)));
  const total = Math.max(1, ...run.spans.map((s) => Date.parse(s.start) - t0 + s.duration_ms));
  const list = document.createElement("ol");
  list.className = "spans";
  list.setAttribute("aria-label", `Spans of run ${run.run_id.slice(0, 8)}`);
  for (const s of run.spans) {
    const row = el("li", `span ${s.kind}`);
    row.dataset.status = s.status;
    const lane = el("div", "lane");
    lane.setAttribute("aria-hidden", "true");
    const ok = s.status === "ok" || s.status === "success";
    const bar = el("div", `bar ${s.kind}${ok ? "" : " failed"}`);
    bar.style.left = `${(100 * (Date.parse(s.start) - t0)) / total}%`;
    bar.style.width = `${Math.max(0.5, (100 * s.duration_ms) / total)}%`;
    lane.append(bar);
    const status = ok ? "" : ` · ${s.status}`;
    row.append(el("span", "span-name", `${s.kind} ${s.name}`), lane, el("span", "ms", `${s.duration_ms.toFixed(1)} ms${status}`));
    list.append(row);
  }
  section.append(list);
  return section;
}

async function show() {
  if (!token.get()) {
    note.replaceChildren("Sign in on ", Object.assign(document.createElement("a"), { href: "/", textContent: "Keel's main page" }), " first.");
    return;
  }
  try {
    const trace = await call<{ runs: Run[] }>("GET", `/v1/traces/${traceId}`);
    note.textContent = trace.runs.length ? `${trace.runs.length} run${trace.runs.length === 1 ? "" : "s"}` : "No run of yours has this trace.";
    out.replaceChildren(...trace.runs.map(waterfall));
  } catch (err) {
    note.textContent = explain(err instanceof ApiError ? err.problem.code : undefined).what;
  }
}

void show();
