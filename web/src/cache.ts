/**
 * The last events of each thread, kept in localStorage so a reload shows the conversation at
 * once; the stream then resumes after the highest cached seq (Last-Event-ID), so nothing is
 * shown twice.
 */
import type { KeelEvent } from "./generated/events";

export const CACHE_EVENTS = 2000; // per thread: whole recent turns, text deltas included
const key = (threadId: string) => `keel.thread.${threadId}`;

export function cached(threadId: string): KeelEvent[] {
  try {
    return JSON.parse(localStorage.getItem(key(threadId)) ?? "[]") as KeelEvent[];
  } catch {
    return [];
  }
}

export function lastSeq(events: KeelEvent[]): number {
  return events.length ? events[events.length - 1].seq : 0;
}

export function store(threadId: string, events: KeelEvent[]): void {
  const tail = events.slice(-CACHE_EVENTS);
  // A cut inside a run would leave half a turn: start the cache at a run's first event.
  const start = tail.findIndex((e) => e.type === "run_started");
  try {
    localStorage.setItem(key(threadId), JSON.stringify(start > 0 ? tail.slice(start) : tail));
  } catch {
    localStorage.removeItem(key(threadId)); // over the browser's quota: drop, don't break
  }
}

export const currentThread = {
  get: (): string | null => localStorage.getItem("keel.current"),
  set: (id: string) => localStorage.setItem("keel.current", id),
};
