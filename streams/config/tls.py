"""TLS terms of a connection we open: a private CA to trust, a client certificate to show
(mutual TLS). One way to build them, for recipients (a destination's ``tls:``) and for
the Kafka connection (``COURIER_KAFKA_SSL_*``)."""

from __future__ import annotations

import logging
import ssl
import time
from pathlib import Path

from pydantic import ConfigDict, PrivateAttr, model_validator

from streams.auth import Secret
from streams.compiled_model import CompiledModel
from streams.secrets import secrets_at_hand

log = logging.getLogger(__name__)

# How often a recipient's TLS files are looked at for a renewal (one stat of each file).
RELOAD_CHECK_S = 60.0


class KeyNeedsPassword(ValueError):
    """The client key is encrypted and no password was given."""


def _no_password() -> str:
    # Without a callback OpenSSL would ask on the terminal, or fail with a bare OSError.
    raise KeyNeedsPassword("the key is encrypted: give its password")


def tls_context(
    ca_file: Path | None,
    cert_file: Path | None,
    key_file: Path | None,
    key_password: str | None,
    verify: bool = True,
) -> ssl.SSLContext:
    """Certificates and host names verified (unless ``verify`` is off: a development
    recipient's self-signed certificate); ``ca_file`` unset: the system's CAs. A client
    certificate with its key (``key_file`` unset: the key is in ``cert_file``)."""
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file is not None else None)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if cert_file is not None:
        context.load_cert_chain(
            str(cert_file),
            str(key_file) if key_file is not None else None,
            key_password if key_password is not None else _no_password,
        )
    return context


def checked_tls_context(
    ca_file: Path | None,
    cert_file: Path | None,
    key_file: Path | None,
    key_password: str | None,
    verify: bool = True,
    *,
    options: str = "",
    password_by: str = "as a reference like ${env:NAME}",
) -> ssl.SSLContext:
    """``tls_context``, with what keeps its files from loading as a ValueError naming the
    option (``options``: the options' prefix, ``kafka_ssl_`` for the Kafka connection):
    a CA file with no certificate, an encrypted key without its password, a key that is
    not the certificate's, a file that cannot be read. ``password_by``: how the password
    is given there."""
    try:
        return tls_context(ca_file, cert_file, key_file, key_password, verify)
    except KeyNeedsPassword:
        raise ValueError(
            f"{options}key_password: {key_file or cert_file} is an encrypted key; give its "
            f"password{' ' if password_by else ''}{password_by}"
        ) from None
    except ssl.SSLError as exc:
        try:  # the CA file alone: a problem with it is named as its own
            if ca_file is not None:
                ssl.create_default_context(cafile=str(ca_file))
        except ssl.SSLError as ca_exc:
            raise ValueError(
                f"{options}ca_file: {ca_file} holds no certificate ({ca_exc.reason})"
            ) from None
        raise ValueError(
            f"{options}cert_file: {cert_file} and its key could not be loaded together "
            f"({exc.reason or exc}): a PEM certificate, and the key it was issued for"
        ) from None
    except OSError as exc:  # a file gone between the check and the read
        raise ValueError(f"{exc.filename}: cannot be read ({exc.strerror})") from None


class RecipientTls(CompiledModel):
    """A destination's ``tls:``: its own CA (``ca_file``: trusted instead of the system's
    CAs, as curl's ``--cacert``) and a client certificate it asks for (``cert_file`` and
    ``key_file``, the key's password by reference). Read and checked at start: a file
    missing, not a certificate, or a key that does not belong to it stops start-up, named."""

    model_config = ConfigDict(extra="forbid")

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    key_password: Secret | None = None

    _verified: ssl.SSLContext | None = PrivateAttr(default=None)
    _unverified: ssl.SSLContext | None = PrivateAttr(default=None)
    _stamps: tuple[tuple[int, int, int], ...] = PrivateAttr(default=())
    _next_check: float = PrivateAttr(default=0.0)

    @model_validator(mode="after")
    def _load(self) -> RecipientTls:
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("key_file: needs cert_file (the certificate the key belongs to)")
        if self.key_password is not None and self.cert_file is None:
            raise ValueError("key_password: needs cert_file and its key")
        if not secrets_at_hand():
            return self  # the files are where the workers run: not read here
        for name in ("ca_file", "cert_file", "key_file"):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise ValueError(f"{name}: {path} is not a readable file")
        self._stamps = self._files_now()
        self._verified, self._unverified = self._built()
        self._next_check = time.monotonic() + RELOAD_CHECK_S
        return self

    def _built(self) -> tuple[ssl.SSLContext, ssl.SSLContext]:
        """Both contexts (verifying and not) from the files as they are now; ValueError
        naming the option when they cannot be loaded."""
        password = self.key_password.get_secret_value() if self.key_password else None
        files = (self.ca_file, self.cert_file, self.key_file, password)
        return checked_tls_context(*files), checked_tls_context(*files, verify=False)

    def _files_now(self) -> tuple[tuple[int, int, int], ...]:
        """What identifies each file's content: a renewal (cert-manager, a Secret's mounted
        files swapped by the kubelet) changes one of these."""
        files = (self.ca_file, self.cert_file, self.key_file)
        return tuple(
            (stat.st_ino, stat.st_size, stat.st_mtime_ns)
            for stat in (path.stat() for path in files if path is not None)
        )

    def context(self, verify: bool) -> ssl.SSLContext:
        """The context for a new connection. Files renewed on disk are loaded again within
        ``RELOAD_CHECK_S``; files that cannot be loaded (half written, a key that does not
        match yet) leave the loaded ones in use, and are tried again at the next check."""
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + RELOAD_CHECK_S
            self._reload_if_renewed()
        context = self._verified if verify else self._unverified
        assert context is not None  # built when validated with the secrets at hand
        return context

    def _reload_if_renewed(self) -> None:
        names = ", ".join(str(p) for p in (self.ca_file, self.cert_file, self.key_file) if p)
        try:
            stamps = self._files_now()
            if stamps == self._stamps:
                return
            self._verified, self._unverified = self._built()
        except (ValueError, OSError) as exc:
            log.error("TLS files %s changed but cannot be loaded (%s): still using the ones "
                      "loaded before", names, exc)  # fmt: skip
            return
        self._stamps = stamps
        log.warning("TLS files %s renewed: loaded again for new connections", names)

    def describe(self) -> str:
        """For the start-up summary: which terms, never a file's content."""
        parts = ["its own CA"] if self.ca_file is not None else []
        if self.cert_file is not None:
            parts.append("a client certificate")
        return " and ".join(parts)
