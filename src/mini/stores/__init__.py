"""Vector store backends behind the `VectorStore` facade."""
