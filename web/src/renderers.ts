/**
 * The renderer registry: one renderer per event type, registered by type name. The view
 * looks a renderer up by `event.type`; a type with no renderer gets the generic one, so a
 * backend that learns a new event type never breaks the UI.
 */
import type { KeelEvent } from "./generated/events";
import { highlight, markdown } from "./markdown";

export interface RenderContext {
  /** The element holding the run's messages (one per run, in order). */
  run(runId: string): HTMLElement;
  /** Called with the answer text a user copied (an implicit signal). */
  onCopy(runId: string): void;
  /** Loads an artifact behind auth as an object URL. */
  blobUrl(path: string): Promise<string>;
  /** Feedback controls for a finished run. */
  feedback(runId: string, traceId: string): HTMLElement;
  /** Approve or reject a held tool call; the view follows the resumed run's stream. */
  confirm(runId: string, confirmationId: string, approve: boolean): void;
  /** What the user can do after a failed run (retry, rephrase, ask for a scope). */
  recover(code: string, traceId: string): HTMLElement;
}

type Of<T extends KeelEvent["type"]> = Extract<KeelEvent, { type: T }>;
type Renderer<E extends KeelEvent = KeelEvent> = (event: E, ctx: RenderContext) => void;

const registry = new Map<string, Renderer>();

export function register<T extends KeelEvent["type"]>(type: T, renderer: Renderer<Of<T>>): void {
  registry.set(type, renderer as Renderer);
}

export function render(event: KeelEvent, ctx: RenderContext): void {
  (registry.get(event.type) ?? generic)(event, ctx);
}

export function registered(): string[] {
  return [...registry.keys()];
}

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string> = {},
  text?: string,
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function card(ctx: RenderContext, event: KeelEvent, cls: string): HTMLElement {
  const node = el("div", { class: `card ${cls}`, "data-seq": String(event.seq), "data-type": event.type });
  ctx.run(event.run_id).append(node);
  return node;
}

function copyButton(ctx: RenderContext, runId: string, text: () => string): HTMLButtonElement {
  const button = el("button", { type: "button", class: "copy" }, "Copy");
  button.addEventListener("click", () => {
    void navigator.clipboard?.writeText(text()).catch(() => undefined);
    ctx.onCopy(runId);
  });
  return button;
}

register("run_started", (e, ctx) => {
  const q = card(ctx, e, "question");
  q.textContent = e.data.message;
});

register("agent_status", () => {
  // Drives the status line (machine.ts), not the message list.
});

register("text_delta", (e, ctx) => {
  const run = ctx.run(e.run_id);
  let answer = run.querySelector<HTMLElement>(":scope > .answer");
  if (!answer) {
    answer = el("div", { class: "card answer", "data-type": "answer" });
    answer.append(el("div", { class: "answer-text" }), copyButton(ctx, e.run_id, () => answer!.dataset.raw ?? ""));
    run.append(answer);
  }
  answer.dataset.raw = (answer.dataset.raw ?? "") + e.data.text;
  const text = answer.querySelector<HTMLElement>(".answer-text")!;
  text.append(el("span", { "data-seq": String(e.seq) }, e.data.text));
});

// --- the run's timeline: plan steps with their state --------------------------------------
export type StepState = "pending" | "running" | "done" | "failed" | "degraded";
interface Progress {
  steps: HTMLLIElement[];
  current: number;
  flag: StepState | null; // failed or degraded, seen while the current step ran
}
const progress = new Map<string, Progress>();

function setStep(li: HTMLLIElement | undefined, state: StepState) {
  if (!li) return;
  li.dataset.state = state;
  li.querySelector(".step-state")!.textContent = state;
}

/** The current step of the run ends as done, or as failed / degraded if that was seen. */
function finishStep(runId: string, index: number) {
  const p = progress.get(runId);
  if (!p) return;
  setStep(p.steps[index], p.flag ?? "done");
  p.flag = null;
  p.current = index + 1;
  setStep(p.steps[p.current], "running");
}

function flagStep(runId: string, state: "failed" | "degraded") {
  const p = progress.get(runId);
  if (!p || !p.steps[p.current]) return;
  if (p.flag !== "failed") p.flag = state;
  p.steps[p.current].dataset.flag = p.flag;
}

register("plan", (e, ctx) => {
  const c = card(ctx, e, "plan");
  c.append(el("h3", { class: "label" }, "Plan"));
  const ol = el("ol", { class: "steps" });
  const steps = e.data.steps.map((step) => {
    const li = el("li", { "data-state": "pending" });
    li.append(
      el("span", { class: "step-state" }, "pending"),
      el("span", { class: "step-text" }, step.description),
      el("span", { class: "step-tool" }, step.tool === "none" ? "model" : step.tool),
    );
    ol.append(li);
    return li;
  });
  c.append(ol);
  progress.set(e.run_id, { steps, current: 0, flag: null });
  setStep(steps[0], "running");
});

register("step_result", (e, ctx) => {
  finishStep(e.run_id, e.data.index);
  const c = card(ctx, e, "step");
  c.append(el("div", { class: "label" }, `Step ${e.data.index + 1}: ${e.data.description}`));
  c.append(collapsible(e.data.text, "finding"));
});

/** Long text collapsed behind a one-line summary; short text shown as it is. */
function collapsible(text: string, what: string, pre = false): HTMLElement {
  const body = el(pre ? "pre" : "div", { class: "body" }, text);
  if (text.length <= 280 && text.split("\n").length <= 6) return body;
  const details = el("details");
  const first = text.split("\n")[0].slice(0, 100);
  details.append(el("summary", {}, `${what}: ${first}${first.length < text.length ? "…" : ""}`), body);
  return details;
}

/** One line saying what a tool returned: hits, rows, items, or its size. */
export function summarize(result: unknown): string {
  if (Array.isArray(result)) return `${result.length} item${result.length === 1 ? "" : "s"}`;
  if (result && typeof result === "object") {
    for (const [key, value] of Object.entries(result)) {
      if (Array.isArray(value)) return `${value.length} ${key}`;
    }
  }
  const size = JSON.stringify(result)?.length ?? 0;
  return size > 1024 ? `${(size / 1024).toFixed(1)} kB` : `${size} bytes`;
}

// --- document hits, for the citations of the answer --------------------------------------
export interface Hit {
  document: string;
  document_id?: string;
  page?: number | null;
  excerpt?: string;
}
const hits = new Map<string, Hit[]>();

/** The search hit of `runId` (or any run) for the document and page a citation names. */
export function hitFor(runId: string, document: string, page: number | null): Hit | null {
  const runs = [hits.get(runId) ?? [], ...hits.values()];
  for (const list of runs) {
    const found = list.find((h) => h.document === document && (page === null || h.page === page));
    if (found) return found;
  }
  return null;
}

function rememberHits(runId: string, result: unknown) {
  const list = (result as { hits?: unknown } | null)?.hits;
  if (!Array.isArray(list)) return;
  const own = hits.get(runId) ?? [];
  own.push(...(list.filter((h) => h && typeof h.document === "string") as Hit[]));
  hits.set(runId, own);
}

register("tool_call", (e, ctx) => {
  const c = card(ctx, e, "tool");
  c.dataset.callId = e.data.call_id;
  const version = e.data.version ? ` v${e.data.version}` : "";
  c.append(
    el("div", { class: "label" }, `${e.data.tool_name}${version}`),
    el("div", { class: "tool-state", "data-state": "running" }, "running…"),
    collapsible(JSON.stringify(e.data.args, null, 2), "arguments", true),
  );
  c.lastElementChild!.classList.add("args");
});

register("tool_result", (e, ctx) => {
  const run = ctx.run(e.run_id);
  const c = run.querySelector<HTMLElement>(`.tool[data-call-id="${CSS.escape(e.data.call_id)}"]`) ?? card(ctx, e, "tool");
  c.dataset.resultSeq = String(e.seq);
  rememberHits(e.run_id, e.data.result);
  const took = e.data.duration_ms == null ? "" : ` in ${Math.round(e.data.duration_ms)} ms`;
  const cached = e.data.cached_at ? ` (cached ${e.data.cached_at})` : "";
  c.querySelector(".tool-state")?.remove();
  c.querySelector(".label")!.after(el("div", { class: "tool-state done", "data-state": "done" }, `done${took}${cached}`));
  const details = el("details", { class: "result" });
  details.append(el("summary", {}, `result: ${summarize(e.data.result)}`), el("pre", {}, JSON.stringify(e.data.result, null, 2)));
  c.append(details);
});

register("tool_error", (e, ctx) => {
  flagStep(e.run_id, "failed");
  const c = card(ctx, e, "tool-error");
  const version = e.data.version ? ` v${e.data.version}` : "";
  c.append(el("div", { class: "label" }, `${e.data.tool_name}${version}: ${e.data.code}`), el("div", {}, e.data.error));
  if (e.data.expected) c.append(el("div", {}, `expected: ${e.data.expected}`));
  if (e.data.hint) c.append(el("div", {}, `hint: ${e.data.hint}`));
});

register("confirmation_required", (e, ctx) => {
  const c = card(ctx, e, "confirm");
  c.dataset.confirmationId = e.data.confirmation_id;
  const approve = el("button", { type: "button", class: "confirm-approve" }, "Approve");
  const reject = el("button", { type: "button", class: "confirm-reject" }, "Reject");
  const decide = (yes: boolean) => {
    approve.disabled = reject.disabled = true;
    ctx.confirm(e.run_id, e.data.confirmation_id, yes);
  };
  approve.addEventListener("click", () => decide(true));
  reject.addEventListener("click", () => decide(false));
  const actions = el("div", { class: "confirm-actions" });
  actions.append(approve, reject);
  c.append(
    el("div", { class: "label" }, `${e.data.tool_name} v${e.data.version} needs your confirmation`),
    el("pre", { class: "args" }, JSON.stringify(e.data.args, null, 2)),
    actions,
  );
});

register("confirmation_decided", (e, ctx) => {
  const held = document.querySelector<HTMLElement>(
    `.confirm[data-confirmation-id="${CSS.escape(e.data.confirmation_id)}"]`,
  );
  const verdict = `${e.data.approve ? "approved" : "rejected"} by ${e.data.user_id}${e.data.comment ? `: ${e.data.comment}` : ""}`;
  const target = held ?? card(ctx, e, "confirm");
  target.dataset.decision = e.data.approve ? "approved" : "rejected";
  target.querySelector(".confirm-actions")?.remove();
  target.append(el("div", { class: "confirm-verdict" }, verdict));
});

register("repair", (e, ctx) => {
  const c = card(ctx, e, "repair");
  c.append(
    el("div", { class: "label" }, `${e.data.tool_name}: arguments repaired (${e.data.method})`),
    el("pre", {}, `${JSON.stringify(e.data.before)}\n→ ${JSON.stringify(e.data.after)}`),
  );
});

register("warning", (e, ctx) => {
  flagStep(e.run_id, "degraded");
  const c = card(ctx, e, "warning");
  c.setAttribute("role", "note");
  c.textContent = `⚠ ${e.data.message}`;
});

register("code_block", (e, ctx) => {
  const c = card(ctx, e, "code");
  const pre = el("pre");
  const code = el("code", { class: `hljs language-${e.data.language}` });
  code.innerHTML = highlight(e.data.code, e.data.language);
  pre.append(code);
  c.append(el("div", { class: "label" }, e.data.language), pre, copyButton(ctx, e.run_id, () => e.data.code));
});

register("image_generated", (e, ctx) => {
  const c = card(ctx, e, "image wide");
  const img = el("img", { alt: e.data.alt || "generated image" });
  const save = el("a", { class: "download", download: "chart.png", hidden: "" }, "Download image");
  c.append(img, save);
  ctx.blobUrl(e.data.url).then(
    (url) => {
      img.src = url;
      save.setAttribute("href", url);
      save.hidden = false;
    },
    () => c.append(el("div", { class: "muted" }, "image unavailable")),
  );
});

/** The table as CSV (RFC 4180 quoting), for its download link. */
export function csv(columns: string[], rows: unknown[][]): string {
  const cell = (v: unknown) => {
    const s = String(v ?? "");
    return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  };
  return [columns, ...rows].map((r) => r.map(cell).join(",")).join("\r\n") + "\r\n";
}

register("table", (e, ctx) => {
  const c = card(ctx, e, "table wide");
  if (e.data.title) c.append(el("div", { class: "label" }, e.data.title));
  const table = el("table");
  const head = el("tr");
  const body = el("tbody");
  let sortBy = -1;
  let ascending = true;
  const fill = () => {
    const rows = [...e.data.rows];
    if (sortBy >= 0) {
      const num = rows.every((r) => !Number.isNaN(Number(r[sortBy])));
      rows.sort((a, b) => {
        const x = num ? Number(a[sortBy]) - Number(b[sortBy]) : String(a[sortBy]).localeCompare(String(b[sortBy]));
        return ascending ? x : -x;
      });
    }
    body.replaceChildren(...rows.map((r) => {
      const tr = el("tr");
      for (const cell of r) tr.append(el("td", {}, String(cell)));
      return tr;
    }));
  };
  e.data.columns.forEach((name, i) => {
    const th = el("th", { scope: "col", role: "button", tabindex: "0" }, name);
    th.addEventListener("click", () => {
      ascending = sortBy === i ? !ascending : true;
      sortBy = i;
      th.dataset.sort = ascending ? "asc" : "desc";
      fill();
    });
    head.append(th);
  });
  const thead = el("thead");
  thead.append(head);
  table.append(thead, body);
  fill();
  const wrap = el("div", { class: "table-wrap" });
  wrap.append(table);
  const url = URL.createObjectURL(new Blob([csv(e.data.columns, e.data.rows)], { type: "text/csv" }));
  const name = `${(e.data.title || "table").replace(/[^\w-]+/g, "_")}.csv`;
  c.append(wrap, el("a", { class: "download", href: url, download: name }, "Download CSV"));
});

register("memory", (e, ctx) => {
  card(ctx, e, "memory muted").textContent = `memory ${e.data.store}: ${e.data.op}${e.data.hits ? `, ${e.data.hits} hits` : ""}`;
});

register("error", (e, ctx) => {
  const c = card(ctx, e, "error");
  c.setAttribute("role", "alert");
  c.dataset.code = e.data.code;
  c.append(ctx.recover(e.data.code, e.trace_id));
});

register("run_finished", (e, ctx) => {
  const run = ctx.run(e.run_id);
  const answer = run.querySelector<HTMLElement>(":scope > .answer .answer-text");
  if (answer) {
    // Streamed as plain text; once whole, the answer is rendered as markdown.
    const raw = answer.parentElement!.dataset.raw ?? "";
    answer.innerHTML = markdown(raw);
  }
  const p = progress.get(e.run_id);
  if (p && e.data.status !== "success" && e.data.status !== "interrupted") {
    for (const li of p.steps.slice(p.current)) setStep(li, li === p.steps[p.current] ? "failed" : "pending");
  }
  const c = card(ctx, e, "finished muted");
  c.append(
    el("span", {}, `${e.data.status} · ${Math.round(e.data.duration_ms)} ms · ${e.data.usage.total_tokens} tokens · `),
    el("a", { class: "trace", href: `/traces/${e.trace_id}`, target: "_blank" }, "trace"),
  );
  // An interrupted run has no answer yet: the run that resumes it gets the feedback buttons.
  if (e.data.status !== "interrupted") c.append(ctx.feedback(e.run_id, e.trace_id));
});

/** Any type without a renderer: shown as its JSON, collapsed. */
const generic: Renderer = (e, ctx) => {
  const c = card(ctx, e, "generic");
  const details = el("details");
  details.append(el("summary", {}, e.type), el("pre", {}, JSON.stringify((e as { data?: unknown }).data, null, 2)));
  c.append(details);
};
