/**
 * The renderer registry: one renderer per event type, registered by type name. The view
 * looks a renderer up by `event.type`; a type with no renderer gets the generic one, so a
 * backend that learns a new event type never breaks the UI.
 */
import hljs from "highlight.js/lib/core";
import bash from "highlight.js/lib/languages/bash";
import javascript from "highlight.js/lib/languages/javascript";
import json from "highlight.js/lib/languages/json";
import python from "highlight.js/lib/languages/python";
import sql from "highlight.js/lib/languages/sql";
import type { KeelEvent } from "./generated/events";

hljs.registerLanguage("python", python);
hljs.registerLanguage("javascript", javascript);
hljs.registerLanguage("json", json);
hljs.registerLanguage("bash", bash);
hljs.registerLanguage("sql", sql);

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

/** Markdown, the small part an answer uses: paragraphs, **bold**, `code`, lists. Escaped first. */
export function markdown(text: string): string {
  const esc = text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  return esc
    .split(/\n{2,}/)
    .map((block) => {
      const inline = (s: string) =>
        s.replace(/\*\*(.+?)\*\*/g, "<strong>$1</strong>").replace(/`([^`]+)`/g, "<code>$1</code>");
      const lines = block.split("\n");
      if (lines.every((l) => /^\s*[-*] /.test(l)))
        return `<ul>${lines.map((l) => `<li>${inline(l.replace(/^\s*[-*] /, ""))}</li>`).join("")}</ul>`;
      return `<p>${inline(block).replace(/\n/g, "<br>")}</p>`;
    })
    .join("");
}

/**
 * Highlighted HTML for `code` by highlight.js (escaped by it: strings, comments and keywords
 * are tokenized, never matched by regexes over each other's markup). A language it does not
 * know is shown as plain escaped text.
 */
function highlight(code: string, language: string): string {
  const lang = hljs.getLanguage(language) ? language : null;
  if (lang === null) {
    return code.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  }
  return hljs.highlight(code, { language: lang, ignoreIllegals: true }).value;
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

register("plan", (e, ctx) => {
  const c = card(ctx, e, "plan");
  c.append(el("div", { class: "label" }, "Plan"));
  const ol = el("ol");
  for (const step of e.data.steps) ol.append(el("li", {}, `${step.description} (${step.tool})`));
  c.append(ol);
});

register("step_result", (e, ctx) => {
  const c = card(ctx, e, "step");
  c.append(el("div", { class: "label" }, `Step ${e.data.index + 1}: ${e.data.description}`), el("div", {}, e.data.text));
});

register("tool_call", (e, ctx) => {
  const c = card(ctx, e, "tool");
  c.dataset.callId = e.data.call_id;
  const version = e.data.version ? ` v${e.data.version}` : "";
  c.append(
    el("div", { class: "label" }, `${e.data.tool_name}${version}`),
    el("pre", { class: "args" }, JSON.stringify(e.data.args, null, 2)),
    el("div", { class: "tool-state" }, "running…"),
  );
});

register("tool_result", (e, ctx) => {
  const run = ctx.run(e.run_id);
  const c = run.querySelector<HTMLElement>(`.tool[data-call-id="${CSS.escape(e.data.call_id)}"]`) ?? card(ctx, e, "tool");
  c.dataset.resultSeq = String(e.seq);
  const took = e.data.duration_ms == null ? "" : ` in ${Math.round(e.data.duration_ms)} ms`;
  const cached = e.data.cached_at ? ` (cached ${e.data.cached_at})` : "";
  c.querySelector(".tool-state")?.remove();
  c.append(el("div", { class: "tool-state done" }, `done${took}${cached}`));
  const details = el("details");
  details.append(el("summary", {}, "result"), el("pre", {}, JSON.stringify(e.data.result, null, 2)));
  c.append(details);
});

register("tool_error", (e, ctx) => {
  const c = card(ctx, e, "tool-error");
  c.append(el("div", { class: "label" }, `${e.data.tool_name}: ${e.data.code}`), el("div", {}, e.data.error));
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
  const c = card(ctx, e, "warning");
  c.setAttribute("role", "alert");
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
  const c = card(ctx, e, "image");
  const img = el("img", { alt: e.data.alt || "generated image" });
  c.append(img);
  ctx.blobUrl(e.data.url).then(
    (url) => (img.src = url),
    () => c.append(el("div", { class: "muted" }, "image unavailable")),
  );
});

register("table", (e, ctx) => {
  const c = card(ctx, e, "table");
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
  c.append(table);
});

register("memory", (e, ctx) => {
  card(ctx, e, "memory muted").textContent = `memory ${e.data.store}: ${e.data.op}${e.data.hits ? `, ${e.data.hits} hits` : ""}`;
});

register("error", (e, ctx) => {
  const c = card(ctx, e, "error");
  c.setAttribute("role", "alert");
  c.textContent = e.data.message;
});

register("run_finished", (e, ctx) => {
  const run = ctx.run(e.run_id);
  const answer = run.querySelector<HTMLElement>(":scope > .answer .answer-text");
  if (answer) {
    // Streamed as plain text; once whole, the answer is rendered as markdown.
    const raw = answer.parentElement!.dataset.raw ?? "";
    answer.innerHTML = markdown(raw);
  }
  const c = card(ctx, e, "finished muted");
  c.textContent = `${e.data.status} · ${Math.round(e.data.duration_ms)} ms · ${e.data.usage.total_tokens} tokens`;
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
