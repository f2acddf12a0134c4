"""Recipients on 127.0.0.1 that answer over HTTPS: one with a self-signed certificate for
``localhost`` (what an untrusted certificate looks like to the worker), a private CA for
mutual TLS, and a server that ends a refused handshake with its TLS alert."""

from __future__ import annotations

import datetime
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def self_signed(directory: Path) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    (directory / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(directory / "cert.pem", directory / "key.pem")
    return context


@pytest.fixture
async def https_url(tmp_path: Path) -> AsyncIterator[str]:
    async def accept(request: web.Request) -> web.Response:
        return web.json_response({"id": "R-1"}, status=201)

    app = web.Application()
    app.router.add_post("/leads", accept)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=self_signed(tmp_path))
    await site.start()
    yield f"https://localhost:{runner.addresses[0][1]}/leads"
    await runner.cleanup()


@dataclass(frozen=True)
class PrivateCa:
    """Files of a private CA, as a company's internal PKI issues them: the CA's certificate,
    a server certificate for ``localhost`` and a client certificate (key encrypted with
    ``key_password``), both issued by the CA; ``renew_client`` issues the client a new one
    in the same files, as cert-manager does."""

    directory: Path
    ca_key: Any
    key_password: str = "client-key-password"

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def server_cert(self) -> Path:
        return self.directory / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.directory / "server-key.pem"

    @property
    def client_cert(self) -> Path:
        return self.directory / "client.pem"

    @property
    def client_key(self) -> Path:
        return self.directory / "client-key.pem"

    def server_context(self) -> ssl.SSLContext:
        """A recipient that asks every client for a certificate issued by the CA."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(self.ca_file))
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_cert_chain(self.server_cert, self.server_key)
        return context

    def renew_client(self, common_name: str) -> None:
        """A new key and certificate for the client, written over the old files."""
        pem, key = self._issue(common_name, ExtendedKeyUsageOID.CLIENT_AUTH)
        self.client_cert.write_bytes(pem)
        encrypted = serialization.BestAvailableEncryption(self.key_password.encode())
        self.client_key.write_bytes(_pem_key(key, encrypted))

    def _issue(self, common_name: str, usage: x509.ObjectIdentifier) -> tuple[bytes, Any]:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(_CA_NAME)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.ca_key.public_key()),
                critical=False,
            )
        )
        if common_name == "localhost":
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False
            )
        cert = builder.sign(self.ca_key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM), key


_CA_NAME = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Courier Test Root CA")])


def _pem_key(key: Any, encryption: serialization.KeySerializationEncryption) -> bytes:
    return bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    )


def private_ca(directory: Path) -> PrivateCa:
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_CA_NAME)
        .issuer_name(_CA_NAME)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    pki = PrivateCa(directory, ca_key)
    pki.ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    server_pem, server_key = pki._issue("localhost", ExtendedKeyUsageOID.SERVER_AUTH)
    pki.server_cert.write_bytes(server_pem)
    pki.server_key.write_bytes(_pem_key(server_key, serialization.NoEncryption()))
    pki.renew_client("lead-courier")
    return pki


def _lingering_close(connection: ssl.SSLSocket) -> None:
    """Close as Go's server (``closeWriteAndWait``) and nginx (``lingering_close``) do: end
    our side, then read what the client still sends for a moment (an SSLSocket shut down
    reads the plain socket). Closed at once with the client's request unread, the kernel
    answers with a reset, which can overtake the TLS 1.3 alert sent just before it (the
    client then sees "Connection failed"), one run in a few."""
    try:
        connection.shutdown(socket.SHUT_WR)
        connection.settimeout(0.5)
        while connection.recv(65536):
            pass
    except OSError:
        pass
    finally:
        connection.close()


@contextmanager
def alerting_recipient(context: ssl.SSLContext) -> Iterator[str]:
    """An HTTPS recipient on a blocking socket, whose refused handshake ends with its alert
    as Go's, Java's and most load balancers' do ("certificate required", "unknown ca", or
    TLS 1.2's "handshake failure"). asyncio's server resets the connection instead, which
    looks like any failed connection. Yields its URL; answers 201 to whoever it accepts."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:  # closed: the test is over
                return
            tls = context.wrap_socket(connection, server_side=True, do_handshake_on_connect=False)
            try:
                tls.do_handshake()
                tls.recv(65536)
                tls.sendall(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}")
                tls.close()
            except (OSError, ssl.SSLError):  # refused: OpenSSL has sent its alert
                _lingering_close(tls)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"https://localhost:{listener.getsockname()[1]}/leads"
    finally:
        listener.close()
        thread.join(timeout=5)
