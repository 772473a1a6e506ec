"""The authors' config file (thu-wyz/rebase, hype-parameters/rebase.yaml) runs verbatim; every
key of theirs is mapped or accepted with a notice; unknown keys are reported all at once."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest

from rebase_cli.errors import ConfigError
from rebase_cli.runner.config import build_config, load_config_file
from tests.search_helpers import rebase

FIXTURE = Path(__file__).parent / "fixtures" / "authors_rebase.yaml"
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "authors-rebase.yaml"
# The file as the authors publish it, byte for byte.
AUTHORS_YAML = """\
temperature: 1.0 # sample temperature
max_step_tokens: 256
max_tokens: 1024
select_method: "softmax"
num_threads: 8 # threads in SGLang
softmax_temperature: 0.2 # temperature in the softmax
reward_model_type: "llemma"
policy_model_type: "llemma"
store_path: ./exp_results/rebase_16/ # dir for storing the results
width: 16 # sample N=16 solutions
"""


def test_fixture_and_example_are_the_authors_file_verbatim() -> None:
    assert FIXTURE.read_text(encoding="utf-8") == AUTHORS_YAML
    assert EXAMPLE.read_text(encoding="utf-8") == AUTHORS_YAML


def test_authors_yaml_runs_verbatim(tmp_path: Path) -> None:
    db = tmp_path / "authors.db"
    result = rebase(
        db, "search", "--config", str(FIXTURE), "--policy", "sim", "--reward", "sim",
        "--dataset", "gsm8k", "--limit", "3", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["done"], summary["failed"]) == (3, 0)
    assert "`store_path` is not used" in result.stderr
    assert "rebase export latest --format reference" in result.stderr
    with sqlite3.connect(db) as connection:
        (config_json,) = connection.execute("SELECT config_json FROM run").fetchone()
    config = json.loads(config_json)
    assert config["budget"] == 16
    assert config["balance_temperature"] == 0.2
    assert config["concurrency"] == 8  # num_threads: problems searched at once
    assert (config["max_step_tokens"], config["max_tokens"], config["temperature"]) == (
        256,
        1024,
        1.0,
    )
    assert (config["select_method"], config["truncate_ratio"]) == ("softmax", None)
    assert config["template"] == "llemma-metamath"  # policy_model_type llemma, default profile
    assert config["profile"] == "default"


def test_the_exported_answer_file_the_notice_names_is_written(tmp_path: Path) -> None:
    db = tmp_path / "export.db"
    args = ["search", "--config", str(FIXTURE), "--policy", "sim", "--reward", "sim"]
    assert rebase(db, *args, "--dataset", "gsm8k", "--limit", "1").returncode == 0
    out = tmp_path / "answers.json"
    result = rebase(db, "export", "latest", "--format", "reference", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert out.stat().st_size > 0


def test_model_types_follow_the_profile() -> None:
    values = load_config_file(FIXTURE)
    assert build_config(values).template == "llemma-metamath"
    reference = build_config({**values, "profile": "reference"})
    assert reference.template == "authors-llemma"
    assert (reference.tie_order, reference.child_order) == ("later-first", "best-first")
    assert (reference.path_token_rule, reference.leaf_rule) == ("step", "answer-phrase")
    # an explicit key beats the profile's default for that one switch
    mixed = build_config({**values, "profile": "reference", "tie_order": "earlier-first"})
    assert (mixed.tie_order, mixed.child_order) == ("earlier-first", "best-first")


def test_softmax_with_truncate_from_the_authors_keys(tmp_path: Path) -> None:
    path = tmp_path / "truncate.yaml"
    path.write_text(
        AUTHORS_YAML.replace('"softmax"', '"softmax_with_truncate"') + "truncate_ratio: 0.5\n"
    )
    config = build_config(load_config_file(path))
    assert (config.select_method, config.truncate_ratio) == ("softmax_with_truncate", 0.5)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"select_method": "softmax_with_truncate"}, "needs truncate_ratio"),
        ({"truncate_ratio": 0.5}, "only used by select_method softmax_with_truncate"),
        ({"policy_model_type": "gpt"}, "unknown policy_model_type 'gpt'"),
        ({"profile": "paper"}, "unknown profile 'paper'"),
        ({"select_method": "greedy"}, "invalid select_method='greedy'"),
        ({"method": "beam", "share_rounding": "round"}, "not beam's"),
    ],
)
def test_bad_switches_are_one_line_errors(values: dict, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build_config({"budget": 4, **values})
    assert message in caught.value.one_line()


def test_unknown_keys_are_all_reported_at_once_with_suggestions_that_work(
    tmp_path: Path,
) -> None:
    path = tmp_path / "typos.yaml"
    path.write_text(
        AUTHORS_YAML.replace("select_method", "selct_method")
        .replace("num_threads", "num_thread")
        .replace("softmax_temperature", "softmax_temprature")
        + "frobnicate: 3\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config_file(path)
    line = caught.value.one_line()
    assert "\n" not in line
    suggestions = dict(re.findall(r"'(\w+)' \(did you mean '(\w+)'\?\)", line))
    assert suggestions == {
        "selct_method": "select_method",
        "num_thread": "num_threads",
        "softmax_temprature": "softmax_temperature",
    }
    assert "'frobnicate'" in line
    # Following every suggestion (and dropping the key that has none) gives a working config.
    fixed = path.read_text().replace("frobnicate: 3\n", "")
    for typo, suggestion in suggestions.items():
        fixed = fixed.replace(typo, suggestion)
    path.write_text(fixed)
    assert build_config(load_config_file(path)).budget == 16


def test_search_reports_all_unknown_keys_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("width: 4\nselct_method: softmax\nnum_thread: 2\n")
    result = rebase(tmp_path / "x.db", "search", "--config", str(path), "--dataset", "gsm8k",
                    "--policy", "sim", "--reward", "sim")  # fmt: skip
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "unknown config keys 'selct_method'" in result.stderr
    assert "'num_thread' (did you mean 'num_threads'?)" in result.stderr


def test_switches_at_their_default_leave_older_fingerprints_alone() -> None:
    from rebase_cli.runner.config import fingerprint, semantic_dict

    plain = build_config({"budget": 4})
    assert not {"profile", "tie_order", "leaf_rule", "select_method"} & set(semantic_dict(plain))
    base = fingerprint(plain, "d" * 64, "t")
    for switch in ({"tie_order": "later-first"}, {"share_rounding": "round"},
                   {"profile": "reference", "template": "llemma-metamath"}):  # fmt: skip
        assert fingerprint(build_config({"budget": 4, **switch}), "d" * 64, "t") != base
