"""The search configuration: defaults, the reference code's key names, validation, fingerprint.

A config is assembled from defaults, then a YAML file, then command-line flags. The
*semantic* fields (those that change what the search produces) define the fingerprint that
`--resume` matches on; operational fields (concurrency, timeouts, limits) do not.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from rebase_cli.errors import ConfigError
from rebase_cli.runner.profiles import IGNORED_KEYS, MODEL_TYPE_KEYS, apply_profile
from rebase_cli.search.base import ShareRounding, TieOrder

Method = Literal["rebase", "sample", "beam", "dvts", "particle"]
SampleMode = Literal["steps", "whole"]
RewardProtocol = Literal["score", "classify", "pooling"]
Profile = Literal["default", "reference"]
SelectMethod = Literal["softmax", "softmax_with_truncate"]
ChildOrder = Literal["parent-order", "best-first"]
PathTokenRule = Literal["path", "step"]
LeafRule = Literal["template", "answer-phrase"]

# Keys of the paper's reference code and their names here.
REFERENCE_ALIASES = {
    "width": "budget",
    "softmax_temperature": "balance_temperature",
    "num_threads": "concurrency",
    "num_samples": "budget",
    "beam_width": "budget",
    "expansion": "beam_expansion",
    "max_new_tokens": "max_step_tokens",
    "prompt_template": "template",
}


class SearchConfig(BaseModel):
    """A fully resolved search configuration (immutable)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: Method = "rebase"
    budget: int = Field(ge=1, le=65536)
    balance_temperature: float = Field(default=0.2, gt=0, le=1e6)
    temperature: float = Field(default=1.0, ge=0, le=10)
    top_p: float = Field(default=1.0, gt=0, le=1)
    max_step_tokens: int = Field(default=256, ge=1, le=1_000_000)
    max_tokens: int = Field(default=1024, ge=1, le=10_000_000)
    max_depth: int = Field(default=25, ge=1, le=10_000)
    beam_expansion: int = Field(default=4, ge=1, le=65536)
    particle_temperature: float = Field(default=0.2, gt=0, le=1e6)
    # `sample` only: grow each path step by step (scored as it grows), or generate it whole in
    # one request and score its steps afterwards.
    sample_mode: SampleMode = "steps"
    template: str = "llemma-metamath"
    reward_protocol: RewardProtocol = "score"
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    # Operational: not part of the fingerprint.
    limit: int | None = Field(default=None, ge=1)
    concurrency: int = Field(default=32, ge=1, le=100_000)
    max_in_flight: int = Field(default=256, ge=1, le=100_000)
    request_timeout: float = Field(default=120.0, gt=0, le=86_400)
    max_retries: int = Field(default=6, ge=0, le=100)
    server_wait: float = Field(default=300.0, ge=0, le=86_400)
    # None: all children of a parent in one request (n = children); 1: one request per sample
    # (each with its own seed), for servers whose n > 1 with a seed repeats one sample.
    # Semantic: it changes which seed each sample gets, so a deterministic server's tree too.
    samples_per_request: int | None = Field(default=None, ge=1, le=65536)
    policy_params: float | None = Field(default=None, gt=0)
    reward_params: float | None = Field(default=None, gt=0)
    # Paper / authors' code / rebase switches (README "Reproducing the paper"); `profile`
    # records which bundle of defaults the run started from.
    profile: Profile = "default"
    select_method: SelectMethod = "softmax"
    truncate_ratio: float | None = Field(default=None, gt=0, le=1)
    tie_order: TieOrder = "earlier-first"
    child_order: ChildOrder = "parent-order"
    share_rounding: ShareRounding = "sequential-ceil"
    path_token_rule: PathTokenRule = "path"
    leaf_rule: LeafRule = "template"

    @model_validator(mode="after")
    def _truncate_ratio_goes_with_its_method(self) -> SearchConfig:
        truncating = self.select_method == "softmax_with_truncate"
        if truncating and self.truncate_ratio is None:
            raise ValueError("select_method softmax_with_truncate needs truncate_ratio")
        if not truncating and self.truncate_ratio is not None:
            raise ValueError("truncate_ratio is only used by select_method softmax_with_truncate")
        if self.method != "rebase" and (truncating or self.share_rounding != "sequential-ceil"):
            raise ValueError(
                f"select_method and share_rounding shape REBASE's allocation, not {self.method}'s"
            )
        return self

    @property
    def whole_solutions(self) -> bool:
        """Whole-solution sampling: each path generated in one request, then scored."""
        return self.method == "sample" and self.sample_mode == "whole"


OPERATIONAL_KEYS = frozenset(
    {
        "limit",
        "concurrency",
        "max_in_flight",
        "request_timeout",
        "max_retries",
        "server_wait",
        "policy_params",
        "reward_params",
    }
)
# Switches whose default leaves the fingerprint as it was before they existed, so runs
# started earlier are still found by --resume.
_FINGERPRINT_NEUTRAL = {
    key: SearchConfig.model_fields[key].default
    for key in (
        "profile",
        "select_method",
        "truncate_ratio",
        "tie_order",
        "child_order",
        "share_rounding",
        "path_token_rule",
        "leaf_rule",
        "particle_temperature",
        "sample_mode",
    )
}
KNOWN_KEYS = frozenset(SearchConfig.model_fields)
# Every key a config file may hold: ours, the authors' aliases and model types, and the
# authors' keys accepted with a notice.
ACCEPTED_KEYS = frozenset(KNOWN_KEYS | set(REFERENCE_ALIASES) | set(MODEL_TYPE_KEYS))
ACCEPTED_KEYS |= frozenset(IGNORED_KEYS)


def normalise_keys(
    raw: dict[str, Any], origin: str, notices: list[str] | None = None
) -> dict[str, Any]:
    """Map reference-code names onto ours. Keys we do not use (the authors' `store_path`)
    are dropped with a notice appended to `notices`; unknown keys are one ConfigError naming
    them all, each with the accepted key it most resembles."""
    out: dict[str, Any] = {}
    unknown: list[str] = []
    given_as: dict[str, str] = {}
    for key, value in raw.items():
        name = REFERENCE_ALIASES.get(str(key), str(key))
        if name in given_as:
            # `budget: 4` with its alias `width: 8`: neither may win silently.
            raise ConfigError(
                f"{origin}: {given_as[name]!r} and {key!r} both set {name}",
                "keep one of them",
            )
        given_as[name] = str(key)
        if name in IGNORED_KEYS:
            if notices is not None:
                notices.append(f"{origin}: `{name}` is not used: {IGNORED_KEYS[name]}")
            continue
        if name not in KNOWN_KEYS and name not in MODEL_TYPE_KEYS:
            unknown.append(str(key))
            continue
        out[name] = value
    if unknown:
        described = []
        for key in unknown:
            close = difflib.get_close_matches(key, sorted(ACCEPTED_KEYS), n=1)
            described.append(f"{key!r} (did you mean {close[0]!r}?)" if close else repr(key))
        plural = "s" if len(unknown) > 1 else ""
        raise ConfigError(
            f"{origin}: unknown config key{plural} {', '.join(described)}",
            "rename or remove them (`rebase search --help` lists every key as a flag)",
        )
    return out


class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load that refuses a key given twice in one mapping (YAML's last-one-wins would
    drop a value silently)."""


def _unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} is given twice", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=True)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def load_config_file(path: Path, notices: list[str] | None = None) -> dict[str, Any]:
    """The key/value pairs of a YAML config file, with reference names mapped (notices about
    keys that are accepted but not used are appended to `notices`)."""
    if path.is_dir():
        raise ConfigError(f"config {path} is a folder, not a file", "name the YAML file in it")
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist", "check the --config path")
    try:
        data = yaml.load(path.read_text(encoding="utf-8-sig"), Loader=_UniqueKeyLoader)
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text", "save it as UTF-8") from None
    except yaml.YAMLError as exc:
        first = " ".join(str(exc).split())
        raise ConfigError(f"{path} is not valid YAML ({first})", "fix the file") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must be a mapping of config keys", "e.g. `budget: 16`")
    return normalise_keys(data, str(path), notices)


def build_config(values: dict[str, Any], origin: str = "config") -> SearchConfig:
    """Validate merged values into a SearchConfig (the profile's defaults and the model types
    applied first); errors name the key and the bad value."""
    values = apply_profile(values, origin)
    for key, value in values.items():
        # pydantic reads `budget: true` as 1; a yes/no where a number belongs is a mistake.
        if isinstance(value, bool) and key in _NUMERIC_KEYS:
            raise ConfigError(
                f"{origin}: invalid {key}={value!r}: a number is needed, not true/false",
                f"fix --{key.replace('_', '-')} or the config file",
            )
    config = _validated(values, origin)
    # Under the path rule the requests of a path share max_tokens, so a cap below one step's
    # leaves the first step no room to finish; under the authors' step rule it caps each step.
    if config.path_token_rule == "path" and config.max_tokens < config.max_step_tokens:
        raise ConfigError(
            f"{origin}: max_tokens={config.max_tokens} is below "
            f"max_step_tokens={config.max_step_tokens}, so a path's first step could use up its "
            "whole token budget before it reaches an answer",
            "raise --max-tokens or lower --max-step-tokens",
        )
    return config


_NUMERIC_KEYS = frozenset(
    name
    for name, field in SearchConfig.model_fields.items()
    if any(t in str(field.annotation) for t in ("int", "float"))
)


def _validated(values: dict[str, Any], origin: str) -> SearchConfig:
    try:
        return _check_combination(SearchConfig(**values), origin)
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(str(p) for p in error["loc"]) or "config"
        if key == "config":  # a rule across keys: its message names them
            raise ConfigError(
                f"{origin}: {error['msg'].removeprefix('Value error, ')}",
                "fix the config file or the flags",
            ) from None
        given = values.get(key, error.get("input"))
        if error["type"] == "missing":
            raise ConfigError(
                f"{origin}: `{key}` is required", f"pass --{key.replace('_', '-')} N"
            ) from None
        raise ConfigError(
            f"{origin}: invalid {key}={given!r}: {error['msg']}",
            f"fix --{key.replace('_', '-')} or the config file",
        ) from None


def _check_combination(config: SearchConfig, origin: str) -> SearchConfig:
    """Refuse settings that the chosen method would silently ignore."""
    if config.sample_mode == "whole" and config.method != "sample":
        raise ConfigError(
            f"{origin}: sample_mode 'whole' applies to method 'sample' only "
            f"(method is {config.method!r})",
            "drop --sample-mode, or pass --method sample",
        )
    return config


def semantic_dict(config: SearchConfig) -> dict[str, Any]:
    """The fields that determine the search's output (switches at their neutral default are
    left out, so adding a switch does not change older runs' fingerprints)."""
    return {
        k: v
        for k, v in config.model_dump().items()
        if k not in OPERATIONAL_KEYS
        and not (k in _FINGERPRINT_NEUTRAL and v == _FINGERPRINT_NEUTRAL[k])
    }


def fingerprint(config: SearchConfig, dataset_sha256: str, template_digest: str) -> str:
    """sha256 of the canonical semantic config, the dataset's checksum and the template's
    content (a template edited under the same name is another experiment)."""
    canonical = json.dumps(
        {
            "config": semantic_dict(config),
            "dataset_sha256": dataset_sha256,
            "template": template_digest,
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _semantic_values(config: SearchConfig) -> dict[str, Any]:
    return {k: v for k, v in config.model_dump().items() if k not in OPERATIONAL_KEYS}


def differing_keys(stored: SearchConfig, wanted: SearchConfig) -> list[str]:
    """Semantic keys whose values differ, as `key: stored → wanted` strings."""
    a, b = _semantic_values(stored), _semantic_values(wanted)
    return [f"{k}: {a[k]!r} → {b[k]!r}" for k in sorted(a) if a[k] != b[k]]
