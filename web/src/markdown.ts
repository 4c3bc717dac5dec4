/**
 * Answers as HTML: Markdown by `marked` (tables, lists, links, code), sanitised by `DOMPurify`
 * (no script, no event handler, no `javascript:` link survives), code blocks highlighted by
 * highlight.js, and document citations (`[name p.N]`, as the documents tool notes its hits)
 * turned into links that the view opens as the excerpt and the document at that page.
 */
import DOMPurify from "dompurify";
import hljs from "highlight.js/lib/core";
import bash from "highlight.js/lib/languages/bash";
import javascript from "highlight.js/lib/languages/javascript";
import json from "highlight.js/lib/languages/json";
import python from "highlight.js/lib/languages/python";
import sql from "highlight.js/lib/languages/sql";
import { Marked } from "marked";

hljs.registerLanguage("python", python);
hljs.registerLanguage("javascript", javascript);
hljs.registerLanguage("json", json);
hljs.registerLanguage("bash", bash);
hljs.registerLanguage("sql", sql);

const marked = new Marked({ gfm: true, breaks: false, async: false });

// Links leave the page in a new tab, without the opener.
DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A" && !node.getAttribute("href")?.startsWith("#")) {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer");
  }
});

const escape = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

/**
 * Highlighted HTML for `code` (escaped by highlight.js: strings, comments and keywords are
 * tokenized, never matched by regexes over each other's markup); an unknown language is
 * shown as plain escaped text.
 */
export function highlight(code: string, language: string): string {
  if (!hljs.getLanguage(language)) return escape(code);
  return hljs.highlight(code, { language, ignoreIllegals: true }).value;
}

/** A citation as the documents tool writes it: `[report.pdf p.3]` or `[notes.md]`. */
const CITATION = /\[([^[\]\n]{1,200}?\.(?:pdf|md|markdown|txt|text|rst|html?))(?: p\.(\d{1,5}))?\](?!\()/gi;

export interface Citation {
  document: string;
  page: number | null;
}

/** The citations of `text`, in order of first appearance, each once. */
export function citations(text: string): Citation[] {
  const seen = new Map<string, Citation>();
  for (const m of text.matchAll(CITATION)) {
    const c = { document: m[1], page: m[2] ? Number(m[2]) : null };
    seen.set(`${c.document}\u0000${c.page}`, c);
  }
  return [...seen.values()];
}

/** Sanitised HTML for a Markdown answer; citations become `a.citation` links. */
export function markdown(text: string): string {
  const linked = text.replace(CITATION, (_all, doc: string, page?: string) => {
    const href = `#cite=${encodeURIComponent(doc)}${page ? `&page=${page}` : ""}`;
    const label = page ? `${doc} p.${page}` : doc;
    return `[\\[${label.replace(/[\\[\]*_`]/g, "\\$&")}\\]](${href})`;
  });
  const html = DOMPurify.sanitize(marked.parse(linked) as string);
  const box = document.createElement("div");
  box.innerHTML = html;
  for (const a of box.querySelectorAll<HTMLAnchorElement>('a[href^="#cite="]')) a.className = "citation";
  for (const code of box.querySelectorAll<HTMLElement>("pre > code")) {
    const lang = /language-(\w+)/.exec(code.className)?.[1] ?? "";
    code.innerHTML = highlight(code.textContent ?? "", lang);
    code.classList.add("hljs");
  }
  for (const table of box.querySelectorAll("table")) {
    const wrap = document.createElement("div");
    wrap.className = "table-wrap";
    table.replaceWith(wrap);
    wrap.append(table);
  }
  return box.innerHTML;
}

/** Where a citation link points: the document's name and page. */
export function citationOf(href: string): Citation | null {
  const m = /#cite=([^&]+)(?:&page=(\d+))?$/.exec(href);
  return m ? { document: decodeURIComponent(m[1]), page: m[2] ? Number(m[2]) : null } : null;
}
