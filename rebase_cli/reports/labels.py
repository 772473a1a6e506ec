"""Warnings every output format must show."""

SIMULATED_LABEL = "SIMULATED — synthetic accuracy"
