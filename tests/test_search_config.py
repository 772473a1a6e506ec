"""Search configuration: reference keys, validation errors, fingerprints, differing keys."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rebase_cli.cli.config_flags import Flag, config_flags
from rebase_cli.clients.server_kind import capacity_from_server_info
from rebase_cli.errors import ConfigError
from rebase_cli.runner.config import (
    ACCEPTED_KEYS,
    SearchConfig,
    build_config,
    differing_keys,
    fingerprint,
    load_config_file,
    normalise_keys,
)


def test_reference_code_keys_are_mapped(tmp_path: Path) -> None:
    path = tmp_path / "ref.yaml"
    path.write_text("width: 32\nsoftmax_temperature: 0.1\nmax_step_tokens: 128\ntemperature: 0.7\n")
    config = build_config(load_config_file(path))
    assert (config.budget, config.balance_temperature, config.max_step_tokens) == (32, 0.1, 128)
    assert config.temperature == 0.7


def test_mistyped_key_suggests_the_right_one(tmp_path: Path) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text("budjet: 16\n")
    with pytest.raises(ConfigError) as caught:
        load_config_file(path)
    assert "unknown config key 'budjet' (did you mean 'budget'?)" in caught.value.one_line()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"budget": 0}, "invalid budget=0"),
        ({"budget": -4}, "invalid budget=-4"),
        ({"budget": 8, "balance_temperature": 0}, "invalid balance_temperature=0"),
        ({"budget": 8, "method": "mcts"}, "invalid method='mcts'"),
        ({"budget": "many"}, "invalid budget='many'"),
        ({}, "`budget` is required"),
    ],
)
def test_bad_values_are_one_line_config_errors(values: dict, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build_config(values)
    assert message in caught.value.one_line()
    assert "\n" not in caught.value.one_line()


def test_yaml_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config_file(path)
    path.write_text("budget: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config_file(path)


def test_fingerprint_ignores_operational_keys_only() -> None:
    base = build_config({"budget": 16})
    operational = base.model_copy(update={"concurrency": 3, "limit": 5, "request_timeout": 9.0})
    assert fingerprint(base, "sha", "tpl") == fingerprint(operational, "sha", "tpl")
    seeded = base.model_copy(update={"seed": 1})
    assert fingerprint(base, "sha", "tpl") != fingerprint(seeded, "sha", "tpl")
    assert fingerprint(base, "sha", "tpl") != fingerprint(base, "other-dataset", "tpl")
    assert fingerprint(base, "sha", "tpl") != fingerprint(base, "sha", "edited-template")


def test_differing_keys_lists_each_change() -> None:
    stored = build_config({"budget": 16})
    wanted = build_config({"budget": 32, "temperature": 0.5, "concurrency": 2})
    assert differing_keys(stored, wanted) == ["budget: 16 → 32", "temperature: 1.0 → 0.5"]


values_strategy = st.fixed_dictionaries(
    {},
    optional={
        "budget": st.one_of(st.integers(-5, 100), st.floats(allow_nan=True), st.text(max_size=3)),
        "balance_temperature": st.one_of(st.floats(allow_nan=True), st.integers(-2, 2)),
        "temperature": st.one_of(st.floats(allow_nan=True), st.none()),
        "max_depth": st.one_of(st.integers(-3, 50), st.booleans()),
        "method": st.sampled_from(["rebase", "sample", "beam", "mcts", ""]),
        "top_p": st.floats(allow_nan=True),
        "limit": st.one_of(st.none(), st.integers(-3, 10)),
    },
)


@settings(max_examples=300, deadline=None)
@given(values_strategy)
def test_any_config_values_give_a_config_or_a_one_line_error(values: dict) -> None:
    try:
        config = build_config(values)
    except ConfigError as exc:
        line = exc.one_line()
        assert line and "\n" not in line and "Traceback" not in line
        return
    assert isinstance(config, SearchConfig)
    assert config.budget >= 1 and config.balance_temperature > 0 and 0 < config.top_p <= 1


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=12), st.integers(), max_size=4))
def test_unknown_keys_are_always_refused_by_name(raw: dict) -> None:
    # Accepted: ours, the authors' names for them, their model types and the keys of theirs
    # dropped with a notice (`store_path`, which a hand-kept list here once missed).
    unknown = [k for k in raw if k not in ACCEPTED_KEYS]
    if not unknown:
        normalise_keys(raw, "cfg")
        return
    with pytest.raises(ConfigError, match="unknown config key"):
        normalise_keys(raw, "cfg")


def test_fingerprints_of_runs_stored_before_the_new_method_keys_are_unchanged() -> None:
    import hashlib
    import json

    from rebase_cli.runner.config import SearchConfig

    # The semantic keys of the first release: a run stored then has this fingerprint.
    first_release_keys = (
        "method", "budget", "balance_temperature", "temperature", "top_p", "max_step_tokens",
        "max_tokens", "max_depth", "beam_expansion", "template", "reward_protocol", "seed",
        "samples_per_request",
    )  # fmt: skip
    config = SearchConfig(budget=16, method="rebase")
    old_semantic = {k: v for k, v in config.model_dump().items() if k in first_release_keys}
    canonical = json.dumps(
        {"config": old_semantic, "dataset_sha256": "sha", "template": "tpl"},
        sort_keys=True,
        separators=(",", ":"),
    )
    assert fingerprint(config, "sha", "tpl") == hashlib.sha256(canonical.encode()).hexdigest()
    hotter = SearchConfig(budget=16, method="particle", particle_temperature=0.5)
    assert fingerprint(hotter, "sha", "tpl") != fingerprint(
        SearchConfig(budget=16, method="particle"), "sha", "tpl"
    )
    whole = SearchConfig(budget=16, method="sample", sample_mode="whole")
    assert fingerprint(whole, "sha", "tpl") != fingerprint(
        SearchConfig(budget=16, method="sample"), "sha", "tpl"
    )


def test_whole_solution_mode_is_refused_for_methods_that_would_ignore_it() -> None:
    with pytest.raises(ConfigError, match="sample_mode 'whole' applies to method 'sample' only"):
        build_config({"budget": 4, "method": "dvts", "sample_mode": "whole"})
    assert build_config({"budget": 4, "method": "sample", "sample_mode": "whole"}).budget == 4


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"beam_expansion": 0}, "invalid beam_expansion=0"),
        ({"particle_temperature": 0}, "invalid particle_temperature=0"),
        ({"seed": -1}, "invalid seed=-1"),
        ({"max_tokens": 0}, "invalid max_tokens=0"),
        ({"max_depth": 0}, "invalid max_depth=0"),
        ({"tie_order": "random"}, "invalid tie_order='random'"),
        (
            {"select_method": "softmax_with_truncate", "truncate_ratio": 1.5},
            "invalid truncate_ratio=1.5",
        ),
    ],
)
def test_values_no_strategy_can_use_are_refused_by_the_config(values: dict, message: str) -> None:
    # The config is the one place search parameters are checked; the strategies trust it.
    with pytest.raises(ConfigError) as caught:
        build_config({"budget": 4, **values})
    assert message in caught.value.one_line()


def test_strategy_params_carry_every_strategy_parameter_under_its_strategy_name() -> None:
    from dataclasses import fields

    from rebase_cli.search import StrategyParams

    config = build_config(
        {
            "budget": 12, "balance_temperature": 0.7, "max_tokens": 999, "max_depth": 9,
            "beam_expansion": 3, "tie_order": "later-first", "share_rounding": "round",
            "select_method": "softmax_with_truncate", "truncate_ratio": 0.5,
            "particle_temperature": 0.9, "seed": 5,
        }
    )  # fmt: skip
    params = config.strategy_params()
    assert (params.width, params.max_path_tokens) == (12, 999)
    # Every field differs from StrategyParams' own default, so none was left unmapped.
    defaults = StrategyParams(width=1)
    unmapped = [
        f.name for f in fields(params) if getattr(params, f.name) == getattr(defaults, f.name)
    ]
    assert unmapped == []


def test_parameter_kinds_and_reference_names_are_those_of_the_stored_runs() -> None:
    # Derived from each field's Param: these sets are the fingerprint's inputs and the keys
    # of the authors' YAML files that must keep working.
    from rebase_cli.runner.config import OPERATIONAL_KEYS, REFERENCE_ALIASES

    assert sorted(OPERATIONAL_KEYS) == [
        "concurrency", "limit", "max_in_flight", "max_retries", "policy_params",
        "request_timeout", "reward_params", "server_wait",
    ]  # fmt: skip
    assert REFERENCE_ALIASES == {
        "width": "budget", "softmax_temperature": "balance_temperature",
        "num_threads": "concurrency", "num_samples": "budget", "beam_width": "budget",
        "expansion": "beam_expansion", "max_new_tokens": "max_step_tokens",
        "prompt_template": "template",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("values", "digest"),
    [
        ({"budget": 16}, "93cd2c02e9b167df6dd2071bc577fe5ea69f7927cb0cb54cd9d46f7c43ba15c6"),
        (
            {"budget": 16, "method": "particle", "particle_temperature": 0.5},
            "92c8fffd2ce6435390dec58f0fcbaf2d72d916e26f5d6d59f688586d58943b47",
        ),
        (
            {"budget": 8, "method": "sample", "sample_mode": "whole", "concurrency": 3},
            "45c9b1c3af173522e5fdbeac8ad6e056317698acab687ae948e0ec3a630e3ff6",
        ),
        (
            {"budget": 4, "profile": "reference"},
            "db1d941546df70470fca628c1bd31a7046bcfc9b24202297db87eaaac5dfa9b8",
        ),
        (
            {"budget": 4, "select_method": "softmax_with_truncate", "truncate_ratio": 0.5,
             "share_rounding": "round", "reward_protocol": "classify", "samples_per_request": 1},
            "8410b0a53420b2610a8a368aa5ff8e581a5b07ffd76c97c938bf82d97688431c",
        ),
    ],
)  # fmt: skip
def test_fingerprints_of_stored_runs_do_not_move(values: dict, digest: str) -> None:
    # Digests of runs made before the parameters were defined once: --resume must find them.
    assert fingerprint(build_config(values), "sha", "tpl") == digest


def test_every_flagged_parameter_is_a_search_option_with_the_models_help_and_panel() -> None:
    import typer

    from rebase_cli.cli.search_cmd import search
    from rebase_cli.runner.config import PARAMETERS

    app = typer.Typer()
    app.command()(search)
    options = {p.name: p for p in typer.main.get_command(app).params}
    for name, param in PARAMETERS.items():
        if param.panel is None:
            assert name not in options
            continue
        option = options[name]
        assert option.opts == [f"--{name.replace('_', '-')}"]
        assert option.help.startswith(param.help) and option.rich_help_panel == param.panel


def test_config_flags_give_the_command_the_values_given_by_key() -> None:
    import typer
    from typer.testing import CliRunner

    received: dict = {}

    @config_flags
    def command(budget: Flag = None, method: Flag = None, *, overrides: dict) -> None:
        received.update(overrides=overrides, budget=budget, method=method)

    app = typer.Typer()
    app.command()(command)
    args = ["--budget", "4,8", "--seed", "3", "--max-tokens", "99", "--tie-order", "later-first"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    # The sweep axes stay text for the command to split; the rest arrive typed, by key, and
    # only when given (a flag left out must not hide the config file's value).
    assert received == {
        "overrides": {"seed": 3, "max_tokens": 99, "tie_order": "later-first"},
        "budget": "4,8",
        "method": None,
    }


def test_check_takes_the_selected_config_flags_with_the_models_help() -> None:
    import typer

    from rebase_cli.cli.check_cmd import CHECKED_KEYS, check
    from rebase_cli.runner.config import PARAMETERS

    app = typer.Typer()
    app.command()(check)
    options = {p.name: p for p in typer.main.get_command(app).params}
    for name, param in PARAMETERS.items():
        if name not in CHECKED_KEYS:
            assert name not in options  # e.g. --budget: a check searches nothing
            continue
        option = options[name]
        assert option.opts == [f"--{name.replace('_', '-')}"]
        assert option.help.startswith(param.help) and option.rich_help_panel == param.panel
        default = SearchConfig.model_fields[name].default
        assert f"[default: {default}]" in option.help


def test_config_flags_with_fields_give_only_those_by_key() -> None:
    import typer
    from typer.testing import CliRunner

    received: dict = {}

    @config_flags(fields=("seed", "max_tokens"))
    def command(verbose: bool = False, *, overrides: dict) -> None:
        received.update(overrides=overrides, verbose=verbose)

    app = typer.Typer()
    app.command()(command)
    result = CliRunner().invoke(app, ["--seed", "3", "--verbose"])
    assert result.exit_code == 0, result.output
    assert received == {"overrides": {"seed": 3}, "verbose": True}
    refused = CliRunner().invoke(app, ["--budget", "4"])
    assert refused.exit_code != 0 and "No such option" in refused.output


@pytest.mark.parametrize(
    ("flag", "capacity", "budget", "expected"),
    [
        (None, None, 16, 32),  # the server does not say: the long-standing default
        (None, 256, 16, 64),  # a server running 256 at once, budget 16: 4 x 256 / 16
        (None, 2048, 16, 512),  # a node of 8 such replicas behind the router
        (None, 64, 64, 32),  # never fewer than the default
        (None, 10**6, 1, 4096),  # nor more than the cap
        (8, 2048, 16, 8),  # --concurrency given: kept as it is
    ],
)
def test_an_auto_concurrency_is_sized_from_the_policy_servers_capacity(
    flag, capacity, budget, expected
):
    config = build_config({"budget": budget, "concurrency": flag})
    assert config.problems_at_once(capacity) == expected


def test_whole_solution_sampling_queues_less_behind_a_server() -> None:
    """Its requests hold their slots for whole paths: 2 x the capacity, not 4 x, so a queued
    request does not wait out --request-timeout."""
    whole = build_config({"method": "sample", "sample_mode": "whole", "budget": 16})
    steps = build_config({"method": "sample", "budget": 16})
    assert (whole.problems_at_once(1024), steps.problems_at_once(1024)) == (128, 256)


@pytest.mark.parametrize(
    ("info", "capacity"),
    [
        ({"version": "0.5.23", "internal_states": [
            {"effective_max_running_requests_per_dp": 256},
            {"effective_max_running_requests_per_dp": 128},
        ]}, 384),  # one state per data-parallel rank
        ({"version": "0.5.23", "max_running_requests": 100, "dp_size": 2}, 200),
        ({"version": "0.5.23", "internal_states": [{"effective_max_running_requests_per_dp": None}],
          "max_running_requests": 48}, 48),
        ({"version": "0.5.23", "max_running_requests": None}, None),
        ({"version": "0.5.23", "max_running_requests": True}, None),
        ("not a dict", None),
    ],
)  # fmt: skip
def test_sglang_server_info_gives_the_requests_it_runs_at_once(info, capacity):
    assert capacity_from_server_info(info) == capacity
