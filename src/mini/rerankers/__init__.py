"""Rerankers: reorder retrieved candidates before generation."""
