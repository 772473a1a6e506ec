"""Search configuration: reference keys, validation errors, fingerprints, differing keys."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rebase_cli.errors import ConfigError
from rebase_cli.runner.config import (
    KNOWN_KEYS,
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
    unknown = [k for k in raw if k not in KNOWN_KEYS and k not in {
        "width", "softmax_temperature", "num_samples", "beam_width", "expansion",
        "max_new_tokens", "prompt_template"}]  # fmt: skip
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
