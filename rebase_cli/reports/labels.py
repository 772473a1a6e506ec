"""Warnings every output format must show."""

SIMULATED_LABEL = "SIMULATED — synthetic accuracy"
APPROXIMATE_TOKENS_LABEL = (
    "APPROXIMATE TOKEN COUNTS — the policy server returned no per-choice token ids; "
    "summed usage was split over choices by text length"
)
