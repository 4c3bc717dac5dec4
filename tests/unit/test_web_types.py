"""The UI's TypeScript event types are generated from the backend's event schema and must not
drift: regenerate them from ``core.events`` with web/scripts/gen-types.mjs and compare with the
committed web/src/generated/events.ts."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from core.events import events_json_schema

WEB = Path(__file__).resolve().parents[2] / "web"


def test_generated_event_types_match_the_backend_schema(tmp_path: Path) -> None:
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps(events_json_schema()))
    out = tmp_path / "events.ts"
    subprocess.run(
        ["node", "scripts/gen-types.mjs", "--schema", str(schema), "--out", str(out)],
        cwd=WEB,
        check=True,
        timeout=60,
    )
    committed = (WEB / "src" / "generated" / "events.ts").read_text()
    assert out.read_text() == committed, (
        "web/src/generated/events.ts is stale: run"
        " `cd web && npm run gen-types -- --url http://127.0.0.1:8000/v1/schema/events`"
    )
    for name in json.loads(schema.read_text())["discriminator"]["mapping"]:
        assert f'type: "{name}"' in committed
