"""Evaluation of generated music: metrics (each one tested function), reports, the model registry."""
