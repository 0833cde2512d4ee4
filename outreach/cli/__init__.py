"""The command line: parse arguments, call the library, print. No business logic here."""

from outreach.cli.app import cli, main

__all__ = ["cli", "main"]
