// An assistant-ui chat on its LangGraph runtime (useLangGraphRuntime from
// @assistant-ui/react-langgraph), over the official JS client, pointed at the server named in
// ?api= with the key in ?key=, cross-origin. tests/e2e/test_assistant_ui.py bundles it with
// esbuild and drives it in Chromium against Keel.
import React from "react";
import { createRoot } from "react-dom/client";
import {
  AssistantRuntimeProvider,
  ComposerPrimitive,
  MessagePartPrimitive,
  MessagePrimitive,
  ThreadPrimitive,
} from "@assistant-ui/react";
import {
  useLangGraphInterruptState,
  useLangGraphRuntime,
  useLangGraphSendCommand,
} from "@assistant-ui/react-langgraph";
import { Client } from "@langchain/langgraph-sdk";

const query = new URLSearchParams(window.location.search);
const client = new Client({ apiUrl: query.get("api"), apiKey: query.get("key") });
const ASSISTANT = "research";

// The runtime's three callbacks, as its documentation wires them to a LangGraph server.
async function* stream(messages, { initialize, command, abortSignal }) {
  const { externalId } = await initialize();
  yield* client.runs.stream(externalId, ASSISTANT, {
    input: messages.length > 0 ? { messages } : null,
    command,
    streamMode: ["messages-tuple", "updates", "values"],
    signal: abortSignal,
  });
}

async function create() {
  const { thread_id } = await client.threads.create();
  return { externalId: thread_id };
}

async function load(threadId) {
  const state = await client.threads.getState(threadId);
  const interrupts = state.tasks.flatMap((task) => task.interrupts ?? []);
  return { messages: state.values.messages ?? [], interrupts };
}

const Text = () => <MessagePartPrimitive.Text />;

const Message = ({ role }) => (
  <MessagePrimitive.Root className="msg" data-role={role}>
    <MessagePrimitive.Parts components={{ Text }} />
  </MessagePrimitive.Root>
);

// A tool call Keel holds for confirmation arrives as a LangGraph interrupt; a decision
// resumes the run with Command(resume=...).
function HeldToolCall() {
  const held = useLangGraphInterruptState();
  const sendCommand = useLangGraphSendCommand();
  if (!held?.value) return null;
  return (
    <div id="interrupt">
      <span id="held-tool">{held.value.tool_name}</span>
      <button id="approve" onClick={() => sendCommand({ resume: true })}>Approve</button>
      <button id="reject" onClick={() => sendCommand({ resume: false })}>Reject</button>
    </div>
  );
}

function Chat() {
  const runtime = useLangGraphRuntime({ stream, create, load });
  return (
    <AssistantRuntimeProvider runtime={runtime}>
      <ThreadPrimitive.Root>
        <ThreadPrimitive.Viewport>
          <ThreadPrimitive.Messages>
            {({ message }) => <Message role={message.role} />}
          </ThreadPrimitive.Messages>
        </ThreadPrimitive.Viewport>
        <HeldToolCall />
        <ComposerPrimitive.Root>
          <ComposerPrimitive.Input id="question" placeholder="Ask" />
          <ComposerPrimitive.Send id="send">Send</ComposerPrimitive.Send>
        </ComposerPrimitive.Root>
        <ThreadPrimitive.If running>
          <p id="running" />
        </ThreadPrimitive.If>
      </ThreadPrimitive.Root>
    </AssistantRuntimeProvider>
  );
}

createRoot(document.getElementById("root")).render(<Chat />);
