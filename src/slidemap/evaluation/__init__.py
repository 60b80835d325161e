"""Evaluation: pixel metrics, the rule-based baseline, prediction maps."""
