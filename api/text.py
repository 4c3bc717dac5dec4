r"""Request text that Postgres can store: no NUL characters and no lone UTF-16 surrogates.

JSON lets a client send ``\u0000`` or an unpaired ``\ud800``; both parse into a Python str
that Postgres refuses (text and jsonb hold no NUL, UTF-8 has no surrogates). Refused at the
boundary as a 422, they never reach a query, a checkpoint or an event that is already streaming.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator


def _storable(value: str) -> str:
    if "\x00" in value:
        raise ValueError("NUL characters are not allowed")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text must be valid Unicode (no lone surrogates)") from None
    return value


StorableText = Annotated[str, AfterValidator(_storable)]
