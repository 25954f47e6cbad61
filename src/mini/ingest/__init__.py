"""Ingestion: files to documents to chunks to stored vectors."""
