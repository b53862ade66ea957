"""The ``microexpr`` command. Each command is a thin shell over a library function."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Facial micro-expression recognition toolkit.", no_args_is_help=True)
models_app = typer.Typer(help="Registered models.", no_args_is_help=True)
datasets_app = typer.Typer(help="Database readers.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(datasets_app, name="datasets")
console = Console()


@models_app.command("list")
def models_list() -> None:
    """List registered models with the input each one takes."""
    from microexpr import models

    table = Table("name", "family", "input", "size", "channels")
    for name in models.list_models():
        entry = models.info(name)
        table.add_row(
            name, entry.family, entry.input_kind, str(entry.input_size), str(entry.in_chans)
        )
    console.print(table)


@datasets_app.command("list")
def datasets_list() -> None:
    """List registered database readers."""
    from microexpr import datasets

    table = Table("name", "description")
    for name, description in datasets.names().items():
        table.add_row(name, description)
    console.print(table)
