/**
 * Errors said for people: what happened and what they can do, by the problem's or the error
 * event's code. The server's own message is not shown (it is for operators); the trace id is,
 * so a report can point at the run.
 */

export type Action = "retry" | "rephrase" | "scope" | "sign_in" | "wait";

interface Explained {
  what: string;
  actions: Action[];
}

const BY_CODE: Record<string, Explained> = {
  unauthenticated: { what: "Your sign-in has expired or is not valid.", actions: ["sign_in"] },
  forbidden: {
    what: "Your account lacks a permission this needs.",
    actions: ["scope", "rephrase"],
  },
  quota_exceeded: { what: "You have reached a usage limit of your plan.", actions: ["wait"] },
  limit_reached: {
    what: "You have reached a limit of your plan (threads or documents kept): delete one first.",
    actions: [],
  },
  rate_limited: { what: "Too many requests at once.", actions: ["wait", "retry"] },
  invalid_request: { what: "The request was not understood.", actions: ["rephrase"] },
  payload_too_large: { what: "That is too large to send.", actions: ["rephrase"] },
  model_error: { what: "The language model did not answer.", actions: ["retry"] },
  timeout: { what: "The run took too long and was stopped.", actions: ["retry", "rephrase"] },
  unavailable: { what: "A service Keel needs is unavailable right now.", actions: ["retry"] },
  plan_invalid: { what: "Keel could not make a plan for this question.", actions: ["rephrase"] },
  tool_unavailable: { what: "A tool this needs is unavailable right now.", actions: ["retry"] },
  unsupported_media_type: {
    what: "Keel reads PDF, Markdown, text and HTML files; this one is none of them.",
    actions: [],
  },
  bad_filename: { what: "The file's name is not usable: rename it and upload again.", actions: [] },
  document_too_large: { what: "The document is over the size limit: split it or shrink it.", actions: [] },
  corrupt_pdf: { what: "The PDF is damaged and cannot be read.", actions: [] },
  encrypted_pdf: { what: "The PDF needs a password: upload it unlocked.", actions: [] },
  no_text_layer: { what: "The PDF has no text (a scan?): Keel does not read images of text.", actions: [] },
  html_too_deep: { what: "The HTML file is nested too deeply to read.", actions: [] },
  not_found: { what: "That was not found (it may have been deleted).", actions: ["rephrase"] },
};

const FALLBACK: Explained = { what: "Something went wrong on Keel's side.", actions: ["retry"] };

export function explain(code: string | undefined): Explained {
  return (code && BY_CODE[code]) || FALLBACK;
}

export const ACTION_LABELS: Record<Action, string> = {
  retry: "Retry",
  rephrase: "Rephrase the question",
  scope: "Ask an admin for the permission",
  sign_in: "Sign in again",
  wait: "Try again in a minute",
};
