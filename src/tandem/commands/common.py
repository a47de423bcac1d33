"""What every subcommand shares: settings construction and failing with a clear message."""

from __future__ import annotations

from typing import Any, TypeVar

import typer
from pydantic import ValidationError
from pydantic_settings import BaseSettings
from rich.console import Console

# soft_wrap: messages with long paths stay on one line when stderr is not a terminal.
console = Console(stderr=True, soft_wrap=True)
SettingsT = TypeVar("SettingsT", bound=BaseSettings)


def fail(message: str, code: int = 2) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


def build_settings(cls: type[SettingsT], **overrides: object) -> SettingsT:
    """Settings from the environment, with the command line's non-None options on top."""
    given: dict[str, Any] = {k: v for k, v in overrides.items() if v is not None}
    try:
        return cls(**given)
    except ValidationError as exc:
        raise fail(f"invalid settings:\n{exc}") from exc
