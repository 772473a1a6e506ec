"""Default knobs of a report, in a module without heavy imports so that the CLI can show them
as option defaults without loading numpy. The modules that use them import them from here."""

from __future__ import annotations

# Draws averaged per subsampled budget of a `sample` run (see `accuracy`).
DEFAULT_DRAWS = 10
# What a figure or comparison table shows unless `--rules` asks for others: the paper's
# headline rule, the model-free baseline and best-of-N. pass@N is an oracle, shown apart.
DEFAULT_RULES = ("weighted_last", "majority", "best_of_n_last")
# Bootstrap resamples per interval and the seed of their draws (see `statistics`).
DEFAULT_RESAMPLES = 2000
DEFAULT_STATS_SEED = 0
