"""The ``incidents`` command."""

from __future__ import annotations

import inspect
import json
import os
import socket
import sys
from dataclasses import replace
from typing import Annotated

import typer
from sqlalchemy.exc import SQLAlchemyError

from incidents import __version__
from incidents.artifacts.ports import ObjectStoreError
from incidents.cli import (
    admin,
    correlation,
    identity,
    incident,
    retention,
    sync,
    timeline,
    worker,
)
from incidents.cli.client import ApiClient, CliError
from incidents.cli.credentials import Credentials, save_credentials
from incidents.config import (
    DEFAULT_DATABASE_URL,
    ConfigError,
    mask_url_password,
)

app = typer.Typer(
    help="Incidents: incident management on an append-only CloudEvents timeline.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(incident.app, name="incident")
app.add_typer(timeline.app, name="timeline")
app.add_typer(admin.app, name="admin")
app.add_typer(correlation.app, name="correlation")
app.add_typer(retention.app, name="retention")
app.add_typer(sync.app, name="sync")
app.add_typer(identity.user_app, name="user")
app.add_typer(identity.group_app, name="group")
app.command("worker")(worker.worker)
config_app = typer.Typer(help="Inspect the configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on")] = None,
    workers: Annotated[
        int | None,
        typer.Option(help="Server processes sharing the port (default IM_WORKERS, 1)", min=1),
    ] = None,
) -> None:
    """Run the HTTP API (storage from IM_DATABASE_URL; SQLite ./incidents.db by default).

    Several workers use several cores: each is a full server with its own writer,
    and the database orders their appends.
    """
    import uvicorn
    import uvicorn.supervisors

    from incidents.app import (
        build_container,
        create_app,
        load_configuration,
        open_database,
        tune_runtime,
    )
    from incidents.cli.listen import PerProcessSockets, can_reuse_port, check_port

    settings = load_configuration()
    processes = workers or settings.workers
    bind_host, bind_port = host or settings.host, port or settings.port
    # The instance is known by where it listens (its bus consumer is named after it);
    # worker processes read their settings from the environment.
    settings = replace(settings, host=bind_host, port=bind_port)
    os.environ["IM_HOST"], os.environ["IM_PORT"] = bind_host, str(bind_port)
    typer.echo(
        f"incidents {__version__}: {mask_url_password(settings.database_url)} "
        f"on http://{bind_host}:{bind_port} ({processes} worker{'s' if processes > 1 else ''})",
        err=True,
    )
    common = {
        "host": bind_host,
        "port": bind_port,
        "log_level": settings.log_level,
        "access_log": False,
        # Live streams never end on their own: give them this long to finish, then close
        # them, so a shutdown does not wait forever on open SSE or WebSocket clients.
        "timeout_graceful_shutdown": 5,
    }
    if processes == 1:
        app = create_app(build_container(settings))
        tune_runtime()
        uvicorn.run(app, **common)  # type: ignore[arg-type]
        return
    # Migrate once here, so the workers do not race each other to do it.
    open_database(settings).engine.dispose()
    config = uvicorn.Config(
        "incidents.app:create_worker_app",
        factory=True,
        workers=processes,
        **common,  # type: ignore[arg-type]
    )
    sockets: list[socket.socket]
    if can_reuse_port() and bind_port != 0:
        # A socket per process: the kernel spreads connections over the processes.
        try:
            check_port(bind_host, bind_port)
        except OSError as exc:
            typer.echo(f"error: cannot listen on {bind_host}:{bind_port}: {exc}", err=True)
            raise typer.Exit(1) from None
        sockets = PerProcessSockets(bind_host, bind_port, config.backlog)
    else:
        sockets = [config.bind_socket()]
    supervisor = uvicorn.supervisors.Multiprocess
    if "target" in inspect.signature(supervisor).parameters:
        # Older uvicorn releases take the worker's entry point as well.
        supervisor(config, target=uvicorn.Server(config).run, sockets=sockets).run()  # type: ignore[call-arg]
    else:
        supervisor(config, sockets=sockets).run()


@app.command()
def login(
    server: Annotated[str, typer.Option(help="The server URL, e.g. http://127.0.0.1:8080")],
    token: Annotated[str, typer.Option(help="An API token (incidents admin token create)")],
) -> None:
    """Check a server and token, then save them for later commands."""
    with ApiClient(Credentials(server.rstrip("/"), token)) as client:
        who = client.get_json("/api/v1/whoami")
    path = save_credentials(server, token)
    typer.echo(f"logged in to {server} as {who['subject']} (saved in {path})")


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


@config_app.command("show")
def config_show() -> None:
    """Print the effective configuration, with secrets masked."""
    from incidents.app import load_configuration

    typer.echo(json.dumps(load_configuration().masked(), indent=2, default=str))


def main() -> None:
    """Entry point: run the CLI, turning expected failures into one line and an exit code."""
    try:
        app()
    except CliError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except ConfigError as exc:
        typer.echo(f"error: configuration: {exc}", err=True)
        sys.exit(1)
    except ObjectStoreError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except SQLAlchemyError as exc:
        # Local admin commands talk to the database directly; say which one failed
        # without echoing credentials or a traceback.
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        url = mask_url_password(os.environ.get("IM_DATABASE_URL", DEFAULT_DATABASE_URL))
        typer.echo(f"error: database {url}: {reason}", err=True)
        sys.exit(1)
