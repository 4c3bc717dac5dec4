// The Agent Protocol through the official JS client (@langchain/langgraph-sdk), against Keel.
// Usage: node protocol.mjs (KEEL_URL, KEEL_TOKEN, KEEL_OTHER_TOKEN in the environment).
// Prints one JSON object of what it saw; tests/conformance/test_agent_protocol_js.py checks it.
import { Client } from "@langchain/langgraph-sdk";

const url = process.env.KEEL_URL;
const client = new Client({ apiUrl: url, apiKey: process.env.KEEL_TOKEN });
const other = new Client({ apiUrl: url, apiKey: process.env.KEEL_OTHER_TOKEN });
const ask = (content) => ({ messages: [{ role: "user", content }] });
const seen = {};

async function status(call) {
  try {
    await call();
    return 200;
  } catch (err) {
    return err.status ?? err.response?.status ?? String(err);
  }
}

// First (the test scripts the model's plan and arguments for it): a held booking is an
// interrupt, and a Command resumes it.
const booking = await client.threads.create();
const held = [];
for await (const part of client.runs.stream(booking.thread_id, "research", {
  input: ask("Book js sync on Dec 1 at 9"),
  streamMode: ["updates"],
})) {
  if (part.event === "updates" && part.data.__interrupt__) held.push(...part.data.__interrupt__);
}
seen.interruptTool = held.map((i) => i.value.tool_name);
seen.threadStatus = (await client.threads.get(booking.thread_id)).status;
const resumed = await client.runs.wait(booking.thread_id, "research", { command: { resume: true } });
seen.resumedAnswer = resumed.messages.at(-1).content;

seen.assistants = (await client.assistants.search()).map((a) => a.graph_id).sort();

const thread = await client.threads.create({ metadata: { sdk: "js" } });
const tid = thread.thread_id;
seen.updated = (await client.threads.update(tid, { metadata: { n: 1 } })).metadata;
seen.searched = (await client.threads.search({ metadata: { sdk: "js" } })).map((t) => t.thread_id === tid);

const parts = [];
for await (const part of client.runs.stream(tid, "research", {
  input: ask("What is the answer?"),
  streamMode: ["messages-tuple", "values", "updates", "custom"],
})) {
  parts.push(part);
}
seen.events = [...new Set(parts.map((p) => p.event))];
seen.tokens = parts.filter((p) => p.event === "messages").map((p) => p.data[0].content).join("");
const values = parts.filter((p) => p.event === "values").at(-1).data;
seen.answer = values.messages.at(-1).content;
seen.answerIdMatches = values.messages.at(-1).id === parts.find((p) => p.event === "messages").data[0].id;
seen.updates = parts.filter((p) => p.event === "updates").map((p) => Object.keys(p.data)[0]);
const custom = parts.filter((p) => p.event === "custom");
seen.customIdsAreSeqs = custom.every((p) => Number(p.id) === p.data.seq);
const runId = custom[0].data.run_id;

// Resume after a "disconnect": join the stream again after an event in the middle.
const middle = custom[Math.floor(custom.length / 2)];
const rest = [];
for await (const part of client.runs.joinStream(tid, runId, {
  lastEventId: middle.id,
  streamMode: ["custom"],
})) {
  if (part.event === "custom") rest.push(part.data.seq);
}
seen.resumedSeqs = rest;
seen.expectedSeqs = custom.filter((p) => p.data.seq > middle.data.seq).map((p) => p.data.seq);

const waited = await client.runs.wait(tid, "research", { input: ask("And again?") });
seen.waitedMessages = waited.messages.length;
const background = await client.runs.create(tid, "research", { input: ask("Once more?") });
seen.joined = (await client.runs.join(tid, background.run_id)).messages.length;
seen.runStatuses = (await client.runs.list(tid)).map((r) => r.status);
seen.state = (await client.threads.getState(tid)).values.messages.length;
seen.history = (await client.threads.getHistory(tid, { limit: 3 })).length;

seen.otherTenant = await status(() => other.threads.get(tid));
seen.otherRun = await status(() => other.runs.get(tid, runId));
seen.noToken = await status(() => new Client({ apiUrl: url, apiKey: null }).threads.search());
seen.storePut = await status(() => client.store.putItem(["profile"], "team", { value: "sdk" }));
seen.storeGet = (await client.store.getItem(["profile"], "team"))?.value;
seen.otherStore = await status(() => other.store.getItem(["profile"], "team"));

console.log(JSON.stringify(seen));
