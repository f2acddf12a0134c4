"""The ``courier`` commands: the worker, the embedded broker, the demo, tail, check and
trying one destination. The only package that talks to a person at a terminal."""

from streams.cli.main import main

__all__ = ["main"]
