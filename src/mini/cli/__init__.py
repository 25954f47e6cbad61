"""The `mini` command."""
