"""Embedding backends behind the `EmbeddingModel` facade."""
