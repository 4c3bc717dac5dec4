"""Cross-cutting parts of Keel: settings, events, errors, identity, tracing, database."""
