"""`ember serve`: the HTTP API (FastAPI on uvicorn) over the Selector, registered through the `ember.commands` entry point."""
from __future__ import annotations

import argparse
import functools
import logging
from typing import TYPE_CHECKING

from ember_core.cli import LOG_FORMAT
from ember_core.options import add_options, values_of
from ember_server.settings import ServeSettings

if TYPE_CHECKING:
    from fastapi import FastAPI

    from ember_core.selector import Selector


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Register `serve` on the `ember` command line."""
    serve = commands.add_parser("serve", help="answer selections over HTTP (POST /select; docs at /docs)")
    add_options(serve, ServeSettings)
    serve.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn  # only here: `ember robots list` builds this parser too and should start fast

    settings = ServeSettings(**values_of(args, ServeSettings))
    settings.to_environment()
    uvicorn.run("ember_server.cli:app_from_environment", factory=True, host=settings.host, port=settings.port,
                workers=settings.workers, log_level="info")
    return 0


def app_from_environment() -> FastAPI:
    """The app of one server process, from the settings `ember serve` left in the environment (uvicorn's factory)."""
    from ember_server.app import create_app

    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)  # worker processes start with no logging set up
    return create_app(functools.partial(load_selector, ServeSettings.from_environment()))


def load_selector(settings: ServeSettings) -> Selector:
    """The Selector `settings` describe."""
    from ember_core.selector import Selector  # torch loads here, on the host's thread: /health answers meanwhile

    return Selector(settings.model, robots_file=settings.robots, device=settings.device, backend=settings.backend)
