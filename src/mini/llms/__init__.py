"""Chat model providers and the offline extractive generator."""
