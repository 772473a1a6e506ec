"""Prompt templates: how a question becomes a prompt, how steps end and are written back,
what an answer looks like, and how a path is shown to the PRM.

Templates are YAML files shipped in `rebase_cli/templates/` (selected by name) or any YAML
path. A child's prompt is always its parent's prompt plus the step text plus the step
delimiter, so every request is a pure extension of its parent's and prefix caching applies.
Placeholders ({question}, {k}, {answer}) are substituted with str.replace, never str.format,
so LaTeX braces in templates need no escaping.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field, fields
from functools import lru_cache
from importlib import resources
from pathlib import Path

import yaml

from rebase_cli.errors import ConfigError

DEFAULT_TEMPLATE = "llemma-metamath"


@dataclass(frozen=True)
class PrmFormat:
    """How a path is shown to a process reward model.

    `step_tag` follows every step (Math-Shepherd's " ки"); the PRM's probability of
    `good_token` at the tag is the step's score. Token ids are the PRM tokenizer's ids of the
    label tokens (used by SGLang's /v1/score)."""

    step_tag: str = " ки"
    good_token: str = "+"
    bad_token: str = "-"
    good_token_id: int = 648
    bad_token_id: int = 387
    step_separator: str = "\n"
    pooling_step_tag: str = "<extra_0>"
    system: str = "Please reason step by step, and put your final answer within \\boxed{}."
    # The outcome reward model's chat format for /classify, with {question} and {answer} (the
    # steps joined by step_separator). SGLang's /classify applies no chat template, and reward
    # models trained on chat turns (Skywork-Reward) score plain text badly. None: plain text.
    classify_chat: str | None = None


@dataclass(frozen=True)
class PromptTemplate:
    """A prompt format. Invariant: `step_delimiter` is the first entry of `stop`.

    `next_step_stop` (e.g. "Step {k}") makes the stop string depend on the depth: a step is
    generated until the policy starts writing the next step's tag, {k} being that next step's
    number (the authors' `stop="Step " + str(depth + 2)`). The server strips the stop string,
    so a child's prompt is its parent's plus the step text alone, and the policy writes each
    step's tag itself (see `stops_for`, `extend`); `step_delimiter` then only says where the
    lines of a step's text break."""

    name: str
    prompt: str
    step_delimiter: str
    step_prefix: str = ""
    answer_format: str = "The answer is: {answer}"
    answer_regex: str | None = None
    last_number_fallback: bool = False
    extra_stop: tuple[str, ...] = ()
    description: str = ""
    prm: PrmFormat = field(default_factory=PrmFormat)
    next_step_stop: str | None = None

    @property
    def stop(self) -> tuple[str, ...]:
        """Stop strings of a step request: the delimiter first, then any extra stops."""
        return (self.step_delimiter, *(s for s in self.extra_stop if s != self.step_delimiter))

    def stops_for(self, depth: int) -> tuple[str, ...]:
        """Stop strings of a request that expands a node at `depth` (its children are step
        depth + 1, so the next step's tag is number depth + 2)."""
        if self.next_step_stop is None:
            return self.stop
        tag = self.next_step_stop.replace("{k}", str(depth + 2))
        return (tag, *(s for s in self.extra_stop if s != tag))

    def is_step_end(self, matched_stop: str | int | None) -> bool:
        """True when `matched_stop` (the stop string a server reports) ends a step."""
        if not isinstance(matched_stop, str):
            return False
        if matched_stop == self.step_delimiter and self.next_step_stop is None:
            return True
        if self.next_step_stop is None:
            return False
        pattern = re.escape(self.next_step_stop).replace(re.escape("{k}"), r"\d+")
        return re.fullmatch(pattern, matched_stop) is not None

    def render(self, question: str) -> str:
        """The root prompt for `question`."""
        return self.prompt.replace("{question}", question)

    def extend(self, prompt: str, step_text: str) -> str:
        """The prompt of a child: parent prompt + its step + the delimiter (nothing after the
        step with `next_step_stop`: the server stripped the stop string, the step text keeps
        its own line break)."""
        if self.next_step_stop is not None:
            return prompt + step_text
        return prompt + step_text + self.step_delimiter

    def format_step(self, k: int, body: str) -> str:
        """Step `k` (1-based) as a policy following this template writes it."""
        return self.step_prefix.replace("{k}", str(k)) + body

    def format_answer(self, answer: str) -> str:
        """The final answer line."""
        return self.answer_format.replace("{answer}", answer)

    def split_steps(self, generated: str) -> list[str]:
        """Steps of a generated continuation, split at the delimiter (empty pieces dropped)."""
        return [part for part in generated.split(self.step_delimiter) if part.strip()]

    def digest(self) -> str:
        """sha256 of every field: two templates that prompt or parse differently differ."""
        fields_ = dataclasses.asdict(self)
        if fields_["next_step_stop"] is None:  # templates without it keep their old digest
            del fields_["next_step_stop"]
        canonical = json.dumps(fields_, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()

    def question_of(self, prompt: str) -> str | None:
        """The question inside a root-or-descendant prompt of this template, or None."""
        head, _, tail = self.prompt.partition("{question}")
        if not prompt.startswith(head):
            return None
        rest = prompt[len(head) :]
        end = rest.find(tail) if tail else len(rest)
        return rest[:end] if end >= 0 else None


def builtin_names() -> list[str]:
    """Names of the templates shipped with rebase."""
    folder = resources.files("rebase_cli") / "templates"
    return sorted(
        entry.name.removesuffix(".yaml")
        for entry in folder.iterdir()
        if entry.name.endswith(".yaml")
    )


def load_template(name_or_path: str) -> PromptTemplate:
    """A shipped template by name, or a YAML file by path."""
    return _load_template(name_or_path)


@lru_cache(maxsize=32)
def _load_template(name_or_path: str) -> PromptTemplate:
    path = Path(name_or_path).expanduser()
    if name_or_path in builtin_names():
        source = resources.files("rebase_cli") / "templates" / f"{name_or_path}.yaml"
        text, origin = source.read_text(encoding="utf-8"), f"template {name_or_path}"
    elif path.is_file():
        text, origin = path.read_text(encoding="utf-8"), str(path)
    else:
        raise ConfigError(
            f"unknown template {name_or_path!r}",
            f"use one of {', '.join(builtin_names())} or a path to a YAML file",
        )
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{origin} is not valid YAML ({exc})", "fix the file") from None
    return template_from_mapping(data, origin)


_SCALAR_TYPES = {"int": int, "str": str, "bool": bool}
_TYPE_NAMES = {"int": "a whole number", "str": "a string", "bool": "true or false"}


def _check_types(data: dict, cls: type, origin: str) -> None:
    """Each given scalar field has its declared type: a token id must be a number (a string
    would only fail at the server, late and with a misleading message), a flag true/false."""
    for item in fields(cls):
        if item.name not in data or not isinstance(item.type, str):
            continue
        declared = [t.strip() for t in item.type.split("|")]
        value = data[item.name]
        if value is None and "None" in declared:
            continue
        wanted = [_SCALAR_TYPES[t] for t in declared if t in _SCALAR_TYPES]
        if not wanted:
            continue
        # bool is an int in Python; `good_token_id: true` is still not a token id.
        ok = any(
            isinstance(value, t) and not (t is int and isinstance(value, bool)) for t in wanted
        )
        if not ok:
            names = " or ".join(_TYPE_NAMES[t] for t in declared if t in _TYPE_NAMES)
            raise ConfigError(
                f"{origin}: `{item.name}` must be {names}, got {value!r}", "fix the template"
            )


def template_from_mapping(data: object, origin: str) -> PromptTemplate:
    """Validate a parsed YAML mapping into a PromptTemplate (unknown keys are errors)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{origin} must be a mapping of template fields", "see docs")
    data = dict(data)
    known = {f.name for f in fields(PromptTemplate)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(
            f"{origin}: unknown template key(s) {', '.join(unknown)}",
            f"allowed: {', '.join(sorted(known))}",
        )
    for required in ("name", "prompt", "step_delimiter"):
        if not isinstance(data.get(required), str) or not data[required]:
            raise ConfigError(f"{origin}: `{required}` must be a non-empty string", "fix it")
    if "{question}" not in data["prompt"]:
        raise ConfigError(f"{origin}: `prompt` must contain {{question}}", "add the placeholder")
    prm_data = data.pop("prm", None) or {}
    prm_known = {f.name for f in fields(PrmFormat)}
    if not isinstance(prm_data, dict) or set(prm_data) - prm_known:
        raise ConfigError(
            f"{origin}: bad `prm` section", f"allowed keys: {', '.join(sorted(prm_known))}"
        )
    _check_types(data, PromptTemplate, origin)
    _check_types(prm_data, PrmFormat, f"{origin}: prm")
    extra_stop = data.get("extra_stop") or []
    # A bare string would be split into one stop string per character.
    if not isinstance(extra_stop, list) or not all(isinstance(s, str) and s for s in extra_stop):
        raise ConfigError(
            f"{origin}: `extra_stop` must be a list of non-empty strings, got {extra_stop!r}",
            'write it as a list, e.g. extra_stop: ["</s>"]',
        )
    data["extra_stop"] = tuple(extra_stop)
    next_stop = data.get("next_step_stop")
    if next_stop is not None and (not isinstance(next_stop, str) or "{k}" not in next_stop):
        raise ConfigError(
            f"{origin}: `next_step_stop` must be a string with {{k}} (the next step's number)",
            'e.g. next_step_stop: "Step {k}"',
        )
    if data.get("answer_regex"):
        try:
            re.compile(data["answer_regex"])
        except re.error as exc:
            raise ConfigError(
                f"{origin}: answer_regex does not compile ({exc})", "fix it"
            ) from None
    try:
        return PromptTemplate(**data, prm=PrmFormat(**prm_data))
    except TypeError as exc:
        raise ConfigError(f"{origin}: {exc}", "check the template fields") from None
