"""The query pipeline: rewrite, retrieve, rerank, generate."""
