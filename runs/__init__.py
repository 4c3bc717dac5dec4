"""The run engine, between the HTTP layer (``api/``) and the graph (``graphs/``).

It runs a graph as a task that outlives its request (``executor``), logs and fans out every
event (``event_log``; text deltas joined per window by ``coalesce``), owns the ``threads`` and
``runs`` tables and decides whose thread or run it is (``store``), schedules queued runs fairly
(``scheduler``), and keeps what runs leave behind: feedback and variants (``feedback``),
LangSmith runs (``langsmith_runs``), metrics derived from events (``metrics``), recordings
(``recording``) and retention (``retention``). It never imports ``api``.
"""
