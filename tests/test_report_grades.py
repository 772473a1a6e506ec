"""The grade cache (store/grades.py): verdicts keyed by grader version, dataset and pair."""

from __future__ import annotations

from rebase_cli.store.database import Database
from rebase_cli.store.grades import CachedGrade, count_grades, get_grades, put_grades


def test_round_trip_and_keys(db: Database) -> None:
    written = put_grades(
        db, "v1", "gsm8k", [("18", "18", True, None), ("17", "18", False, "numbers differ")]
    )
    assert written == 2
    pairs = [("18", "18"), ("17", "18"), ("16", "18")]
    assert get_grades(db, "v1", "gsm8k", pairs) == {
        ("18", "18"): CachedGrade(True, None),
        ("17", "18"): CachedGrade(False, "numbers differ"),
    }
    # Another grader version or dataset sees none of them.
    assert get_grades(db, "v2", "gsm8k", pairs) == {}
    assert get_grades(db, "v1", "math500", pairs) == {}


def test_storing_a_pair_twice_keeps_the_first_verdict(db: Database) -> None:
    put_grades(db, "v1", "gsm8k", [("18", "18", True, None)])
    assert put_grades(db, "v1", "gsm8k", [("18", "18", False, "other")]) == 0
    assert get_grades(db, "v1", "gsm8k", [("18", "18")])[("18", "18")].correct is True
    assert count_grades(db) == 1 and count_grades(db, "v1") == 1 and count_grades(db, "v0") == 0


def test_empty_put_is_a_no_op(db: Database) -> None:
    assert put_grades(db, "v1", "gsm8k", []) == 0
