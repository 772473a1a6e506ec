"""The search configuration: the one definition of every search parameter.

Each field of `SearchConfig` says, beside its type, default and bounds, what `Param` it is:
whether it is semantic (it changes what the search produces, so it is part of the fingerprint
that `--resume` matches on) or operational (concurrency, timeouts, limits), the reference
code's names accepted for it in a config file, and its `rebase search` flag's help and panel.
The CLI's flags, the authors' key names, the fingerprint's inputs and the strategies'
parameters (`SearchConfig.strategy_params`) are all derived from these fields.

A config is assembled from defaults, then a YAML file (`ConfigFile`, read once per command),
then command-line flags, and validated once by `build_config`.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from rebase_cli.errors import ConfigError
from rebase_cli.params import Method, RewardProtocol, listed
from rebase_cli.runner.profiles import IGNORED_KEYS, MODEL_TYPE_KEYS, apply_profile
from rebase_cli.search.base import ShareRounding, StrategyParams, TieOrder

SampleMode = Literal["steps", "whole"]
Profile = Literal["default", "reference"]
SelectMethod = Literal["softmax", "softmax_with_truncate"]
ChildOrder = Literal["parent-order", "best-first"]
PathTokenRule = Literal["path", "step"]
LeafRule = Literal["template", "answer-phrase"]

# The help panels of `rebase search`, in the order shown.
WHAT = "What to search"
PARAMS = "Search parameters"
ENDPOINTS = "Endpoints"
PAPER = "Paper and authors' code switches"
OPERATION = "Concurrency and timeouts"
OUTPUT = "Run and output"


# Problems searched at once when the policy server does not say how many requests it runs.
DEFAULT_CONCURRENCY = 32
# Sequences asked for per sequence the server runs, when the concurrency is sized from its
# capacity: the margin that keeps its queue non-empty while problems are being scored or end
# (benchmarks/bench_server_busy.py).
AUTO_OVERSUBSCRIPTION = 4
MAX_AUTO_CONCURRENCY = 4096


@dataclass(frozen=True)
class Param:
    """What a SearchConfig field is beyond its value.

    `semantic`: part of the run fingerprint (it changes what the search produces); False for
    operational fields. `neutral`: a semantic switch added after the first release, left out
    of the fingerprint at its default so that runs started before it existed are still found.
    `aliases`: the names the authors' reference code gives the key (accepted in config files).
    `panel`: the help panel of its `rebase search` flag; None: config file only, no flag.
    `note`: what `--help` shows in brackets instead of `default: VALUE`. `sweep`: the flag
    takes a comma-separated list, one run per item."""

    help: str
    panel: str | None = None
    semantic: bool = True
    neutral: bool = False
    aliases: tuple[str, ...] = ()
    note: str | None = None
    sweep: bool = False


def Operational(help: str, panel: str | None = None, **kw: Any) -> Param:
    """A Param left out of the fingerprint (how the search runs, not what it finds)."""
    return Param(help, panel, semantic=False, **kw)


class SearchConfig(BaseModel):
    """A fully resolved search configuration (immutable). Field order is the order of the
    stored `config_json`; keep it."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=True)

    method: Annotated[
        Method,
        Param(f"{listed(Method)}; a list (rebase,sample) runs a sweep.", WHAT, sweep=True),
    ] = Field(default=Method.rebase, validate_default=True)  # stored as the plain string
    budget: Annotated[
        int,
        Param(
            "Width N: paths per problem; a list (4,8,16) runs a sweep.",
            WHAT,
            aliases=("width", "num_samples", "beam_width"),
            note="required unless in --config/--run",
            sweep=True,
        ),
    ] = Field(ge=1, le=65536)
    balance_temperature: Annotated[
        float, Param("REBASE softmax temperature.", PARAMS, aliases=("softmax_temperature",))
    ] = Field(default=0.2, gt=0, le=1e6)
    temperature: Annotated[float, Param("Policy sampling temperature.", PARAMS)] = Field(
        default=1.0, ge=0, le=10
    )
    top_p: Annotated[float, Param("Policy nucleus sampling.", PARAMS)] = Field(
        default=1.0, gt=0, le=1
    )
    max_step_tokens: Annotated[
        int, Param("Max tokens per step.", PARAMS, aliases=("max_new_tokens",))
    ] = Field(default=256, ge=1, le=1_000_000)
    # Per path: the tokens of all a path's steps together (per step under path_token_rule
    # "step"); each request's own cap is derived from it and max_step_tokens.
    max_tokens: Annotated[int, Param("Max tokens per path.", PARAMS)] = Field(
        default=1024, ge=1, le=10_000_000
    )
    max_depth: Annotated[int, Param("Max steps per path.", PARAMS)] = Field(
        default=25, ge=1, le=10_000
    )
    beam_expansion: Annotated[
        int, Param("Beam and DVTS expansion M.", PARAMS, aliases=("expansion",))
    ] = Field(default=4, ge=1, le=65536)
    particle_temperature: Annotated[
        float, Param("Particle filtering resampling temperature.", PARAMS, neutral=True)
    ] = Field(default=0.2, gt=0, le=1e6)
    # `sample` only: grow each path step by step (scored as it grows), or generate it whole in
    # one request and score its steps afterwards.
    sample_mode: Annotated[
        SampleMode,
        Param(
            "sample: steps (scored as it grows) or whole (one request per path).",
            PARAMS,
            neutral=True,
        ),
    ] = "steps"
    template: Annotated[
        str, Param("Prompt template name or YAML path.", PARAMS, aliases=("prompt_template",))
    ] = "llemma-metamath"
    reward_protocol: Annotated[RewardProtocol, Param(f"{listed(RewardProtocol)}.", ENDPOINTS)] = (
        Field(default=RewardProtocol.score, validate_default=True)
    )
    seed: Annotated[int, Param("Run seed (child seeds derive from it).", PARAMS)] = Field(
        default=0, ge=0, le=2**31 - 1
    )
    limit: Annotated[
        int | None, Operational("Only the first K problems.", WHAT, note="default: all")
    ] = Field(default=None, ge=1)
    concurrency: Annotated[
        int | None,
        Operational(
            "Problems searched at once.",
            OPERATION,
            aliases=("num_threads",),
            note=(
                f"default: auto: {AUTO_OVERSUBSCRIPTION} x the policy server's capacity / "
                f"budget, at least {DEFAULT_CONCURRENCY}"
            ),
        ),
    ] = Field(default=None, ge=1, le=100_000)
    max_in_flight: Annotated[int, Operational("In-flight requests per endpoint.", OPERATION)] = (
        Field(default=256, ge=1, le=100_000)
    )
    request_timeout: Annotated[float, Operational("Seconds per request.", OPERATION)] = Field(
        default=120.0, gt=0, le=86_400
    )
    max_retries: Annotated[int, Operational("Retries of a failed request.")] = Field(
        default=6, ge=0, le=100
    )
    server_wait: Annotated[float, Operational("Seconds to wait for a down server.", OPERATION)] = (
        Field(default=300.0, ge=0, le=86_400)
    )
    # None: all children of a parent in one request (n = children); 1: one request per sample
    # (each with its own seed), for servers whose n > 1 with a seed repeats one sample.
    # Semantic: it changes which seed each sample gets, so a deterministic server's tree too.
    samples_per_request: Annotated[
        int | None,
        Param(
            "Cap on n per policy request (1: one request, one seed per child).",
            PARAMS,
            note="default: all children of a node in one request",
        ),
    ] = Field(default=None, ge=1, le=65536)
    # Model sizes (billions of parameters) for the report's compute figures.
    policy_params: Annotated[float | None, Operational("Policy model size, billions.")] = Field(
        default=None, gt=0
    )
    reward_params: Annotated[float | None, Operational("Reward model size, billions.")] = Field(
        default=None, gt=0
    )
    # Paper / authors' code / rebase switches (README "Reproducing the paper"); `profile`
    # records which bundle of defaults the run started from.
    profile: Annotated[
        Profile, Param("default, or reference: the authors' rebase.py.", PAPER, neutral=True)
    ] = "default"
    select_method: Annotated[
        SelectMethod, Param("softmax or softmax_with_truncate.", PAPER, neutral=True)
    ] = "softmax"
    truncate_ratio: Annotated[
        float | None,
        Param(
            "softmax_with_truncate keeps the best ceil(open x ratio).",
            PAPER,
            neutral=True,
            note="default: none",
        ),
    ] = Field(default=None, gt=0, le=1)
    tie_order: Annotated[
        TieOrder,
        Param("Equal scores: earlier-first or later-first (reference).", PAPER, neutral=True),
    ] = "earlier-first"
    child_order: Annotated[
        ChildOrder,
        Param("Children made in parent-order or best-first (reference).", PAPER, neutral=True),
    ] = "parent-order"
    share_rounding: Annotated[
        ShareRounding, Param("sequential-ceil (code) or round (paper).", PAPER, neutral=True)
    ] = "sequential-ceil"
    path_token_rule: Annotated[
        PathTokenRule,
        Param("--max-tokens counts the path, or the step (reference).", PAPER, neutral=True),
    ] = "path"
    leaf_rule: Annotated[
        LeafRule,
        Param(
            "Path ends: template (answer, EOS) or answer-phrase (reference).", PAPER, neutral=True
        ),
    ] = "template"

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

    def problems_at_once(self, capacity: int | None) -> int:
        """`concurrency`; when it is auto, enough problems to keep busy a policy server that
        runs `capacity` requests at once: AUTO_OVERSUBSCRIPTION x capacity / budget (a problem
        holds up to `budget` sequences at a level, fewer as its paths end and none while its
        level is scored; 2 x for whole-solution sampling), at least DEFAULT_CONCURRENCY, which
        is also the answer when the capacity is unknown."""
        if self.concurrency is not None:
            return self.concurrency
        if capacity is None:
            return DEFAULT_CONCURRENCY
        # A whole-solution request holds its slots for a whole path: queued behind 4x the
        # capacity it could outlast --request-timeout on a slow server, so it gets 2x.
        factor = 2 if self.whole_solutions else AUTO_OVERSUBSCRIPTION
        wanted = -(-factor * capacity // self.budget)
        return min(MAX_AUTO_CONCURRENCY, max(DEFAULT_CONCURRENCY, wanted))

    def strategy_params(self) -> StrategyParams:
        """The strategies' parameters (validated with this config: they are not checked again).
        `width` is the budget; `max_path_tokens` is `max_tokens`, the per-path cap."""
        return StrategyParams(
            width=self.budget,
            balance_temperature=self.balance_temperature,
            max_path_tokens=self.max_tokens,
            max_depth=self.max_depth,
            beam_expansion=self.beam_expansion,
            tie_order=self.tie_order,
            share_rounding=self.share_rounding,
            truncate_ratio=self.truncate_ratio,
            particle_temperature=self.particle_temperature,
            seed=self.seed,
        )


def param(name: str) -> Param:
    """The Param of SearchConfig field `name`."""
    return next(m for m in SearchConfig.model_fields[name].metadata if isinstance(m, Param))


PARAMETERS: dict[str, Param] = {name: param(name) for name in SearchConfig.model_fields}
OPERATIONAL_KEYS = frozenset(name for name, p in PARAMETERS.items() if not p.semantic)
# Switches whose default leaves the fingerprint as it was before they existed, so runs
# started earlier are still found by --resume.
_FINGERPRINT_NEUTRAL = {
    name: SearchConfig.model_fields[name].default for name, p in PARAMETERS.items() if p.neutral
}
# Keys of the paper's reference code and their names here.
REFERENCE_ALIASES = {alias: name for name, p in PARAMETERS.items() for alias in p.aliases}
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


@dataclass(frozen=True)
class ConfigFile:
    """A YAML config file as read once by the command that names it: its values under our
    key names, and the notices about keys that are accepted but not used (for the CLI to
    show). Everything after the command line takes this, never the path, so the file is read
    and checked once per command."""

    path: Path
    values: dict[str, Any]
    notices: tuple[str, ...] = ()

    @classmethod
    def read(cls, path: Path) -> ConfigFile:
        notices: list[str] = []
        values = load_config_file(path, notices)
        return cls(path, values, tuple(notices))


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
