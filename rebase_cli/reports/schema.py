"""The documented JSON schema of `rebase report --format json` (report_schema.json)."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

SCHEMA_ID = "rebase-report/1"
SCHEMA_FILE = "report_schema.json"


@lru_cache(maxsize=1)
def load_schema() -> dict:
    """The schema as shipped inside the package."""
    text = resources.files("rebase_cli.reports").joinpath(SCHEMA_FILE).read_text("utf-8")
    return json.loads(text)


def validate_report(document: dict) -> None:
    """Raise jsonschema.ValidationError if `document` does not follow the schema.

    jsonschema is a development dependency; this is for tests and for users checking files."""
    import jsonschema

    jsonschema.validate(document, load_schema())
