"""``incidents worker``: run only the outbox relay, for separate deployment."""

from __future__ import annotations

import signal
import threading
from types import FrameType

import typer

from incidents import __version__
from incidents.config import mask_url_password


def worker() -> None:
    """Deliver the outbox (IM_OUTBOX_*) to its destinations until interrupted.

    Runs beside or instead of the relays inside `incidents serve` (set
    IM_OUTBOX_RELAY=false there to leave delivery to workers). Several workers on one
    PostgreSQL database share the work without delivering a row twice.
    """
    from incidents.app import build_worker, destination_names, load_configuration, parse_sections

    settings = load_configuration()
    destinations = destination_names(settings, parse_sections(settings))
    if not destinations:
        typer.echo("error: IM_OUTBOX_DESTINATIONS is empty: nothing to deliver", err=True)
        raise typer.Exit(1)
    running = build_worker(settings)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    where = mask_url_password(settings.nats_url) if settings.nats_url else "the in-process bus"
    typer.echo(
        f"incidents {__version__} worker: {mask_url_password(settings.database_url)} -> "
        f"{', '.join(destinations)} ({where})",
        err=True,
    )
    running.start()
    try:
        stop.wait()
    finally:
        running.close()
    typer.echo("worker stopped", err=True)
