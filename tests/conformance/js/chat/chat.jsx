// A minimal chat on the LangGraph React hook (useStream), as Agent Chat UI is built: it talks to
// the server named in ?api= with the key in ?key=, cross-origin. tests/e2e/test_agent_chat.py
// bundles it with esbuild and drives it in Chromium against Keel.
import React, { useState } from "react";
import { createRoot } from "react-dom/client";
import { useStream } from "@langchain/langgraph-sdk/react";

const query = new URLSearchParams(window.location.search);

function text(message) {
  const content = message.content;
  return typeof content === "string" ? content : content.map((b) => b.text ?? "").join("");
}

function Chat() {
  const [question, setQuestion] = useState("");
  const stream = useStream({
    apiUrl: query.get("api"),
    apiKey: query.get("key"),
    assistantId: "research",
    messagesKey: "messages",
  });
  const send = (event) => {
    event.preventDefault();
    const human = { type: "human", content: question, id: crypto.randomUUID() };
    stream.submit(
      { messages: [human] },
      { optimisticValues: (prev) => ({ ...prev, messages: [...(prev.messages ?? []), human] }) },
    );
    setQuestion("");
  };
  const decide = (approve) => stream.submit(undefined, { command: { resume: approve } });
  const held = stream.interrupt?.value;
  return (
    <main>
      <div id="messages">
        {stream.messages.map((m) => (
          <p key={m.id} className="msg" data-type={m.type}>{text(m)}</p>
        ))}
      </div>
      {held && (
        <div id="interrupt">
          <span id="held-tool">{held.tool_name}</span>
          <button id="approve" onClick={() => decide(true)}>Approve</button>
          <button id="reject" onClick={() => decide(false)}>Reject</button>
        </div>
      )}
      {stream.error && <p id="error">{String(stream.error)}</p>}
      <form onSubmit={send}>
        <input id="question" value={question} onChange={(e) => setQuestion(e.target.value)} />
        <button id="send" disabled={stream.isLoading}>Send</button>
      </form>
      <p id="state" data-loading={String(stream.isLoading)} />
    </main>
  );
}

createRoot(document.getElementById("root")).render(<Chat />);
