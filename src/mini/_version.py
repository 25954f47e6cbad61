"""The package version, in a module of its own so that importing it never imports the rest of `mini`."""

__version__ = "0.2.0.dev0"
