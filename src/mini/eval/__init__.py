"""Evaluation: retrieval metrics (pure), BEIR-format retrieval benchmarks."""
