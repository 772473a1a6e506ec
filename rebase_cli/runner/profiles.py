"""Profiles and the authors' config vocabulary.

A profile is a bundle of defaults for the keys that differ between rebase's own behaviour and
the authors' code (thu-wyz/rebase, `rebase.py`). It fills only keys the user did not give, so a
config file or flag always overrides one switch of a profile, and a stored run's config (which
has every key) is never changed by it.

The authors' YAML names the model family (`policy_model_type`, `reward_model_type`) where we
name a prompt template; the family maps to the template of the profile in use.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rebase_cli.errors import ConfigError

PROFILES: dict[str, dict[str, Any]] = {
    "default": {},
    # The authors' rebase.py, as read from its source: ties walked later-created first,
    # children created parent by parent best-first, a node's token count is its own step's,
    # a path ends only on "The answer is", the raw question as prompt with "Step {k}" stops.
    "reference": {
        "tie_order": "later-first",
        "child_order": "best-first",
        "path_token_rule": "step",
        "leaf_rule": "answer-phrase",
        "template": "authors-llemma",
    },
}

# The authors' model families (both use the MetaMath "Step k:" format) → template per profile.
MODEL_TYPE_TEMPLATES: dict[str, dict[str, str]] = {
    "llemma": {"default": "llemma-metamath", "reference": "authors-llemma"},
    "mistral": {"default": "llemma-metamath", "reference": "authors-llemma"},
}
MODEL_TYPE_KEYS = ("policy_model_type", "reward_model_type")

# Keys of the authors' YAML that have no counterpart here, and what happens instead.
IGNORED_KEYS: dict[str, str] = {
    "store_path": (
        "every node and score goes into the SQLite database (--db / REBASE_DB); "
        "`rebase export latest --format reference -o answers.json` writes the authors' "
        "answer file"
    ),
}


def apply_profile(values: Mapping[str, Any], origin: str = "config") -> dict[str, Any]:
    """`values` with the profile's defaults filled in and the model types turned into a
    template (an explicit `template` wins). Raises ConfigError on an unknown profile or model
    type, or on policy and reward model types that need different templates."""
    out = dict(values)
    profile = out.get("profile", "default")
    if profile not in PROFILES:
        raise ConfigError(
            f"{origin}: unknown profile {profile!r}", f"use one of {', '.join(PROFILES)}"
        )
    for key, value in PROFILES[profile].items():
        out.setdefault(key, value)
    templates = set()
    for key in MODEL_TYPE_KEYS:
        if key not in out:
            continue
        family = out.pop(key)
        if family not in MODEL_TYPE_TEMPLATES:
            raise ConfigError(
                f"{origin}: unknown {key} {family!r}",
                f"use one of {', '.join(MODEL_TYPE_TEMPLATES)}, or set `template` instead",
            )
        templates.add(MODEL_TYPE_TEMPLATES[family][profile])
    if len(templates) > 1:
        raise ConfigError(
            f"{origin}: policy_model_type and reward_model_type need different templates "
            f"({', '.join(sorted(templates))})",
            "set `template` to the one to use",
        )
    if templates and "template" not in values:
        out["template"] = templates.pop()
    return out
