"""`python -m mini`: the `mini` command, for environments where the console script is not on PATH."""

from __future__ import annotations

from mini.cli.main import main

if __name__ == "__main__":
    main()
