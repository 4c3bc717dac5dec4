/**
 * The tenant's documents: upload (a button or files dropped on the panel), the list with each
 * one's status (polled while any is indexing), delete; and opening a cited document at a page.
 */
import { ApiError, blobUrl, call, upload } from "./api";

export interface Doc {
  id: string;
  name: string;
  kind: string;
  size: number;
  pages: number | null;
  status: string;
  error: string | null;
}
interface Listing {
  documents: Doc[];
  usage: { documents: number; bytes: number; max_documents: number; max_bytes: number };
}

const POLL_MS = 1000;
let docs: Doc[] = [];
let poll: number | undefined;

const $ = <T extends HTMLElement>(sel: string) => document.querySelector<T>(sel)!;

export function known(): Doc[] {
  return docs;
}

function size(bytes: number): string {
  return bytes >= 1_048_576 ? `${(bytes / 1_048_576).toFixed(1)} MB` : `${Math.max(1, Math.round(bytes / 1024))} kB`;
}

function row(doc: Doc, onError: (err: unknown) => void): HTMLLIElement {
  const li = document.createElement("li");
  li.className = "doc";
  li.dataset.id = doc.id;
  li.dataset.status = doc.status;
  const name = Object.assign(document.createElement("span"), { className: "doc-name", textContent: doc.name, title: doc.name });
  const pages = doc.pages ? ` · ${doc.pages} p.` : "";
  const status = Object.assign(document.createElement("span"), {
    className: "doc-status",
    textContent: `${doc.status}${doc.status === "ready" ? pages : ""} · ${size(doc.size)}`,
  });
  if (doc.error) status.title = doc.error;
  const del = Object.assign(document.createElement("button"), { type: "button", className: "doc-delete icon", textContent: "✕" });
  del.setAttribute("aria-label", `Delete ${doc.name}`);
  del.addEventListener("click", async () => {
    if (!window.confirm(`Delete ${doc.name}? Keel will no longer find it.`)) return;
    del.disabled = true;
    await call("DELETE", `/v1/documents/${doc.id}`).catch(onError);
    await refresh(onError);
  });
  li.append(name, status, del);
  return li;
}

/** The panel for an account without `read:documents`: no list, no upload. */
export function unavailable(): void {
  $("#doc-usage").textContent = "Your account cannot read documents.";
  $(".dropzone").hidden = true;
}

/** Reload the list; keep polling while a document is still indexing. */
export async function refresh(onError: (err: unknown) => void): Promise<void> {
  window.clearTimeout(poll);
  let listing: Listing;
  try {
    listing = await call<Listing>("GET", "/v1/documents");
  } catch (err) {
    // Without read:documents the panel says so instead of failing.
    if (err instanceof ApiError && err.status === 403) return unavailable();
    throw err;
  }
  docs = listing.documents;
  $(".dropzone").hidden = false;
  const u = listing.usage;
  $("#doc-usage").textContent = `${u.documents} of ${u.max_documents} documents · ${size(u.bytes)} of ${size(u.max_bytes)}`;
  $("#doc-list").replaceChildren(...docs.map((d) => row(d, onError)));
  const indexing = docs.some((d) => d.status === "indexing");
  if (!indexing && $("#doc-note").textContent?.endsWith("indexing…")) $("#doc-note").textContent = "";
  if (indexing) poll = window.setTimeout(() => void refresh(onError).catch(onError), POLL_MS);
}

async function send(files: FileList | File[], onError: (err: unknown) => void) {
  const note = $("#doc-note");
  for (const file of files) {
    note.textContent = `Uploading ${file.name}…`;
    try {
      const doc = await upload<Doc & { duplicate: boolean }>("/v1/documents", file);
      note.textContent = doc.duplicate ? `${file.name} is already there.` : `${file.name} uploaded; indexing…`;
    } catch (err) {
      note.textContent = "";
      onError(err);
    }
    await refresh(onError);
  }
}

export function setUp(onError: (err: unknown) => void): void {
  const input = $<HTMLInputElement>("#doc-file");
  const zone = $("#documents");
  input.addEventListener("change", () => {
    if (input.files?.length) void send([...input.files], onError).finally(() => (input.value = ""));
  });
  zone.addEventListener("dragover", (ev) => {
    ev.preventDefault();
    zone.dataset.drop = "true";
  });
  zone.addEventListener("dragleave", () => delete zone.dataset.drop);
  zone.addEventListener("drop", (ev) => {
    ev.preventDefault();
    delete zone.dataset.drop;
    if (ev.dataTransfer?.files.length) void send([...ev.dataTransfer.files], onError);
  });
}

/** The document as an object URL, at `page` for a PDF (the viewer reads `#page=N`). */
export async function openAt(docId: string, page: number | null): Promise<string> {
  const url = await blobUrl(`/v1/documents/${docId}/content`);
  return page ? `${url}#page=${page}` : url;
}
