"""Lead Courier's exceptions: our bugs and I/O, never a recipient's "no" (that is an Outcome).

CourierError
├── ConfigError        fatal at start: the settings or destinations file is wrong
├── MappingError       one lead cannot be mapped for one destination; the agent goes on
└── DeliveryError      the HTTP exchange itself failed (only stages/delivery.py raises it)
    ├── DeliveryTimeout          the recipient did not answer in time (retryable)
    ├── DeliveryConnectionError  could not connect / connection dropped (retryable)
    │   ├── HostNotFound         its host name did not resolve (retryable)
    │   └── ProxyUnreachable     the forward proxy could not be reached (retryable)
    ├── ResponseTooLarge         the answer exceeded the destination's limit
    ├── UnreadableAnswer         the answer's first line or headers are not HTTP we can read
    ├── CertificateRefused       the recipient's TLS certificate did not verify
    ├── TlsRefused               the recipient ended the TLS handshake with an alert
    ├── EgressRefused            the address is not one the egress policy lets us reach
    └── ProxyRefused             the forward proxy would not take the request
"""

from __future__ import annotations


class CourierError(Exception):
    """Base of every error Lead Courier raises on purpose."""


class ConfigError(CourierError):
    """Configuration is invalid; ``problems`` holds one line per problem, each with its path."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  {source}: {problem}" for problem in problems)
        super().__init__(f"invalid configuration ({len(problems)} problem(s)):\n{lines}")


class MappingError(CourierError):
    """A lead could not be turned into a destination's payload; ``field`` names the culprit."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


class DeliveryError(CourierError):
    """The HTTP exchange failed before a response could be read."""

    retryable = False
    reason = "Delivery failed"
    # Our credentials were refused (an auth_error: the destination's circuit opens at once).
    credentials_refused = False
    # The same for every lead, a configuration matter: an auth_error too, for that reason.
    every_lead = False


class DeliveryTimeout(DeliveryError):
    # The recipient may have processed the lead: a retry must reuse the Idempotency-Key.
    retryable = True
    reason = "Timeout"


class DeliveryConnectionError(DeliveryError):
    retryable = True
    reason = "Connection failed"


class HostNotFound(DeliveryConnectionError):
    """The recipient's host name did not resolve: often a typo in the url, sometimes DNS
    trouble that passes (so still retried, as a failed connection is)."""

    reason = "Host not found"


class ProxyUnreachable(DeliveryConnectionError):
    """The forward proxy could not be reached (refused, its name did not resolve): nothing
    went to the recipient. Retried, as a failed connection is; said apart from the
    recipient's own trouble, since every destination through the proxy has it too."""

    reason = "Proxy unreachable"


class ResponseTooLarge(DeliveryError):
    reason = "Response too large"


class UnreadableAnswer(DeliveryError):
    """The recipient answered in something aiohttp cannot read as HTTP: a header line over
    our limit, too many headers, a first line that is not HTTP's. It had the request and
    may have taken the lead, so it is not resent to it. The detail is ours: the answer's
    own bytes (a header, a cookie) are not quoted.

    Its status may have come before its body failed (``reason`` names it; a 5xx is
    ``retryable``); an answer in TLS (the url says http:// for a port that takes https) is
    the same for every lead (``every_lead``: the circuit opens at once)."""

    def __init__(
        self,
        detail: str,
        *,
        reason: str = "Unreadable response",
        retryable: bool = False,
        every_lead: bool = False,
    ) -> None:
        self.reason, self.retryable, self.every_lead = reason, retryable, every_lead
        super().__init__(detail)


class CertificateRefused(DeliveryError):
    # Not retried: a certificate that does not verify will not verify in a minute either.
    retryable = False
    reason = "TLS certificate refused"


class TlsRefused(DeliveryError):
    """The recipient ended the TLS handshake with an alert (``alert``: OpenSSL's words for
    it, "certificate required", "unknown ca", "handshake failure"…), or did not speak TLS.

    Its certificate alerts say it wants a client certificate we did not show, or does not
    take the one we showed: our credentials refused, as a 401 is (an ``auth_error``, not
    retried, the circuit opens). Any other is a matter of configuration too (a protocol or
    cipher we do not share, an http port named by an https url): not retried either."""

    retryable = False
    _CERTIFICATE_ALERTS = frozenset(
        {
            "certificate required",
            "bad certificate",
            "unknown ca",
            "certificate expired",
            "certificate revoked",
            "certificate unknown",
            "unsupported certificate",
            "access denied",
        }
    )

    def __init__(self, alert: str, *, showed_certificate: bool) -> None:
        self.alert = alert
        self.credentials_refused = alert in self._CERTIFICATE_ALERTS
        if alert == "not tls":
            self.reason = "TLS handshake failed"
            detail = "the recipient did not answer in TLS: is its port one for http://?"
        elif self.credentials_refused and not showed_certificate:
            self.reason = "TLS client certificate required"
            detail = (
                f"the recipient's TLS alert: {alert}. It asks for a client certificate: "
                "set the destination's tls: cert_file and key_file"
            )
        elif self.credentials_refused:
            self.reason = "TLS client certificate refused"
            detail = (
                f"the recipient's TLS alert: {alert}. It does not take the destination's "
                "tls: cert_file (its issuer, dates or purpose)"
            )
        else:
            self.reason = "TLS handshake refused"
            detail = (
                f"the recipient's TLS alert: {alert}. It may ask for a client certificate "
                "(TLS 1.2 says so this way) or a protocol or cipher we do not offer"
            )
        super().__init__(detail)


class EgressRefused(DeliveryError):
    """The destination's address is private, loopback, link-local or otherwise not public,
    and not in the egress allow list: never sent, never retried (a configuration matter)."""

    retryable = False
    reason = "Address refused"


class ProxyRefused(DeliveryError):
    """The forward proxy (``COURIER_HTTP_PROXY``) answered instead of the recipient: 407, our
    proxy credentials refused (never retried: they will not work in a minute either); 5xx,
    it could not reach the recipient (retried, as a failed connection is); else refused
    (its own rules)."""

    def __init__(self, status: int, detail: str | None = None) -> None:
        self.status = status
        self.retryable = status >= 500
        self.credentials_refused = status == 407
        self.reason = (
            "Proxy authentication failed (HTTP 407)"
            if status == 407
            else f"Proxy could not connect (HTTP {status})"
            if status >= 500
            else f"Proxy refused (HTTP {status})"
        )
        said = f" ({detail[:100]})" if detail else ""  # Squid's: "ERR_CONNECT_FAIL 111"
        super().__init__(f"the forward proxy answered HTTP {status}{said}")


class StoppedWhileWaiting(Exception):
    """A request that waited for one of its destination's in-flight slots found, when its
    turn came, that the destination takes no leads now (its circuit opened or an operator
    paused it meanwhile): not sent.

    Not a DeliveryError: nothing was sent, so it is neither an outcome of its own nor a
    circuit error. The desk that asked for the delivery handles the lead as it handles one
    that finds the circuit open or the destination paused at the door
    (streams/control/desk.py)."""


class SenderClosed(Exception):
    """The worker is stopping and its HTTP sender is closed: the attempt did not happen.

    Not a DeliveryError, so it never becomes an outcome (nor a circuit error): the work is
    left unacknowledged and done again after the restart."""
