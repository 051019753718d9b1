"""The `bank` command line (the entry point `streams.cli:main`)."""
from .main import main

__all__ = ["main"]
