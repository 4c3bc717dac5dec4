/**
 * The Keel UI: sign-in, threads (named, searchable, deletable), documents, a run's stream
 * rendered through the renderer registry as a timeline, the status line driven by the state
 * machine, resume after reload, replay with a scrubber, feedback, keyboard use.
 */
import "./style.css";
import { ApiError, blobUrl, call, events, token } from "./api";
import { cached, currentThread, lastSeq, store } from "./cache";
import * as documents from "./documents";
import { ACTION_LABELS, explain, type Action } from "./errors";
import type { KeelEvent } from "./generated/events";
import { startStatusMachine } from "./machine";
import { citationOf } from "./markdown";
import { hitFor, render, type RenderContext } from "./renderers";

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
  recover: (code, traceId) => recovery(explain(code), traceId),
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

/** A failure said for people: what happened, what they can do, and the trace id to quote. */
function showError(err: unknown) {
  const problem = err instanceof ApiError ? err.problem : {};
  if (err instanceof ApiError && err.status === 401) return signOut("Your sign-in has expired: sign in again.");
  const box = document.createElement("div");
  box.className = "card error";
  box.setAttribute("role", "alert");
  box.dataset.code = problem.code ?? "";
  box.append(recovery(explain(problem.code), problem.trace_id ?? ""));
  messages.append(box);
  messages.scrollTop = messages.scrollHeight;
}

function recovery(what: { what: string; actions: Action[] }, traceId: string): HTMLElement {
  const box = document.createElement("div");
  box.className = "recovery";
  box.append(Object.assign(document.createElement("p"), { className: "what", textContent: what.what }));
  const row = document.createElement("div");
  row.className = "row";
  for (const action of what.actions) {
    const b = Object.assign(document.createElement("button"), { type: "button", textContent: ACTION_LABELS[action] });
    b.dataset.action = action;
    b.addEventListener("click", () => act(action));
    row.append(b);
  }
  if (traceId) {
    const id = Object.assign(document.createElement("code"), { className: "trace-id", textContent: traceId });
    const ref = Object.assign(document.createElement("span"), { className: "muted", textContent: "trace " });
    const link = Object.assign(document.createElement("a"), { href: `/traces/${traceId}`, target: "_blank", textContent: "view" });
    ref.append(id, " ", link);
    row.append(ref);
  }
  box.append(row);
  return box;
}

function act(action: Action) {
  if (action === "retry" || action === "wait") {
    if (lastAsked) void ask(lastAsked);
  } else if (action === "rephrase") {
    question.value = lastAsked;
    question.focus();
  } else if (action === "scope") {
    question.value = `Which permission do I need to ask an admin for to: ${lastAsked}`;
    question.focus();
  } else signOut("");
}

// --- threads --------------------------------------------------------------------------------
interface ThreadRow {
  thread_id: string;
  title: string | null;
  created_at: string;
}
let threads: ThreadRow[] = [];

async function loadThreads() {
  threads = await call<ThreadRow[]>("GET", "/v1/threads?limit=200");
  showThreads();
}

/** The thread list, filtered by the search box (title words, case-insensitive). */
function showThreads() {
  const words = $<HTMLInputElement>("#thread-search").value.toLowerCase().split(/\s+/).filter(Boolean);
  const title = (t: ThreadRow) => t.title ?? `New thread, ${new Date(t.created_at).toLocaleString()}`;
  const shown = threads.filter((t) => words.every((w) => title(t).toLowerCase().includes(w)));
  $("#threads").replaceChildren(
    ...shown.map((t) => {
      const li = document.createElement("li");
      const a = Object.assign(document.createElement("a"), { href: `#${t.thread_id}`, textContent: title(t) });
      a.dataset.thread = t.thread_id;
      if (t.thread_id === threadId) a.setAttribute("aria-current", "page");
      a.addEventListener("click", (ev) => {
        ev.preventDefault();
        void openThread(t.thread_id);
      });
      const del = Object.assign(document.createElement("button"), { type: "button", className: "icon thread-delete", textContent: "✕" });
      del.setAttribute("aria-label", `Delete thread ${title(t)}`);
      del.addEventListener("click", () => void deleteThread(t).catch(showError));
      li.append(a, del);
      return li;
    }),
  );
}

async function deleteThread(t: ThreadRow) {
  if (!window.confirm(`Delete the thread "${t.title ?? "untitled"}" and its runs?`)) return;
  await call("DELETE", `/threads/${t.thread_id}`);
  localStorage.removeItem(`keel.thread.${t.thread_id}`);
  if (t.thread_id === threadId) {
    streaming?.abort();
    threadId = null;
    localStorage.removeItem("keel.current");
    messages.replaceChildren();
  }
  await loadThreads();
}

/** The next (+1) or previous (-1) thread of the list. */
function moveThread(step: number) {
  const ids = [...document.querySelectorAll<HTMLAnchorElement>("#threads a")].map((a) => a.dataset.thread!);
  if (!ids.length) return;
  const at = threadId ? ids.indexOf(threadId) : -1;
  const next = ids[Math.min(ids.length - 1, Math.max(0, at + step))];
  if (next && next !== threadId) void openThread(next).catch(showError);
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
  showThreads();
  streaming = new AbortController();
  await consume(
    events("GET", `/v1/threads/${id}/stream`, { lastEventId: lastSeq(log), signal: streaming.signal }),
  );
  void loadThreads();
}

async function newThread() {
  const t = await call<{ thread_id: string }>("POST", "/v1/threads");
  void openThread(t.thread_id);
  question.focus();
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
  void loadThreads().catch(() => undefined); // the thread is named after its first question
  void showUsage();
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
interface Usage {
  user: string;
  tenant: string;
  scopes: string[];
  tier: string;
  limits: { runs_per_minute: number; llm_tokens_per_day: number };
  usage: { runs_last_minute: number; llm_tokens_today: number };
}

let scopes: string[] = [];

/** Who is signed in and their usage against the tier's limits; a refused token signs out. */
async function showUsage(): Promise<boolean> {
  if (!token.get()) return false;
  let u: Usage;
  try {
    u = await call<Usage>("GET", "/v1/usage");
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      signOut("That token was not accepted: check it, or pick a dev user.");
      return false;
    }
    return true; // a passing outage: keep the session
  }
  $("#who").textContent = `${u.user} · ${u.tenant} · ${u.tier}`;
  scopes = u.scopes;
  const tokens = `${u.usage.llm_tokens_today.toLocaleString()} / ${u.limits.llm_tokens_per_day.toLocaleString()} tokens today`;
  $("#usage").textContent = `${tokens} · ${u.usage.runs_last_minute}/${u.limits.runs_per_minute} runs a minute`;
  return true;
}

function signOut(why: string) {
  streaming?.abort();
  token.clear();
  delete document.body.dataset.signedIn;
  $("#whoami").hidden = true;
  $("#signin-error").textContent = why;
  $<HTMLInputElement>("#token").focus();
  if ($("#dev-users").hidden) void devUsers();
}

async function signIn() {
  const form = $<HTMLFormElement>("#signin");
  const input = $<HTMLInputElement>("#token");
  const submit = form.querySelector<HTMLButtonElement>("button[type=submit]")!;
  input.addEventListener("input", () => (submit.disabled = !input.value.trim()));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const value = input.value.trim();
    if (!value) return; // an empty token is never sent
    token.set(value);
    input.value = "";
    submit.disabled = true;
    await start();
  });
  if (token.get()) return; // signed in: the dev users are asked for only on the sign-in page
  await devUsers();
}

/** One button per dev user, where the server has them (a dev server). */
async function devUsers() {
  try {
    const users = await call<{ user: string; tenant: string; tier: string }[]>("GET", "/v1/dev/users");
    $("#dev-buttons").replaceChildren(
      ...users.map((u) => {
        const b = Object.assign(document.createElement("button"), { type: "button", className: "dev-user" });
        b.textContent = `Sign in as ${u.user} (${u.tenant}, ${u.tier})`;
        b.dataset.user = u.user;
        b.addEventListener("click", async () => {
          token.set((await call<{ token: string }>("POST", "/v1/dev/token", { user: u.user })).token);
          await start();
        });
        return b;
      }),
    );
    $("#dev-users").hidden = false;
  } catch {
    $("#dev-users").hidden = true; // not a dev server: paste a token
  }
}

async function start() {
  if (!token.get()) return;
  document.body.dataset.signedIn = "true";
  $("#signin-error").textContent = "";
  $("#whoami").hidden = false;
  // The open thread first: its cached events render before any request is made.
  const id = currentThread.get();
  const opened = id ? openThread(id) : Promise.resolve();
  if (!(await showUsage())) return;
  await loadThreads().catch(showError);
  if (scopes.includes("read:documents")) await documents.refresh(showError).catch(showError);
  else documents.unavailable();
  await opened;
}

// --- citations: the excerpt, and the document at its page ------------------------------------
async function showCitation(link: HTMLAnchorElement) {
  const cite = citationOf(link.getAttribute("href") ?? "");
  if (!cite) return;
  const runId = link.closest<HTMLElement>(".run")?.dataset.run ?? "";
  const hit = hitFor(runId, cite.document, cite.page);
  const doc = documents.known().find((d) => d.id === hit?.document_id || d.name === cite.document);
  const dialog = $<HTMLDialogElement>("#citation");
  $("#citation-title").textContent = `${cite.document}${cite.page ? `, page ${cite.page}` : ""}`;
  $("#citation-excerpt").textContent = hit?.excerpt ?? "No excerpt of this citation was kept.";
  const open = $<HTMLAnchorElement>("#citation-open");
  open.hidden = true;
  dialog.showModal();
  if (doc) {
    open.href = await documents.openAt(doc.id, cite.page);
    open.textContent = cite.page ? `Open ${doc.name} at page ${cite.page}` : `Open ${doc.name}`;
    open.hidden = false;
  } else $("#citation-excerpt").append(" (The document is no longer among yours.)");
}

messages.addEventListener("click", (ev) => {
  const link = (ev.target as HTMLElement).closest<HTMLAnchorElement>("a.citation");
  if (!link) return;
  ev.preventDefault();
  void showCitation(link).catch(showError);
});
$("#citation-close").addEventListener("click", () => $<HTMLDialogElement>("#citation").close());

// --- keyboard ---------------------------------------------------------------------------------
question.addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
    ev.preventDefault();
    $<HTMLFormElement>("#composer").requestSubmit();
  }
});
document.addEventListener("keydown", (ev) => {
  if (!document.body.dataset.signedIn || $<HTMLDialogElement>("#citation").open) return;
  const typing = ev.target instanceof HTMLInputElement || ev.target instanceof HTMLTextAreaElement;
  if (ev.key === "Escape" && activeRun) {
    ev.preventDefault();
    cancel.click();
  } else if (ev.altKey && (ev.key === "n" || ev.code === "KeyN")) {
    ev.preventDefault();
    void newThread().catch(showError);
  } else if (ev.altKey && (ev.key === "ArrowDown" || ev.key === "ArrowUp")) {
    ev.preventDefault();
    moveThread(ev.key === "ArrowDown" ? 1 : -1);
  } else if (ev.key === "/" && !typing) {
    ev.preventDefault();
    $("#thread-search").focus();
  }
});

$<HTMLFormElement>("#composer").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const text = question.value.trim();
  if (!text || send.disabled) return;
  question.value = "";
  void ask(text);
});
$("#new-thread").addEventListener("click", () => void newThread().catch(showError));
$("#thread-search").addEventListener("input", showThreads);
$("#sign-out").addEventListener("click", () => signOut(""));
cancel.addEventListener("click", () => {
  if (activeRun) call("POST", `/v1/runs/${activeRun}/cancel`).catch(showError);
});
regenerate.addEventListener("click", () => {
  if (lastFinished) signal(lastFinished.runId, "regenerate");
  if (lastAsked) void ask(lastAsked);
});
$("#replay").addEventListener("click", () => void replay().catch(showError));
scrubber.addEventListener("input", () => showUpTo(Number(scrubber.value)));
documents.setUp(showError);

void signIn();
void start();
