"""`python -m mini.testing.sim`: run the simulated provider (see `--help`)."""

from __future__ import annotations

from mini.testing.sim.app import main

main()
