"""Test support shipped with the package: the simulated provider server and fakes."""
