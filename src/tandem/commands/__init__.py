"""Subcommands of the `tandem` CLI, grouped by what they operate."""
