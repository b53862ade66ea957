"""The ``microexpr serve`` command function. Only typer is imported here (``cli.py``
registers this module's function at import time); FastAPI, uvicorn and the analysis code are
imported when the command runs."""

from __future__ import annotations

from typing import Annotated

import typer


def serve_command(
    host: Annotated[
        str,
        typer.Option(
            help="Address to bind. Loopback by default; anything else is reachable "
            "from the network, with no login."
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    models: Annotated[
        str | None,
        typer.Option(help="Folder searched for model bundles (bundle.json) the page offers."),
    ] = None,
    max_upload_mb: Annotated[float, typer.Option(help="Largest accepted video, MB.")] = 200.0,
    max_duration_s: Annotated[float, typer.Option(help="Longest accepted video, seconds.")] = 600.0,
    keep_minutes: Annotated[
        float, typer.Option(help="Minutes a finished analysis and its files are kept.")
    ] = 60.0,
    workers: Annotated[int, typer.Option(help="Analyses run at once (one per worker).")] = 1,
    queue: Annotated[
        int, typer.Option(help="Analyses that may wait for a worker; more get HTTP 429.")
    ] = 8,
    overrides: Annotated[
        list[str] | None,
        typer.Option("--set", help="Analysis setting analyze.KEY=VALUE (docs/analyze.md)."),
    ] = None,
    device: Annotated[str, typer.Option(help="Where a model runs: cpu, cuda, cuda:N.")] = "cpu",
) -> None:
    """A web page and JSON API over `analyze`: upload videos, see the timeline, the events
    table and each event's apex and flow picture, download events.csv and the whole result.

    Uploads are checked (size, duration, decoded as video) before they are queued, kept in a
    private temporary folder and deleted --keep-minutes after their analysis ends.
    docs/serve.md has the API (also at /docs while it runs).
    """
    from pathlib import Path

    import uvicorn

    from microexpr.analyze import settings_from
    from microexpr.serve.app import create_app
    from microexpr.serve.settings import MB, ServeSettings, is_loopback

    settings = ServeSettings(
        models_dir=Path(models) if models else None,
        max_upload_bytes=int(max_upload_mb * MB),
        max_duration_s=max_duration_s,
        keep_s=keep_minutes * 60,
        workers=workers,
        queue_size=queue,
        analyze=settings_from(overrides),
        device=device,
    )
    app = create_app(settings)
    if not is_loopback(host):
        typer.echo(
            f"warning: listening on {host}: anyone who can reach it can upload videos "
            "(there is no login); use --host 127.0.0.1 to keep it to this machine",
            err=True,
        )
    typer.echo(f"microexpr serve: http://{host}:{port}/ (API docs at /docs)", err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
