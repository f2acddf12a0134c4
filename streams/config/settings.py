"""Worker settings from the command line and ``COURIER_*`` environment variables."""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from streams.config.kafka import KafkaSecurity, Mechanism, Protocol
from streams.config.policies import EgressPolicy, ForwardProxy
from streams.errors import ConfigError
from streams.secrets import SCRUBBER

LOOPBACK = ("127.0.0.1", "::1", "localhost")


BROKER_FORM = "kafka://HOST:PORT[,HOST:PORT]"


def problem_with_broker(value: str) -> str | None:
    """Why ``value`` is not a broker address list, or None. Checked at start: a stray space
    or newline (a pasted line, two lines of an ``export``) would otherwise surface as an
    unreachable host at the first connection, after the worker had started. Names the
    entry by its place, never its text (settings' problems never repeat a value)."""
    if not value.strip():
        return f"is empty (unset it to start the embedded broker, or give {BROKER_FORM})"
    scheme, separator, hosts = value.partition("://")
    if not separator:
        hosts = value
    elif scheme != "kafka":
        return (
            f"the scheme must be kafka:// ({BROKER_FORM}; TLS and SASL have settings of their own)"
        )
    entries = hosts.split(",")
    for place, entry in enumerate(entries, 1):
        where = f"entry {place} of {len(entries)}" if len(entries) > 1 else "the address"
        if not entry:
            return f"{where} is empty ({BROKER_FORM})"
        if any(character.isspace() or not character.isprintable() for character in entry):
            return f"{where} has a space, a line break or a control character ({BROKER_FORM})"
        if "@" in entry:  # aiokafka would look the whole of it up as a host name
            return (
                f"{where} carries credentials: give them as COURIER_KAFKA_SASL_USERNAME and "
                "COURIER_KAFKA_SASL_PASSWORD (docs/brokers.md)"
            )
        host, colon, port = entry.rpartition(":")
        if not colon or _bracketed(entry):
            continue  # a host alone: Kafka's port, 9092
        if not host or (":" in host and not _bracketed(host)):
            return f"{where} is not HOST:PORT ({BROKER_FORM}; an IPv6 host in brackets, [::1]:9092)"
        if not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
            return f"{where} has no port number from 1 to 65535 after its colon ({BROKER_FORM})"
    return None


def _bracketed(host: str) -> bool:
    """An IPv6 address as URLs write it: ``[::1]``."""
    return host.startswith("[") and host.endswith("]")


DEFAULT_REMEMBER_H = 72.0


class Settings(BaseSettings):
    """Worker settings; every field can be set as ``COURIER_<NAME>`` (12-factor)."""

    model_config = SettingsConfigDict(env_prefix="COURIER_", extra="ignore")

    broker: str | None = Field(
        default=None, description="kafka://HOST:PORT[,HOST:PORT]; none starts the embedded broker"
    )
    destinations: Path = Path("destinations.yaml")
    app_id: str = "lead-courier"
    leads_topic: str = "leads.processed"
    events_topic: str = "leads.delivery.events"
    outcomes_topic: str = "leads.delivery.outcomes"
    dlq_topic: str = "leads.delivery.dlq"
    control_topic: str = "leads.delivery.control"  # circuit state changes, cap usage
    # Operators' actions (courier admin, the API): kept for good, read from the beginning
    # by every worker, so a pause holds however long ago it was taken; the audit trail.
    admin_topic: str = "leads.delivery.admin"
    # Versions of the destinations file every worker runs (``courier config``): one
    # partition, compacted, each version kept
    config_topic: str = "leads.delivery.config"
    alerts_topic: str = "leads.delivery.alerts"  # alerts firing and resolved (courier insight)
    # Recipients' feedback as it came in (JSON: POST /feedback/<destination>, or upstream),
    # and what we made of it (Avro LeadFeedback; accepted returns credit sales).
    feedback_topic: str = "leads.feedback"
    feedback_events_topic: str = "leads.delivery.feedback"
    # Internal: a lead's routing (keyed by lead id) and work for a destination (keyed by
    # destination id, so a destination's caps and circuit live in one partition).
    routing_topic: str = "leads.delivery.routing"
    work_topic: str = "leads.delivery.work"
    remember_delivered_h: float | None = Field(
        default=None,
        gt=0,
        description="how long a finished lead and who accepted it are remembered "
        f"(unset: {DEFAULT_REMEMBER_H:g} h, or the longest feedback window if longer)",
    )
    partitions: int = Field(default=4, ge=1, description="partitions of the topics we create")
    replication: int = Field(
        default=1, ge=1, description="replicas of the topics we create (3 on a production cluster)"
    )
    in_flight: int = Field(
        default=64,
        ge=1,
        le=10_000,
        description="requests at once per destination per worker (unless its limits say less)",
    )
    held_per_agent: int = Field(
        default=10_000,
        ge=1,
        le=1_000_000,
        description="records an agent holds in progress at once; then it reads no more",
    )
    # A quarter of the default hold: three destinations slower than their traffic still
    # leave the agent room for the others. Parking costs records (the item written and
    # deleted, a record to take it back), so a short burst is better held in memory.
    queued_per_destination: int = Field(
        default=2_500,
        ge=1,
        le=1_000_000,
        description="deliveries that wait in memory for one destination's turn; more wait "
        "in its table (parked) and go on, oldest first, as the queue empties",
    )
    max_lead_bytes: int = Field(default=1_048_576, ge=1024)
    schema_registry_url: str | None = None
    web_port: int | None = Field(
        default=None, ge=1, le=65_535, description="health endpoints; off when unset"
    )
    # Loopback unless asked: in a container or pod set 0.0.0.0 so probes can reach it.
    web_bind: str = "127.0.0.1"
    # The API beyond health and metrics (lead history, admin actions): a bearer token, or
    # named ones (JSON: {"alice": "..."}; the name is who acted in the audit trail). With
    # none, only a web port on loopback answers.
    api_token: SecretStr | None = None
    api_tokens: dict[str, SecretStr] = Field(default_factory=dict)
    # Where ``courier lead`` asks (an insight worker's web port)
    api_url: str = "http://127.0.0.1:6067"
    # How long ``courier insight`` keeps a lead's history after its last record
    history_days: float = Field(default=7.0, gt=0)
    # /readyz answers 503 "stalled" after this long with records waiting and none finished
    stall_s: float = Field(default=300.0, gt=0)
    # asyncio's own loop: since the collector's tuning (gc_young below) it delivers 10-14 %
    # more leads a second than uvloop on the delivery set-up (docs/performance.md,
    # `--only event_loop`; uvloop was ahead before it). "uvloop" stays an option.
    event_loop: Literal["uvloop", "asyncio"] = "asyncio"
    # Python collects its youngest objects every 700 allocations by default, and every
    # collection of the older ones scans every live object. A worker holding thousands of
    # leads for a slow recipient (~200 objects each) spent over a quarter of its CPU there,
    # finding nothing to free (docs/performance.md, `--only gc`).
    gc_young: int = Field(
        default=10_000,
        ge=1,
        le=1_000_000,
        description="allocations between the garbage collector's young collections",
    )
    log_level: Literal["debug", "info", "warn", "error", "crit"] = "warn"
    # json: one object per line with lead_id, destination and trace_id (streams/logs.py)
    log_format: Literal["text", "json"] = "text"
    egress: Literal["public", "any"] = Field(
        default="public",
        description="public: requests only to public addresses (unless in egress_allow); "
        "any: anywhere (development, recipients on 127.0.0.1)",
    )
    egress_allow: str = Field(
        default="", description="networks (CIDR) and hosts requests may reach, comma-separated"
    )
    # A forward proxy for every request to recipients (OAuth tokens and polls included);
    # not read from HTTPS_PROXY implicitly, so no proxy ever applies by surprise.
    http_proxy: SecretStr | None = Field(
        default=None, description="http://[user:password@]host:port every delivery goes through"
    )
    no_proxy: str = Field(
        default="",
        description="hosts, domains (and their subdomains) and networks reached without the "
        "proxy, comma-separated",
    )
    data_dir: Path = Path(".courier-data")  # the table store (RocksDB) lives here
    # RocksDB (faust-streaming's rocksdict store): tables on disk, a restart reads only the
    # changelog written since. "memory": rebuilt from the changelogs at every start.
    store: Literal["rocksdb", "memory"] = "rocksdb"
    store_memory_mb: int = Field(
        default=64,
        ge=8,
        le=1_000_000,
        description="memory of every RocksDB table of the worker together: blocks read "
        "and changes not yet written to disk (half at most)",
    )
    # The worker's producer made idempotent (Kafka keeps one copy of a record the producer
    # sent again after a timeout or a dropped connection). auto: when the broker takes it
    # (Apache Kafka does; the embedded Tansu refuses it, docs/brokers.md); on: the worker
    # does not start without it; off: never.
    kafka_idempotence: Literal["auto", "on", "off"] = "auto"
    # A managed Kafka: TLS and SASL (streams/config/kafka.py; docs/brokers.md)
    kafka_security_protocol: Protocol | None = None
    kafka_ssl_ca_file: Path | None = None
    kafka_ssl_cert_file: Path | None = None
    kafka_ssl_key_file: Path | None = None
    kafka_ssl_key_password: SecretStr | None = None
    kafka_sasl_mechanism: Mechanism | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_oauth_token_url: str | None = None
    kafka_oauth_client_id: str | None = None
    kafka_oauth_client_secret: SecretStr | None = None
    kafka_oauth_scope: str | None = None

    @model_validator(mode="after")
    def _kafka_security_holds(self) -> Settings:
        self.kafka_security()  # every inconsistency named now, not at the first connection
        for token in (self.api_token, *self.api_tokens.values()):
            if token is not None:
                SCRUBBER.keep_secret(token.get_secret_value())
        return self

    def api_caller(self, authorization: str | None) -> tuple[str | None, tuple[int, str] | None]:
        """Who calls the API (the name of the bearer token given), or why the call is
        refused (HTTP status, message). No token configured: only a web port on loopback
        answers, to "local" (a port open to the network must not serve leads to anyone)."""
        tokens = dict(self.api_tokens)
        if self.api_token is not None:
            tokens.setdefault("api", self.api_token)
        if not tokens:
            if self.web_bind in LOOPBACK:
                return "local", None
            refusal = "set COURIER_API_TOKEN to use the API on a web port open to the network"
            return None, (403, refusal)
        given = (authorization or "").removeprefix("Bearer ").strip().encode()
        for name, token in tokens.items():
            if hmac.compare_digest(given, token.get_secret_value().encode()):
                return name, None
        return None, (401, "a bearer token is required (COURIER_API_TOKEN or COURIER_API_TOKENS)")

    def remember_h(self, feedback_window_h: float) -> float:
        """How long a finished lead (who accepted it, for feedback) is remembered: as set,
        else 72 h or the longest feedback window (returns, polls) if longer, so that a
        return inside its window is never refused as 'Unknown lead'."""
        if self.remember_delivered_h is not None:
            return self.remember_delivered_h
        return max(DEFAULT_REMEMBER_H, feedback_window_h)

    def kafka_security(self) -> KafkaSecurity:
        return KafkaSecurity(
            protocol=self.kafka_security_protocol,
            ca_file=self.kafka_ssl_ca_file,
            cert_file=self.kafka_ssl_cert_file,
            key_file=self.kafka_ssl_key_file,
            key_password=self.kafka_ssl_key_password,
            sasl_mechanism=self.kafka_sasl_mechanism,
            username=self.kafka_sasl_username,
            password=self.kafka_sasl_password,
            oauth_token_url=self.kafka_oauth_token_url,
            oauth_client_id=self.kafka_oauth_client_id,
            oauth_client_secret=self.kafka_oauth_client_secret,
            oauth_scope=self.kafka_oauth_scope,
        )

    @field_validator("broker")
    @classmethod
    def _broker_reads(cls, value: str | None) -> str | None:
        if value is not None:
            broker_problem = problem_with_broker(value)
            if broker_problem is not None:
                raise ValueError(broker_problem)
        return value

    @field_validator("egress_allow")
    @classmethod
    def _allow_list_reads(cls, value: str) -> str:
        try:
            EgressPolicy(allow=tuple(e for e in value.split(",") if e.strip()))
        except ValidationError as exc:
            raise ValueError(exc.errors()[0]["msg"].removeprefix("Value error, ")) from None
        return value

    @model_validator(mode="after")
    def _proxy_reads(self) -> Settings:
        try:
            self.forward_proxy()
        except ValidationError as exc:
            message = exc.errors()[0]["msg"].removeprefix("Value error, ")
            named = message if message.startswith("no_proxy:") else f"http_proxy: {message}"
            raise ValueError(named) from None
        return self

    def forward_proxy(self) -> ForwardProxy | None:
        if self.http_proxy is None or not self.http_proxy.get_secret_value().strip():
            return None
        return ForwardProxy(
            url=self.http_proxy.get_secret_value().strip(),
            no_proxy=tuple(e for e in self.no_proxy.split(",") if e.strip()),
        )

    def egress_policy(self) -> EgressPolicy:
        allow = [e for e in self.egress_allow.split(",") if e.strip()]
        proxy = self.forward_proxy()
        if proxy is not None:
            # Through the proxy the worker connects to the proxy alone (often on a private
            # network): the policy lets it, and checks the addresses of hosts reached direct.
            allow.append(proxy.host)
        return EgressPolicy(mode=self.egress, allow=tuple(allow))

    def broker_url(self) -> str:
        if not self.broker:
            raise ConfigError("settings", ["broker: not set (the embedded broker was not started)"])
        return self.broker if "://" in self.broker else f"kafka://{self.broker}"

    def bootstrap_servers(self) -> str:
        """``kafka://a:1,b:2`` → ``a:1,b:2``: what aiokafka takes."""
        return self.broker_url().split("://", 1)[1]
