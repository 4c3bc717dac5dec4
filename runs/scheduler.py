"""Fair scheduling of runs (practice 18): per-user queues served round-robin across users.

A run is admitted when its user's quota allows it, one of the process's
``quotas.max_active_runs`` slots is free, and its tier holds fewer than its
``max_active_share`` of those slots (so a burst of free-tier runs, each within its user's
quota, cannot fill the slots paying tiers need). A run that cannot start at once waits in its
user's queue (or, in a tier that queues nothing, is refused with 429 ``capacity``); the
dispatcher walks the users in turn and serves one run per user per turn, so one user's burst
cannot starve the others. A queued ticket reports its position in its user's
queue (1 = next) until it is granted. Quotas live in the shared storage; the queues and the
run slots are per process (a replica schedules its own runs).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import Counter, deque
from dataclasses import dataclass, field

from core.errors import QuotaExceeded
from core.identity import Identity
from core.quotas import Quotas, subject

log = logging.getLogger(__name__)

_MAX_IDLE_S = 1.0


def _capacity(identity: Identity) -> QuotaExceeded:
    return QuotaExceeded(
        f"the {identity.tier} tier's share of run slots is in use; retry shortly",
        limit="capacity",
        retry_after=1.0,
    )


@dataclass(eq=False)
class Ticket:
    """One run's place in the schedule."""

    scheduler: FairScheduler
    identity: Identity
    subject: str
    queue_policy: bool
    holds_quota: bool = False
    granted: bool = False
    done: bool = False
    # Queue positions while waiting, then None once granted.
    updates: asyncio.Queue[int | None] = field(default_factory=asyncio.Queue)

    async def finish(self, tokens: int = 0) -> None:
        """Leave the schedule: free the run slot and the quota, or leave the queue."""
        await self.scheduler.finish(self, tokens)


class FairScheduler:
    """Admits runs within the quotas and ``capacity`` run slots, round-robin across users."""

    def __init__(self, quotas: Quotas, capacity: int) -> None:
        """Schedule runs of ``quotas`` on ``capacity`` slots."""
        self.quotas = quotas
        self.capacity = capacity
        self.active = 0
        self.tier_active: Counter[str] = Counter()
        self._queues: dict[str, deque[Ticket]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def _has_slot(self, identity: Identity) -> bool:
        share = self.quotas.limits_for(identity).max_active_share
        cap = max(1, math.floor(self.capacity * share))
        return self.active < self.capacity and self.tier_active[identity.tier] < cap

    def queued(self, subj: str) -> int:
        """How many runs of ``subj`` wait."""
        return len(self._queues.get(subj, ()))

    async def submit(self, identity: Identity) -> Ticket:
        """A ticket for a run of ``identity``: granted at once, queued, or refused.

        Raises:
            QuotaExceeded: under the ``reject`` policy when a quota is used up; under ``queue``
                when the day's tokens are used up or the user's queue is full.
        """
        limits = self.quotas.limits_for(identity)
        ticket = Ticket(self, identity, subject(identity), queue_policy=limits.policy == "queue")
        if not ticket.queue_policy:
            # A free slot is held from here, before the quota check awaits its storage (a
            # Redis round trip), so concurrent submits cannot all see the same last slot, all
            # be charged a run, and then all but one be refused for capacity.
            reserved = self._has_slot(identity) and ticket.subject not in self._queues
            if not reserved and not limits.max_queued:
                # Refused for capacity, the run must not cost the user a run of their quota.
                raise await self.quotas.refusal(identity) or _capacity(identity)
            if reserved:
                self._grant(ticket)
            try:
                await self.quotas.start_run(identity)
            except BaseException:
                if reserved:
                    self._ungrant(ticket)
                raise
            ticket.holds_quota = True
            if reserved:
                return ticket
        elif (refusal := await self.quotas.tokens_left(identity)) is not None:
            raise refusal
        if self._has_slot(identity) and ticket.subject not in self._queues:
            refusal = None
            if not ticket.holds_quota:
                refusal = await self.quotas.try_start_run(identity)
                ticket.holds_quota = refusal is None
            if refusal is None and self._has_slot(identity):
                self._grant(ticket)
                return ticket
            if refusal is not None and not limits.max_queued:
                raise refusal
        queue = self._queues.setdefault(ticket.subject, deque())
        if len(queue) >= limits.max_queued:
            if not queue:
                del self._queues[ticket.subject]
            if ticket.holds_quota:
                await self.quotas.finish_run(identity, 0)
            if not limits.max_queued:
                raise _capacity(identity)
            raise QuotaExceeded(
                f"the {identity.tier} tier queues at most {limits.max_queued} runs",
                limit="max_queued",
                retry_after=1.0,
            )
        queue.append(ticket)
        ticket.updates.put_nowait(len(queue))
        self._ensure_dispatcher()
        self._wake.set()
        return ticket

    def _grant(self, ticket: Ticket) -> None:
        ticket.granted = True
        self.active += 1
        self.tier_active[ticket.identity.tier] += 1
        ticket.updates.put_nowait(None)

    def _ungrant(self, ticket: Ticket) -> None:
        """Give back a slot held for a run that was then refused."""
        ticket.granted = False
        self.active -= 1
        self.tier_active[ticket.identity.tier] -= 1
        self._wake.set()

    async def finish(self, ticket: Ticket, tokens: int) -> None:
        """End ``ticket``: free its slot and quota (or take it out of its queue)."""
        if ticket.done:
            return
        ticket.done = True
        if ticket.granted:
            self.active -= 1
            self.tier_active[ticket.identity.tier] -= 1
        else:
            queue = self._queues.get(ticket.subject)
            if queue is not None and ticket in queue:
                queue.remove(ticket)
                if not queue:
                    del self._queues[ticket.subject]
                else:
                    self._announce(queue)
        try:
            if ticket.holds_quota:
                await self.quotas.finish_run(ticket.identity, tokens)
            else:
                await self.quotas.record_tokens(ticket.identity, tokens)
        finally:
            self._wake.set()

    @staticmethod
    def _announce(queue: deque[Ticket]) -> None:
        for i, t in enumerate(queue, 1):
            t.updates.put_nowait(i)

    def _ensure_dispatcher(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._dispatch(), name="fair-scheduler")

    async def _dispatch(self) -> None:
        while self._queues:
            self._wake.clear()
            wait_s = await self._serve_round()
            if not self._queues:
                break
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=wait_s)
            except TimeoutError:
                pass

    async def _serve_round(self) -> float:
        """Grant what can start, one run per user per turn; returns how long to sleep."""
        wait_s = _MAX_IDLE_S
        progressed = True
        while progressed and self._queues and self.active < self.capacity:
            progressed = False
            for subj in list(self._queues):
                if self.active >= self.capacity:
                    break
                queue = self._queues.get(subj)
                if not queue:
                    continue
                head = queue[0]
                if not self._has_slot(head.identity):
                    continue
                if not head.holds_quota:
                    refusal = await self.quotas.try_start_run(head.identity)
                    if refusal is not None:
                        wait_s = min(wait_s, max(refusal.retry_after / 4, 0.05))
                        continue
                    head.holds_quota = True
                queue.popleft()
                # Served users go to the back of the rotation.
                del self._queues[subj]
                if queue:
                    self._queues[subj] = queue
                    self._announce(queue)
                self._grant(head)
                progressed = True
        return wait_s

    async def close(self) -> None:
        """Stop the dispatcher."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
