/** The HTTP side: the bearer token, JSON calls, and SSE over fetch (EventSource can't send headers). */
import type { KeelEvent } from "./generated/events";

const TOKEN_KEY = "keel.token"; // shared with the trace page (/traces/{id})

export const token = {
  get: (): string => localStorage.getItem(TOKEN_KEY) ?? "",
  set: (value: string) => localStorage.setItem(TOKEN_KEY, value),
  clear: () => localStorage.removeItem(TOKEN_KEY),
};

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly problem: { title?: string; detail?: string; trace_id?: string; code?: string },
  ) {
    super(problem.detail ?? problem.title ?? `HTTP ${status}`);
  }
}

function headers(extra: Record<string, string> = {}): Record<string, string> {
  const h: Record<string, string> = { ...extra };
  if (token.get()) h.Authorization = `Bearer ${token.get()}`;
  return h;
}

export async function call<T>(method: string, path: string, body?: unknown, keepalive = false): Promise<T> {
  const resp = await fetch(path, {
    method,
    keepalive,
    headers: headers(body === undefined ? {} : { "Content-Type": "application/json" }),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!resp.ok) throw new ApiError(resp.status, await resp.json().catch(() => ({})));
  return (resp.status === 204 ? undefined : await resp.json()) as T;
}

/** A file sent as multipart/form-data (the browser sets the boundary). */
export async function upload<T>(path: string, file: File): Promise<T> {
  const form = new FormData();
  form.append("file", file, file.name);
  const resp = await fetch(path, { method: "POST", headers: headers(), body: form });
  if (!resp.ok) throw new ApiError(resp.status, await resp.json().catch(() => ({})));
  return (await resp.json()) as T;
}

/** An artifact (a chart) as an object URL: <img src> can't carry the bearer token. */
export async function blobUrl(path: string): Promise<string> {
  const resp = await fetch(path, { headers: headers() });
  if (!resp.ok) throw new ApiError(resp.status, {});
  return URL.createObjectURL(await resp.blob());
}

/** The events of an SSE response, in order, as they arrive. */
export async function* events(
  method: string,
  path: string,
  opts: { body?: unknown; lastEventId?: number; signal?: AbortSignal } = {},
): AsyncGenerator<KeelEvent> {
  const extra: Record<string, string> = { Accept: "text/event-stream" };
  if (opts.body !== undefined) extra["Content-Type"] = "application/json";
  if (opts.lastEventId) extra["Last-Event-ID"] = String(opts.lastEventId);
  const resp = await fetch(path, {
    method,
    headers: headers(extra),
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
    signal: opts.signal,
  });
  if (!resp.ok || !resp.body) throw new ApiError(resp.status, await resp.json().catch(() => ({})));
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let pending = ""; // a trailing "\r" whose "\n" may come in the next chunk
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    // Lines may end in \r\n (sse-starlette), \n (replay) or \r: normalise to \n.
    let text = pending + value;
    pending = text.endsWith("\r") ? "\r" : "";
    if (pending) text = text.slice(0, -1);
    buffer += text.replace(/\r\n?/g, "\n");
    let end: number;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = frame
        .split("\n")
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).trimStart())
        .join("\n");
      if (data) yield JSON.parse(data) as KeelEvent;
    }
  }
}
