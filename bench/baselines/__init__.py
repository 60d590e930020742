"""Naive baselines: what a user would write in about 50 lines, measured beside the gateway."""
