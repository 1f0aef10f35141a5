"""Evaluation of rules: offline tasks, one training recipe for every rule, fair learning-rate
tuning, fitness relative to tuned AdamW, and statistics.

    from evaluators.train import run_training
    result = run_training("digits_mlp", "builtin:adamw", lr=3e-3, seed=0, preset="tiny")
"""
