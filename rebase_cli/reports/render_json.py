"""The report document as JSON (see report_schema.json)."""

from __future__ import annotations

import json


def render_json(document: dict) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
