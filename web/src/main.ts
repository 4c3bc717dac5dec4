/**
 * The Keel UI: threads, a run's stream rendered through the renderer registry, the status
 * line driven by the state machine, resume after reload, replay with a scrubber, feedback.
 */
import "./style.css";
import { ApiError, blobUrl, call, events, token } from "./api";
import { cached, currentThread, lastSeq, store } from "./cache";
import type { KeelEvent } from "./generated/events";
import { startStatusMachine } from "./machine";
import { render, type RenderContext } from "./renderers";

const $ = <T extends HTMLElement>(sel: string) => document.querySelector<T>(sel)!;
const messages = $("#messages");
const statusLine = $("#status");
const traceLink = $<HTMLAnchorElement>("#trace-link");
const send = $<HTMLButtonElement>("#send");
const cancel = $<HTMLButtonElement>("#cancel");
const regenerate = $<HTMLButtonElement>("#regenerate");
const question = $<HTMLTextAreaElement>("#question");
const scrubber = $<HTMLInputElement>("#scrubber");

const REASONS = ["factually incorrect", "incomplete", "slow", "wrong tool", "other"];
const FOLLOW_UP_S = 60;

let threadId: string | null = null;
let log: KeelEvent[] = []; // the current thread's events, in seq order, each once
let activeRun: string | null = null;
let streaming: AbortController | null = null;
let lastAsked = "";
let lastFinished: { runId: string; at: number } | null = null;

// --- status line: the machine's state, never guessed from text ---------------------------
const machine = startStatusMachine((state, ctx) => {
  statusLine.dataset.state = state;
  const withTool = state === "calling_tool" || state === "awaiting_confirmation";
  const tool = withTool && ctx.toolName ? ` ${ctx.toolName}` : "";
  const pos = state === "queued" && ctx.position ? ` #${ctx.position}` : "";
  statusLine.textContent = `${state.replace("_", " ")}${tool}${pos}`;
});

// --- rendering ------------------------------------------------------------------------------
const ctx: RenderContext = {
  run(runId) {
    let node = messages.querySelector<HTMLElement>(`.run[data-run="${CSS.escape(runId)}"]`);
    if (!node) {
      node = document.createElement("article");
      node.className = "run";
      node.dataset.run = runId;
      messages.append(node);
    }
    return node;
  },
  onCopy: (runId) => signal(runId, "copy"),
  blobUrl,
  feedback: feedbackControls,
  confirm: (runId, confirmationId, approve) => void decide(runId, confirmationId, approve),
};

let saveTimer: number | undefined;
function scheduleSave(now = false) {
  if (!threadId) return;
  const id = threadId;
  window.clearTimeout(saveTimer);
  if (now) store(id, log);
  else saveTimer = window.setTimeout(() => store(id, log), 200);
}

/** Show one event: each seq once, in order (a resumed stream may repeat the hand-over). */
function apply(event: KeelEvent, live = true) {
  if (event.seq <= lastSeq(log)) return;
  log.push(event);
  const arrived = performance.now();
  render(event, ctx);
  if (event.type === "text_delta" && live) {
    // Arrival to paint: the frame after this one has been painted.
    requestAnimationFrame(() =>
      setTimeout(() => performance.measure("keel:text-paint", { start: arrived, end: performance.now() })),
    );
  }
  if (event.type === "agent_status") machine.send({ type: "STATUS", data: event.data });
  if (event.type === "run_started") {
    activeRun = event.run_id;
    traceLink.href = `/traces/${event.trace_id}`;
    traceLink.hidden = false;
  }
  if (event.type === "run_finished") {
    if (activeRun === event.run_id) activeRun = null;
    lastFinished = { runId: event.run_id, at: Date.now() };
  }
  setBusy(activeRun !== null);
  scheduleSave(event.type === "run_finished" || event.type === "agent_status");
  messages.scrollTop = messages.scrollHeight;
}

function setBusy(busy: boolean) {
  send.disabled = busy;
  cancel.disabled = !busy;
  regenerate.disabled = busy || !lastAsked;
}

async function consume(stream: AsyncGenerator<KeelEvent>) {
  try {
    for await (const event of stream) apply(event);
  } catch (err) {
    if (!(err instanceof DOMException && err.name === "AbortError")) showError(err);
  } finally {
    scheduleSave(true);
  }
}

function showError(err: unknown) {
  const box = document.createElement("div");
  box.className = "card error";
  box.setAttribute("role", "alert");
  const trace = err instanceof ApiError && err.problem.trace_id ? ` (trace ${err.problem.trace_id})` : "";
  box.textContent = `${err instanceof Error ? err.message : String(err)}${trace}`;
  messages.append(box);
}

// --- threads --------------------------------------------------------------------------------
async function loadThreads() {
  const list = $("#threads");
  const threads = await call<{ thread_id: string; title: string | null; created_at: string }[]>("GET", "/v1/threads");
  list.replaceChildren(
    ...threads.map((t) => {
      const li = document.createElement("li");
      const a = document.createElement("a");
      a.href = `#${t.thread_id}`;
      a.textContent = t.title ?? new Date(t.created_at).toLocaleString();
      a.dataset.thread = t.thread_id;
      if (t.thread_id === threadId) a.setAttribute("aria-current", "page");
      a.addEventListener("click", (ev) => {
        ev.preventDefault();
        void openThread(t.thread_id);
      });
      li.append(a);
      return li;
    }),
  );
}

/** Show the cached events at once, then whatever came after them (live if a run is going). */
async function openThread(id: string) {
  streaming?.abort();
  threadId = id;
  currentThread.set(id);
  messages.replaceChildren();
  log = [];
  activeRun = null;
  machine.send({ type: "RESET" });
  for (const event of cached(id)) apply(event, false);
  messages.dataset.cachedUpTo = String(lastSeq(log));
  streaming = new AbortController();
  await consume(
    events("GET", `/v1/threads/${id}/stream`, { lastEventId: lastSeq(log), signal: streaming.signal }),
  );
  void loadThreads();
}

async function newThread() {
  const t = await call<{ thread_id: string }>("POST", "/v1/threads");
  await openThread(t.thread_id);
}

async function ask(text: string) {
  if (!threadId) await newThread();
  if (lastFinished && Date.now() - lastFinished.at < FOLLOW_UP_S * 1000)
    signal(lastFinished.runId, "follow_up", (Date.now() - lastFinished.at) / 1000);
  lastAsked = text;
  streaming?.abort();
  streaming = new AbortController();
  setBusy(true);
  await consume(
    events("POST", `/v1/threads/${threadId}/runs`, { body: { input: { message: text } }, signal: streaming.signal }),
  );
  setBusy(activeRun !== null);
}

/** Approve or reject a held tool call: the decision starts a new run, streamed like any. */
async function decide(runId: string, confirmationId: string, approve: boolean) {
  streaming?.abort();
  streaming = new AbortController();
  setBusy(true);
  await consume(
    events("POST", `/v1/runs/${runId}/confirm`, {
      body: { approve, confirmation_id: confirmationId },
      signal: streaming.signal,
    }),
  );
  setBusy(activeRun !== null);
}

// --- feedback and implicit signals ------------------------------------------------------------
function signal(runId: string, kind: string, value?: number) {
  call("POST", "/v1/signals", { run_id: runId, kind, value }, true).catch(() => undefined);
}

function feedbackControls(runId: string): HTMLElement {
  const box = document.createElement("div");
  box.className = "feedback";
  const up = Object.assign(document.createElement("button"), { type: "button", textContent: "Good answer" });
  const down = Object.assign(document.createElement("button"), { type: "button", textContent: "Bad answer" });
  up.className = "thumbs-up";
  down.className = "thumbs-down";
  const form = document.createElement("form");
  form.className = "reasons";
  form.hidden = true;
  const reason = document.createElement("select");
  reason.setAttribute("aria-label", "reason");
  for (const r of REASONS) reason.append(new Option(r, r));
  const comment = Object.assign(document.createElement("input"), { placeholder: "comment (optional)" });
  comment.setAttribute("aria-label", "comment");
  const submit = Object.assign(document.createElement("button"), { type: "submit", textContent: "Send feedback" });
  form.append(reason, comment, submit);
  const done = (text: string) => box.replaceChildren(Object.assign(document.createElement("span"), { className: "thanks", textContent: text }));
  const rate = (rating: string, extra: Record<string, string> = {}) =>
    call("POST", "/v1/feedback", { run_id: runId, rating, ...extra }).then(() => done("Thanks for the feedback"), showError);
  up.addEventListener("click", () => void rate("thumbs_up"));
  down.addEventListener("click", () => (form.hidden = false));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    void rate("thumbs_down", { reason: reason.value, ...(comment.value ? { comment: comment.value } : {}) });
  });
  box.append(up, down, form);
  return box;
}

// Dwell time on the latest answer, sent when the page is hidden (keepalive outlives the page).
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "hidden" && lastFinished)
    signal(lastFinished.runId, "dwell_ms", Date.now() - lastFinished.at);
});

// --- replay with a timeline scrubber -------------------------------------------------------
let replayLog: KeelEvent[] = [];
async function replay() {
  if (!threadId) return;
  streaming?.abort();
  replayLog = [];
  for await (const event of events("GET", `/v1/replay/${threadId}`)) replayLog.push(event);
  scrubber.max = String(replayLog.length);
  scrubber.value = String(replayLog.length);
  scrubber.hidden = false;
  showUpTo(replayLog.length);
}

function showUpTo(n: number) {
  messages.replaceChildren();
  log = [];
  activeRun = null;
  machine.send({ type: "RESET" });
  for (const event of replayLog.slice(0, n)) apply(event, false);
  $("#scrub-pos").textContent = `${n} / ${replayLog.length}`;
}

// --- sign-in ----------------------------------------------------------------------------------
async function signIn() {
  const devUser = $<HTMLSelectElement>("#dev-user");
  try {
    const users = await call<{ user: string; tenant: string; tier: string }[]>("GET", "/v1/dev/users");
    devUser.replaceChildren(new Option("dev user…", ""), ...users.map((u) => new Option(`${u.user} (${u.tenant}, ${u.tier})`, u.user)));
    devUser.hidden = false;
  } catch {
    devUser.hidden = true; // not a dev server: paste a token
  }
  devUser.addEventListener("change", async () => {
    if (!devUser.value) return;
    token.set((await call<{ token: string }>("POST", "/v1/dev/token", { user: devUser.value })).token);
    await start();
  });
  $<HTMLFormElement>("#signin").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    token.set($<HTMLInputElement>("#token").value.trim());
    await start();
  });
}

async function start() {
  if (!token.get()) return;
  document.body.dataset.signedIn = "true";
  // The open thread first: its cached events render before any request is made.
  const id = currentThread.get();
  const opened = id ? openThread(id) : Promise.resolve();
  await loadThreads().catch(showError);
  await opened;
}

$<HTMLFormElement>("#composer").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const text = question.value.trim();
  if (!text || send.disabled) return;
  question.value = "";
  void ask(text);
});
$("#new-thread").addEventListener("click", () => void newThread().catch(showError));
cancel.addEventListener("click", () => {
  if (activeRun) call("POST", `/v1/runs/${activeRun}/cancel`).catch(showError);
});
regenerate.addEventListener("click", () => {
  if (lastFinished) signal(lastFinished.runId, "regenerate");
  if (lastAsked) void ask(lastAsked);
});
$("#replay").addEventListener("click", () => void replay().catch(showError));
scrubber.addEventListener("input", () => showUpTo(Number(scrubber.value)));

void signIn();
void start();
