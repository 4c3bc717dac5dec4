"""End-to-end evaluation of Keel with a real model: ``python -m bench.eval`` (or ``keel eval``).

Task files (``tasks/*.yaml``) hold questions and checks; the harness runs them against a live
Keel over HTTP, grades each from the run's own SSE events and writes ``RESULTS.md`` and
``results.json``. Nothing in the ``keel`` package imports this package.
"""
