"""The flags of the search parameters, derived from `SearchConfig`'s fields.

`rebase search` takes every field whose `Param` names a help panel; `rebase check` takes the
fields it selects. Each becomes an option `--field-name` with the field's
help, its default shown in brackets, and the type Typer parses (int, float, or text for the
choices, which the config validates with its own message). The flag itself defaults to None,
so that a value in the config file wins over a flag that was not given.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.markup import escape

from rebase_cli.runner.config import PARAMETERS, SearchConfig

# A parameter of a command named after a SearchConfig field: its flag's type, help, default
# shown and panel come from the field (see `config_flags`); the value is also in `overrides`.
Flag = Any


def _flag_annotation(name: str) -> Any:
    """The Typer annotation of SearchConfig field `name`'s flag. The flag defaults to None, so
    that a config file's value can win; the field's default is shown in the help instead."""
    param, field = PARAMETERS[name], SearchConfig.model_fields[name]
    kind = (
        str
        if param.sweep
        else next((t for t in (int, float) if field.annotation in (t, t | None)), str)
    )
    default = "all" if field.default is None else field.default
    note = param.note or f"default: {default}"
    return Annotated[
        kind | None,
        typer.Option(
            help=escape(f"{param.help} [{note}]"), rich_help_panel=param.panel, show_default=False
        ),
    ]


def config_flags(
    command: Callable[..., None] | None = None, *, fields: tuple[str, ...] | None = None
) -> Any:
    """`command` with one option per SearchConfig field that has a panel, or per field in
    `fields` (`@config_flags(fields=(...))`): a parameter named after the field (annotated
    `Flag`) places it, a field `command` does not name goes at the end of its panel. `command`
    gets those parameters as declared plus `overrides`: the config values given on the command
    line, by key (sweep fields, `budget` and `method`, excepted: they are lists here)."""
    if command is None:
        return functools.partial(config_flags, fields=fields)
    if fields is None:
        flagged = [name for name, p in PARAMETERS.items() if p.panel is not None]
    else:
        unknown = [n for n in fields if n not in PARAMETERS or PARAMETERS[n].panel is None]
        assert not unknown, f"{unknown} are not SearchConfig fields with a flag"
        flagged = list(fields)
    declared = inspect.signature(command, eval_str=True).parameters
    parameters = []
    for name, parameter in declared.items():
        if name == "overrides":
            continue
        if name in flagged:
            parameter = parameter.replace(annotation=_flag_annotation(name), default=None)
        parameters.append(parameter)
    for name in flagged:
        if name not in declared:
            annotation = _flag_annotation(name)
            kind = inspect.Parameter.KEYWORD_ONLY
            parameters.append(inspect.Parameter(name, kind, default=None, annotation=annotation))
    sweep = {name for name in flagged if PARAMETERS[name].sweep}
    missing = sweep - set(declared)
    assert not missing, f"{command.__name__} must take the sweep flags {missing}"

    @functools.wraps(command)
    def with_flags(**given: Any) -> None:
        overrides = {
            name: given[name]
            for name in flagged
            if name not in sweep and given.get(name) is not None
        }
        own = {name: value for name, value in given.items() if name in declared}
        command(**own, overrides=overrides)

    del with_flags.__wrapped__  # Typer reads the signature below, not `command`'s
    with_flags.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    with_flags.__annotations__ = {p.name: p.annotation for p in parameters}
    return with_flags
