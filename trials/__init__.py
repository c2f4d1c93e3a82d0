"""Trials: scoring each supplier against ground truth (trials.metrics, trials.intervals)."""
