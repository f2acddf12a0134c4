"""TLS in front of a plain broker, on 127.0.0.1: what a managed Kafka's listener looks like
to a client. Tansu 0.6's own TLS did not complete a handshake with aiokafka here, so the
broker advertises this proxy's port and every connection (bootstrap and the broker's own
address from metadata) goes through TLS, optionally with client certificates required."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def make_pki(directory: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all from that CA;
    and a second CA that signed nothing here (for a client that trusts the wrong one)."""
    now = datetime.datetime.now(datetime.UTC)

    def certificate(
        subject: str,
        key: ec.EllipticCurvePrivateKey,
        issuer: x509.Name | None,
        issuer_key: ec.EllipticCurvePrivateKey,
        ca: bool,
        ip: bool = False,
    ) -> x509.Certificate:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(issuer or name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if ip:
            import ipaddress

            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
        return builder.sign(issuer_key, hashes.SHA256())

    files: dict[str, Path] = {}
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = certificate("test CA", ca_key, None, ca_key, ca=True)
    for role, ip in (("server", True), ("client", False)):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = certificate(f"test {role}", key, ca.subject, ca_key, ca=False, ip=ip)
        files[f"{role}_cert"] = directory / f"{role}.pem"
        files[f"{role}_key"] = directory / f"{role}-key.pem"
        files[f"{role}_cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        files[f"{role}_key"].write_bytes(_pem_key(key))
    files["ca"] = directory / "ca.pem"
    files["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    other_key = ec.generate_private_key(ec.SECP256R1())
    other = certificate("another CA", other_key, None, other_key, ca=True)
    files["other_ca"] = directory / "other-ca.pem"
    files["other_ca"].write_bytes(other.public_bytes(serialization.Encoding.PEM))
    return files


class TlsProxy:
    """Listens with TLS on ``port``, forwards the bytes to ``127.0.0.1:upstream``."""

    def __init__(self, port: int, upstream: int, pki: dict[str, Path], client_certs: bool) -> None:
        self.port = port
        self.upstream = upstream
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(pki["server_cert"], pki["server_key"])
        if client_certs:
            self.context.verify_mode = ssl.CERT_REQUIRED
            self.context.load_verify_locations(pki["ca"])
        self.handshakes = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> TlsProxy:
        self._server = await asyncio.start_server(
            self._serve, "127.0.0.1", self.port, ssl=self.context
        )
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.handshakes += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            with contextlib.suppress(ConnectionError, OSError, RuntimeError):
                sink.close()

        for task in (
            asyncio.ensure_future(pipe(reader, up_writer)),
            asyncio.ensure_future(pipe(up_reader, writer)),
        ):
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
