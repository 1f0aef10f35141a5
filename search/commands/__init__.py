"""Subcommands of the optforge CLI, one module each (registry: search.cli.COMMANDS)."""
