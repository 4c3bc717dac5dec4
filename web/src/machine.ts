/**
 * The run's status as a state machine (XState v5). It moves only on `agent_status` events
 * from the backend, never on "text arrived": the backend says what phase the run is in.
 */
import { assign, createActor, setup } from "xstate";
import type { AgentStatusData } from "./generated/events";

export type Status = AgentStatusData["status"];

// One state per backend status; `satisfies` makes tsc fail if the generated type gains or
// loses a status that this list does not.
const STATUS_STATES = {
  queued: {},
  planning: {},
  retrieving_memory: {},
  calling_tool: {},
  awaiting_confirmation: {},
  thinking: {},
  summarizing: {},
  done: {},
  error: {},
  cancelled: {},
} satisfies Record<Status, object>;
export const STATUSES = Object.keys(STATUS_STATES) as Status[];

type MachineEvent = { type: "STATUS"; data: AgentStatusData } | { type: "RESET" };

interface Context {
  toolName: string | null;
  position: number | null;
  detail: string | null;
}

// Every status is a state; any status may follow any other (a queued run may be cancelled,
// a tool may fail into error), so each STATUS event targets the state it names.
const toState = STATUSES.map((status) => ({
  guard: ({ event }: { event: MachineEvent }) =>
    event.type === "STATUS" && event.data.status === status,
  target: `.${status}`,
  actions: "remember" as const,
}));

export const statusMachine = setup({
  types: { context: {} as Context, events: {} as MachineEvent },
  actions: {
    remember: assign(({ event }) =>
      event.type === "STATUS"
        ? {
            toolName: event.data.tool_name ?? null,
            position: event.data.position ?? null,
            detail: event.data.detail ?? null,
          }
        : {},
    ),
  },
}).createMachine({
  id: "run",
  initial: "idle",
  context: { toolName: null, position: null, detail: null },
  on: { STATUS: toState, RESET: { target: ".idle" } },
  states: { idle: {}, ...STATUS_STATES },
});

export function startStatusMachine(onChange: (state: string, ctx: Context) => void) {
  const actor = createActor(statusMachine);
  actor.subscribe((snap) => onChange(String(snap.value), snap.context));
  actor.start();
  return actor;
}
