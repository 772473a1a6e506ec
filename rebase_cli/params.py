"""The named choices of a search, defined once: the search methods and the reward protocols.

The config model (`runner.config.SearchConfig`), the command line (`rebase search`, `rebase
serve reward`), the strategy registry (`search.STRATEGIES`), the reward adapters
(`clients.reward`) and the serve launchers all take their members from here, so a method or a
protocol added here is added everywhere or fails to import. Nothing here imports anything of
the project: every layer may use it.
"""

from __future__ import annotations

import sys
from enum import Enum

if sys.version_info >= (3, 11):
    from enum import StrEnum
else:  # Python 3.10 has no StrEnum; this is its behaviour for members with string values

    class StrEnum(str, Enum):
        def __str__(self) -> str:
            return str(self.value)


class Method(StrEnum):
    """A search method: REBASE, or one of the baselines it is compared with."""

    rebase = "rebase"
    sample = "sample"
    beam = "beam"
    dvts = "dvts"
    particle = "particle"


class RewardProtocol(StrEnum):
    """How the reward server is asked for a step's score (one adapter each, DESIGN §5)."""

    score = "score"
    classify = "classify"
    pooling = "pooling"


def listed(choices: type[Enum], last: str = "or") -> str:
    """'a, b or c': the members of `choices` for a help text or an error message."""
    names = [str(member.value) for member in choices]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} {last} {names[-1]}"
