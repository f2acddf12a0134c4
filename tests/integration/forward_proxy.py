"""A forward HTTP proxy on 127.0.0.1, as Squid or a corporate egress proxy behaves (RFC 9110
§9.3.6 CONNECT, §7.1 absolute-form requests; RFC 9110 §11.7.1 Proxy-Authorization):

- ``CONNECT host:port``: 200, then bytes both ways (TLS to the recipient inside);
- ``POST http://host:port/path``: the request passed on in origin form, without the
  proxy's own headers, and the answer passed back;
- with ``credentials``: 407 with ``Proxy-Authenticate`` unless ``Proxy-Authorization``
  carries them (Basic);
- a recipient it cannot reach: 502;
- a host its rules refuse (``refused_hosts``): 403;
- its own error pages marked as Squid marks them (``X-Squid-Error: ERR_ACCESS_DENIED 0``,
  ``ERR_CONNECT_FAIL 111``), the recipient's answers passed on as they are.

It records what it was asked, to show which requests went through it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Asked:
    method: str
    target: str  # host:port for CONNECT, the absolute URL otherwise
    authorization: str | None


@dataclass
class ForwardProxy:
    credentials: tuple[str, str] | None = None
    refused_hosts: frozenset[str] = frozenset()
    asked: list[Asked] = field(default_factory=list)
    _server: asyncio.Server | None = None

    async def start(self) -> ForwardProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    def url(self, user_info: str = "", host: str = "127.0.0.1") -> str:
        return f"http://{user_info}{host}:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._one(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        request_line, *header_lines = head.split("\r\n")[:-2]
        method, target, version = request_line.split(" ")
        headers = [tuple(line.split(":", 1)) for line in header_lines]
        named = {name.strip().lower(): value.strip() for name, value in headers}
        authorization = named.get("proxy-authorization")
        self.asked.append(Asked(method, target, authorization))
        if self.credentials is not None and authorization != _basic(*self.credentials):
            writer.write(
                b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                b'Proxy-Authenticate: Basic realm="proxy"\r\nContent-Length: 0\r\n'
                b"Connection: close\r\n\r\n"
            )
            await writer.drain()
            return
        if (urlsplit(f"//{target}" if method == "CONNECT" else target).hostname or "") in (
            self.refused_hosts
        ):
            writer.write(
                b"HTTP/1.1 403 Forbidden\r\nX-Squid-Error: ERR_ACCESS_DENIED 0\r\n"
                b"Content-Length: 0\r\n\r\n"
            )
            await writer.drain()
            return
        if method == "CONNECT":
            host, port = target.rsplit(":", 1)
            upstream = await self._connect(host, int(port), writer)
            if upstream is None:
                return
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
            await _both_ways(reader, writer, *upstream)
            return
        url = urlsplit(target)
        body = await reader.readexactly(int(named.get("content-length", "0")))
        upstream = await self._connect(url.hostname or "", url.port or 80, writer)
        if upstream is None:
            return
        up_reader, up_writer = upstream
        path = url.path + (f"?{url.query}" if url.query else "")
        kept = [
            f"{name}:{value}"
            for name, value in headers
            if name.strip().lower() not in ("proxy-authorization", "proxy-connection", "connection")
        ]
        forwarded = [f"{method} {path} {version}", *kept, "Connection: close", "", ""]
        up_writer.write("\r\n".join(forwarded).encode("latin-1") + body)
        await up_writer.drain()
        while chunk := await up_reader.read(65536):
            writer.write(chunk)
            await writer.drain()
        up_writer.close()

    async def _connect(
        self, host: str, port: int, writer: asyncio.StreamWriter
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        try:
            return await asyncio.open_connection(host, port)
        except OSError:
            writer.write(
                b"HTTP/1.1 502 Bad Gateway\r\nX-Squid-Error: ERR_CONNECT_FAIL 111\r\n"
                b"Content-Length: 0\r\n\r\n"
            )
            await writer.drain()
            return None


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


async def _both_ways(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    up_reader: asyncio.StreamReader,
    up_writer: asyncio.StreamWriter,
) -> None:
    async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while chunk := await source.read(65536):
                sink.write(chunk)
                await sink.drain()
        sink.close()

    await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
