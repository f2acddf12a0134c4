"""Destinations and flows from a YAML file, validated once at start.

Every problem is reported with its path (``destinations[2].url: ...``); after loading, the
rest of the code trusts these models.
"""

from __future__ import annotations

import ipaddress
import re
import ssl
from collections.abc import Iterable, Sequence
from decimal import Decimal
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, quote, urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    Tag,
    ValidationError,
    model_validator,
)

from integrations import REGISTRY
from streams.auth import AuthConfig, OAuth2Auth
from streams.compiled_model import CompiledModel
from streams.config.alerts import AlertRules
from streams.config.feedback import FeedbackConfig
from streams.config.flows import (
    NOT_A_STEP,
    STEP_TAG,
    CompiledFlow,
    Flow,
    compile_flow,
    default_flow,
    not_a_step,
)
from streams.config.policies import (
    BatchConfig,
    CapPolicy,
    CircuitPolicy,
    ForwardProxy,
    RetryPolicy,
)
from streams.config.response_rules import ResponseConfig
from streams.config.schedule import Schedule
from streams.config.tls import RecipientTls
from streams.config.unknown import closest, explained
from streams.errors import ConfigError
from streams.secrets import (
    has_reference,
    is_sensitive_name,
    is_unresolved,
    resolve_references,
    single_line,
)
from streams.template.fields import CompiledMapping, FieldSpec, compile_mapping
from streams.template.parser import (
    CompiledTemplate,
    EvaluationError,
    TemplateError,
    compile_expression,
    compile_template,
    is_template,
)

# A destination's ``proxy: direct``: past the worker's proxy, straight to the recipient.
DIRECT: Literal["direct"] = "direct"


def _mapping_kind(value: Any) -> str:
    return "spec" if isinstance(value, dict | FieldSpec) else "path"


# Text (a path or a template) or a FieldSpec; the tag keeps errors to the branch meant.
MappingValue = Annotated[
    Annotated[str, Tag("path")] | Annotated[FieldSpec, Tag("spec")],
    Discriminator(_mapping_kind),
]


class Limits(BaseModel):
    """How hard this worker may press one recipient."""

    model_config = ConfigDict(extra="forbid")

    concurrency: int | None = Field(default=None, ge=1, le=10_000)  # requests at once
    per_second: float | None = Field(default=None, gt=0, le=100_000)  # requests per second
    # A vendor's allowance over a longer window: never more in any hour (day), sliding.
    per_hour: int | None = Field(default=None, ge=1, le=100_000_000)
    per_day: int | None = Field(default=None, ge=1, le=100_000_000)


class Timeouts(BaseModel):
    model_config = ConfigDict(extra="forbid")

    connect: float = Field(default=3.0, gt=0, le=60)
    read: float = Field(default=10.0, gt=0, le=300)
    total: float = Field(default=15.0, gt=0, le=600)


def _redacted_path(path: str) -> str:
    try:
        compile_expression(path)
    except TemplateError as exc:
        raise ValueError(f"{path!r} is not a path ({exc})") from None
    return path


class Privacy(CompiledModel):
    model_config = ConfigDict(extra="forbid")

    # lead.email, lead.phone_1, ...: each checked on its own, so every bad one is named.
    redact: list[Annotated[str, AfterValidator(_redacted_path)]] = Field(default_factory=list)

    _readers: list[Any] = PrivateAttr(default_factory=list)

    @model_validator(mode="after")
    def _paths(self) -> Privacy:
        self._readers = [compile_expression(path) for path in self.redact]
        return self

    def with_paths(self, more: list[str]) -> Privacy:
        return Privacy(redact=[*self.redact, *(p for p in more if p not in self.redact)])

    def values(self, envelope: dict[str, Any]) -> list[str]:
        """The lead's values at the redacted paths (text, numbers; the parts of lists)."""
        found: list[str] = []
        for reader in self._readers:
            try:
                value = reader.evaluate(envelope)
            except EvaluationError:
                continue
            found.extend(_texts(value))
        return found


def _texts(value: Any) -> list[str]:
    if value is None or isinstance(value, bool):
        return []
    if isinstance(value, list):
        return [t for v in value for t in _texts(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _texts(v)]
    return [str(value)]


# Words that name contact data in a mapping's source: a ping shows none of it by default
# (the buyer sees the full lead only when it wins and the lead is posted).
_CONTACT = re.compile(
    r"e-?mail|phone|mobile|first_?name|last_?name|full_?name|address|street|ssn|social|birth|dob",
    re.IGNORECASE,
)
# What a ping's answer is read for, unless its ``response`` says otherwise.
DEFAULT_PING_CAPTURE = {
    "price": {"json": "$.bid"},
    # The bid's id by the names ping-post platforms give it (the first there): Pingtree and
    # others answer a ping_id or a transaction_id for the post to carry.
    "reference_id": {"json": "$['bid_id','ping_id','transaction_id']"},
    "expires_at": {"json": "$.expires_at"},
}
# Where a ping's bid and bid id are when the paths above find nothing: among its answer's
# own fields by the names buyers give them, in any format and case. A buyer answering in
# XML (``<ping_id>``) or a form (``ping_id=…``) had its bid's id unread and the post
# carried none; one bidding ``{"Bid": …}``, ``payout`` or LeadByte's ``Cost`` never won.
PING_FIELDS = {
    # in camel case too: Ringba's RTB answer names its bid "bidAmount"
    "price": ("bid", "bid_amount", "bid_price", "bidAmount", "bidPrice", "price", "payout", "cost"),
    # each as written and in camel case (.NET's TransactionId), then a ping's token
    "reference_id": (
        "bid_id",
        "ping_id",
        "transaction_id",
        "bidId",
        "pingId",
        "transactionId",
        "ping_token",
        "token",
    ),
    # When the bid ends, as a time (a relative one, ``expires_in``: streams/stages/routing.py).
    "expires_at": (
        "expires_at",
        "expiresAt",
        "bid_expires_at",
        "expires",
        "expiration",
        "expiry",
        "valid_until",
        "expire_time",
        "expireTime",
        "expiration_time",
        "expirationTime",
    ),
}
# A ping's captures by the names of an auction (``bid``, ``bid_id``) → the event's fields.
PING_CAPTURE_NAMES = {"bid": "price", "bid_id": "reference_id"}


@cache
def _default_ping_response() -> ResponseConfig:
    return ResponseConfig.model_validate({"capture": DEFAULT_PING_CAPTURE}).with_fields_named(
        PING_FIELDS
    )


class PingConfig(BaseModel):
    """A buyer's ping for ping-post auctions (streams/config/flows.py, ``ping_post``): the
    partial lead it may see and where its bid is in the answer."""

    model_config = ConfigDict(extra="forbid")

    url: str
    method: Literal["POST", "PUT", "GET"] = "POST"
    integration: Literal["json_post", "form_post", "get_query"] = "json_post"
    mapping: dict[str, MappingValue] = Field(default_factory=dict)
    response: ResponseConfig | None = None  # default: bid, bid_id, expires_at (JSON)
    allow_contact: bool = False  # let the mapping send contact data in the ping

    @model_validator(mode="after")
    def _bid_read_by_default(self) -> PingConfig:
        """A ``response:`` block (rules telling a "no bid" answer, say) keeps the default
        captures it does not name, and may name the bid as the feature does (``bid``,
        ``bid_id``): before, either left the bid unread and every ping "no bid"."""
        if self.response is None:
            return self
        capture = dict(self.response.capture)
        for said, meant in PING_CAPTURE_NAMES.items():
            if said in capture:
                if meant in capture:
                    raise ValueError(f"response.capture.{said}: the same as {meant}; give one")
                capture[meant] = capture.pop(said)
        for name, path in _default_ping_response().capture.items():
            capture.setdefault(name, path)
        self.response = self.response.model_copy(update={"capture": capture}).with_fields_named(
            PING_FIELDS
        )
        return self

    @model_validator(mode="after")
    def _no_contact_data(self) -> PingConfig:
        if self.allow_contact:
            return self
        for target, source in self.mapping.items():
            text = source if isinstance(source, str) else source.model_dump_json()
            found = _CONTACT.search(f"{target} {text}")
            if found:
                raise ValueError(
                    f"mapping.{target}: contact data ({found.group(0)}) in a ping; a ping "
                    "carries none unless allow_contact: true"
                )
        return self


class Destination(CompiledModel):
    """One recipient: where to send, how to map, which integration speaks its protocol."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[a-z][a-z0-9_]{0,62}$")
    integration: str = "json_post"
    # Ready integrations (hubspot, ...) know their service's URL; generic ones need one.
    url: str = ""
    method: Literal["POST", "PUT", "PATCH", "GET"] = "POST"
    headers: dict[str, str] = Field(default_factory=dict)
    mapping: dict[str, MappingValue] = Field(default_factory=dict)
    # Applied after the fields, in order: "if COND then field = EXPR [else field = EXPR]".
    rules: list[str] = Field(default_factory=list)
    timeouts: Timeouts = Field(default_factory=Timeouts)
    limits: Limits = Field(default_factory=Limits)
    circuit: CircuitPolicy = Field(default_factory=CircuitPolicy)
    caps: CapPolicy | None = None  # leads per hour/day/week/month; uncapped when unset
    # What a lead it accepts sells for when its answer names no price (response rules'
    # ``price`` capture wins); ``priority: {by: price}`` in a flow orders by it.
    price: Decimal | None = Field(default=None, ge=0, max_digits=14, decimal_places=4)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    max_response_bytes: int = Field(default=1_048_576, ge=1024)
    # Plain http is refused unless the recipient is on loopback or this is set (development).
    insecure: bool = False
    # Certificates are verified unless this is false (a development recipient's self-signed one).
    tls_verify: bool = True
    # Its own CA, a client certificate it asks for (mutual TLS): streams/config/tls.py.
    tls: RecipientTls | None = None
    # Its requests' forward proxy instead of the worker's (COURIER_HTTP_PROXY): a proxy URL
    # (credentials only by reference, ${env:STATIC_IP_PROXY}: a buyer that takes leads from
    # listed addresses only), or "direct" to go without the worker's. Unset: the worker's.
    proxy: str | None = None
    enabled: bool = True
    settings: dict[str, Any] = Field(default_factory=dict)
    auth: AuthConfig | None = None
    response: ResponseConfig = Field(default_factory=ResponseConfig)
    schedule: Schedule | None = None  # business hours; always open when unset
    batch: BatchConfig | None = None  # several leads per request, for array-taking APIs
    # Envelope paths whose values never appear in events: raw, reasons, appended, request
    # summaries (with the file's own ``privacy.redact``, which every destination adds).
    privacy: Privacy = Field(default_factory=lambda: Privacy())
    # W3C ``traceparent`` (the attempt's span) on each request, for a recipient that traces.
    send_traceparent: bool = False
    # How its recipient tells us what became of a lead (POST /feedback/<id>): off when unset.
    feedback: FeedbackConfig | None = None
    # Its ping in ping-post auctions (a flow's ``ping_post`` step); the destination itself
    # is where the full lead is posted when it wins.
    ping: PingConfig | None = None

    _proxy: ForwardProxy | None = PrivateAttr(default=None)
    _url_template: CompiledTemplate | None = PrivateAttr(default=None)
    _resolved_url: str = PrivateAttr(default="")  # references resolved: never print it
    _header_templates: dict[str, CompiledTemplate] = PrivateAttr(default_factory=dict)
    _resolved_headers: dict[str, str] = PrivateAttr(default_factory=dict)
    _secret_headers: frozenset[str] = PrivateAttr(default=frozenset())
    _compiled_mapping: CompiledMapping | None = PrivateAttr(default=None)
    _integration_settings: BaseModel | None = PrivateAttr(default=None)
    _ping_destination: Destination | None = PrivateAttr(default=None)
    # What its requests' Idempotency-Key comes from, with the lead's id: its id; its ping's
    # a scope of their own, or a buyer that honours the key would take the post for a
    # resend of the ping (and answer it with the ping's answer, or refuse it).
    _key_scope: str = PrivateAttr(default="")

    @model_validator(mode="after")
    def _check_and_compile(self) -> Destination:
        """Every problem of the destination at once (``courier check`` lists them all),
        as one line each; a step that depends on a failed one is left out."""
        if self.integration not in REGISTRY:
            known = ", ".join(sorted(REGISTRY))
            meant = closest(self.integration, REGISTRY)
            hint = f"; did you mean {meant!r}?" if meant is not None else ""
            raise ValueError(f"integration: unknown {self.integration!r}{hint} (known: {known})")
        problems: list[str] = []
        for step in (
            self._check_auth,
            self._apply_vendor_defaults,
            self._check_batch,
            self._check_method,
            self._resolve_url,
            self._resolve_proxy,
            self._resolve_headers,
            self._check_settings,
        ):
            try:
                step()
            except ValueError as exc:
                problems.append(str(exc))
        if problems:
            raise ValueError("\n".join(problems))
        spec: dict[str, str | FieldSpec] = {
            **REGISTRY[self.integration].DEFAULT_MAPPING,
            **self.mapping,
        }
        self._compiled_mapping = compile_mapping(spec, self.rules)
        if self.ping is not None:
            self._ping_destination = self._pinged()
        return self

    # Declared after ``_check_and_compile`` so that it wraps it: pydantic nests a model's
    # validators in the order they are declared, the last outermost.
    @model_validator(mode="wrap")
    @classmethod
    def _every_problem(
        cls, data: Any, handler: ModelWrapValidatorHandler[Destination]
    ) -> Destination:
        """A field's own problem (a bad ``id``) stops pydantic before the destination's
        checks (``_check_and_compile``), which would hide a bad URL in the same entry until
        the next run. Those checks run again with the broken fields left at their defaults,
        and what they find about the other fields is reported with the fields' problems."""
        try:
            return handler(data)
        except ValidationError as exc:
            if not isinstance(data, dict):
                raise
            broken = {str(error["loc"][0]) for error in exc.errors() if error["loc"]}
            if not broken:
                raise
            rest = {key: value for key, value in data.items() if str(key) not in broken}
            if "id" in broken:
                rest["id"] = "unnamed"  # the one field without a default
            try:
                handler(rest)
            except ValidationError as again:
                more = [
                    line
                    for error in again.errors()
                    if not error["loc"]
                    for line in str(error["msg"]).removeprefix("Value error, ").splitlines()
                    if line.partition(": ")[0] not in broken
                ]
            else:
                more = []
            if not more:
                raise
            also = ValueError("\n".join(more))
            raise ValidationError.from_exception_data(
                exc.title,
                [
                    *exc.errors(),  # type: ignore[list-item]
                    {"type": "value_error", "loc": (), "input": data, "ctx": {"error": also}},
                ],
            ) from None

    def _pinged(self) -> Destination:
        """The destination a ping is sent as: the same id, credentials and headers, the
        ping's URL, mapping and answers; one try (an auction does not wait for retries)."""
        assert self.ping is not None
        ping = self.ping
        response = ping.response or _default_ping_response()
        kept = self.model_dump(
            include={
                "id",
                "enabled",
                "schedule",
                "headers",
                "timeouts",
                "insecure",
                "tls_verify",
                "tls",
                "proxy",
                "auth",
                "privacy",
            }
        )
        try:
            pinged = Destination.model_validate(
                {
                    **kept,
                    "auth": self.auth,  # as it is (its secrets resolved)
                    "tls": self.tls,  # its certificates loaded once
                    "integration": ping.integration,
                    "url": ping.url,
                    "method": ping.method,
                    "mapping": ping.mapping,
                    "response": response,
                    "retry": {"max_attempts": 1},
                    "circuit": self.circuit,
                }
            )
        except ValidationError as exc:
            problems = []
            for error in exc.errors():
                where = ".".join(map(str, error["loc"]))
                for line in str(error["msg"]).removeprefix("Value error, ").splitlines():
                    problems.append(f"ping.{where}: {line}" if where else f"ping.{line}")
            raise ValueError("\n".join(problems)) from None
        # The very same limits: pings and posts share the buyer's allowance (the sender
        # keeps one gate per destination id while its limits object stays the same).
        pinged.limits = self.limits
        pinged._key_scope = f"{self.id}\x00ping"
        return pinged

    @property
    def key_scope(self) -> str:
        """With a lead's id, what the Idempotency-Key of its requests is derived from."""
        return self._key_scope or self.id

    @property
    def pinged(self) -> Destination:
        """Its ping as a destination (``ping`` must be set)."""
        assert self._ping_destination is not None, f"{self.id} has no ping"
        return self._ping_destination

    def _check_auth(self) -> None:
        needed = getattr(REGISTRY[self.integration], "AUTH_TYPES", None)
        if needed and (self.auth is None or self.auth.type not in needed):
            raise ValueError(f"auth: {self.integration} needs auth of type {' or '.join(needed)}")

    def _apply_vendor_defaults(self) -> None:
        module = REGISTRY[self.integration]
        # An integration may know its vendor's published limits (Five9: one request at a
        # time per login, 160 a minute); a destination's own limits win, field by field.
        vendor_limits = getattr(module, "DEFAULT_LIMITS", None)
        if vendor_limits:
            given = self.limits.model_fields_set
            self.limits = Limits(
                **{k: v for k, v in vendor_limits.items() if k not in given},
                **{k: getattr(self.limits, k) for k in given},
            )
        # An integration may say where its vendor documents the OAuth client credentials
        # (Salesforce: the form body); a destination's own client_auth wins.
        client_auth = getattr(module, "OAUTH_CLIENT_AUTH", None)
        if (
            client_auth
            and isinstance(self.auth, OAuth2Auth)
            and "client_auth" not in self.auth.model_fields_set
        ):
            self.auth.client_auth = client_auth
        if not self.url:
            self.url = getattr(module, "DEFAULT_URL", "")

    def _check_batch(self) -> None:
        if self.batch is not None and (self.integration != "json_post" or self.method == "GET"):
            raise ValueError("batch: only json_post with POST, PUT or PATCH sends arrays")

    def _check_method(self) -> None:
        """A method the integration would not use as written, silently: a JSON GET has no
        body (its mapping went nowhere); get_query always sends GET."""
        if self.integration == "json_post" and self.method == "GET" and self.mapping:
            raise ValueError(
                "method: a GET has no body, so the mapping would not be sent; integration: "
                "get_query puts it in the query string"
            )
        chosen = "method" in self.model_fields_set
        if self.integration == "get_query" and chosen and self.method != "GET":
            raise ValueError(
                f"method: get_query sends GET, not {self.method} (json_post or form_post send a "
                "body)"
            )

    def _resolve_url(self) -> None:
        if not self.url:
            raise ValueError("url: required for this integration")
        _check_url(_BLOCK.sub("x", self.url), self.insecure)
        _check_url_template(self.url)
        _check_url_credentials(self.url)
        self._resolved_url = self.url
        if has_reference(self.url):
            try:
                self._resolved_url = single_line(resolve_references(self.url), "url")
            except ValueError as exc:
                raise ValueError(f"url: {exc}") from None
        if is_template(self._resolved_url):
            try:
                # Every value put into the URL is percent-encoded: it cannot add a path
                # segment or a query parameter of its own.
                self._url_template = compile_template(self._resolved_url, escape=_quote_all)
            except TemplateError as exc:
                raise ValueError(f"url: {exc}") from None

    def _resolve_proxy(self) -> None:
        raw = (self.proxy or "").strip()
        if raw in ("", DIRECT):
            return
        if not has_reference(raw) and "@" in urlsplit(raw).netloc:
            raise ValueError(
                "proxy: credentials must be a reference like ${env:NAME}, never a literal "
                "(the whole URL may be one)"
            )
        try:
            resolved = resolve_references(raw).strip() if has_reference(raw) else raw
        except ValueError as exc:
            raise ValueError(f"proxy: {exc}") from None
        if is_unresolved(resolved):
            return  # checked where the workers' secrets are (courier check --no-secrets)
        try:
            self._proxy = ForwardProxy(url=resolved)
        except ValidationError as exc:
            reason = exc.errors()[0]["msg"].removeprefix("Value error, ")
            raise ValueError(f"proxy: {reason}") from None

    def _check_settings(self) -> None:
        try:
            self._integration_settings = REGISTRY[self.integration].Config.model_validate(
                self.settings
            )
        except ValidationError as exc:
            config = REGISTRY[self.integration].Config
            raise ValueError("\n".join(_errors(exc, config, "settings"))) from None

    def _resolve_headers(self) -> None:
        resolved: dict[str, str] = {}
        secret: set[str] = set()
        problems: list[str] = []
        for name, value in self.headers.items():
            if is_sensitive_name(name) and not has_reference(value):
                problems.append(
                    f"headers.{name}: credentials must be a reference like ${{env:NAME}}, "
                    "never a literal"
                )
                continue
            if is_template(value):
                try:
                    self._header_templates[name] = compile_template(value, escape=_one_line)
                except TemplateError as exc:
                    problems.append(f"headers.{name}: {exc}")
                    continue
            if has_reference(value):
                secret.add(name.lower())
                try:
                    value = single_line(resolve_references(value), f"headers.{name}")
                except ValueError as exc:
                    problems.append(f"headers.{name}: {exc}")
                    continue
            resolved[name] = value
        if problems:
            raise ValueError("\n".join(problems))
        self._resolved_headers = resolved
        self._secret_headers = frozenset(secret)

    def url_for(self, context: dict[str, Any]) -> str:
        """The URL, with templated parts filled from the envelope and ``payload``."""
        if self._url_template is None:
            return self._resolved_url
        return str(self._url_template.evaluate(context))

    def headers_for(self, context: dict[str, Any]) -> dict[str, str]:
        if not self._header_templates:
            return self._resolved_headers
        rendered = {n: t.evaluate(context) for n, t in self._header_templates.items()}
        for name, value in rendered.items():
            # A lead value must never add a header or end the request (CR/LF injection).
            if any(c < " " and c != "\t" for c in value) or "\x7f" in value:
                raise EvaluationError(f"header {name}: a control character in its value")
        return {**self._resolved_headers, **rendered}

    @property
    def url_template(self) -> str | None:
        """The URL as configured when a lead fills part of it (references unresolved)."""
        return self.url if self._url_template is not None else None

    @property
    def templated_headers(self) -> frozenset[str]:
        return frozenset(name.lower() for name in self._header_templates)

    # Read-only views for integrations: the models are checked, so these never fail.
    @property
    def module(self) -> ModuleType:
        return REGISTRY[self.integration]

    @property
    def tls_terms(self) -> ssl.SSLContext | bool:
        """What its requests' TLS checks: aiohttp's default verification (True), none
        (False, ``tls_verify: false``), or its own CA and client certificate."""
        if self.tls is None:
            return self.tls_verify
        return self.tls.context(self.tls_verify)

    @property
    def own_proxy(self) -> ForwardProxy | Literal["direct"] | None:
        """Its own forward proxy, "direct" to go without the worker's, or None: the
        worker's (``COURIER_HTTP_PROXY``), if any."""
        if self.proxy is not None and self.proxy.strip() == DIRECT:
            return DIRECT
        return self._proxy

    @property
    def resolved_headers(self) -> dict[str, str]:
        return self._resolved_headers

    @property
    def secret_headers(self) -> frozenset[str]:
        return self._secret_headers

    @property
    def compiled_mapping(self) -> CompiledMapping:
        assert self._compiled_mapping is not None  # set by the validator
        return self._compiled_mapping

    @property
    def integration_settings(self) -> BaseModel:
        assert self._integration_settings is not None
        return self._integration_settings


class DestinationsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Paths redacted for every destination (each may add its own).
    privacy: Privacy = Field(default_factory=lambda: Privacy())
    destinations: list[Destination] = Field(min_length=1)
    # What `courier insight` watches and says (streams/config/alerts.py); defaults apply.
    alerts: AlertRules = Field(default_factory=AlertRules)
    # Which destinations get a lead, in what order; none: every enabled destination, at once.
    flows: list[Flow] = Field(default_factory=list)

    _flows: list[CompiledFlow] = PrivateAttr(default_factory=list)

    @model_validator(mode="after")
    def _unique_ids_and_flows(self) -> DestinationsFile:
        for dest in self.destinations:
            dest.privacy = dest.privacy.with_paths(self.privacy.redact)
            if dest.ping is not None:
                dest.pinged.privacy = dest.privacy  # a ping's answer is redacted alike
        ids = [d.id for d in self.destinations]
        pinged = {d.id for d in self.destinations if d.ping is not None}
        # Flows are checked even beside an id used twice: every problem of the file at once.
        self._flows, flow_problems = _compiled_flows(enumerate(self.flows), set(ids), pinged)
        problems = _used_twice(ids) + flow_problems
        if problems:
            raise ValueError("\n".join(problems))
        if not self.flows:
            self._flows = [default_flow([d.id for d in self.destinations if d.enabled])]
        return self

    def active(self) -> list[Destination]:
        return [d for d in self.destinations if d.enabled]

    def by_id(self) -> dict[str, Destination]:
        return {d.id: d for d in self.destinations}

    def feedback_window_h(self) -> float:
        """The longest time after a sale in which a destination's feedback is taken (its
        return window, or how long it is polled; 0: none takes feedback): feedback is
        judged against the lead's state, which must be remembered that long."""
        return max((d.feedback.window_h() for d in self.destinations if d.feedback), default=0.0)

    @property
    def compiled_flows(self) -> list[CompiledFlow]:
        return self._flows


def load_destinations(path: Path) -> DestinationsFile:
    """Read and validate the destinations file; raise ConfigError listing every problem."""
    source = str(path)
    return parse_destinations(yaml_document(read_text_file(path), source), source)


def read_text_file(path: Path) -> str:
    """The file's text; ConfigError when it cannot be read or is not UTF-8."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot be read ({exc.strerror})"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(str(path), [f"is not UTF-8 text (byte {exc.start})"]) from None


# Values of a destinations file with its aliases expanded: a generous file (hundreds of
# destinations with their mappings) has tens of thousands.
MAX_DOCUMENT_VALUES = 1_000_000


def yaml_document(text: str, source: str) -> Any:
    """The YAML document in ``text``; ConfigError when it is not one we can read."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(source, [f"is not valid YAML: {exc}"]) from None
    except RecursionError:
        # PyYAML composes nested collections recursively: ~1,000 levels end the reader.
        raise ConfigError(source, ["is nested too deeply to be read as YAML"]) from None
    at = _past_values(document, MAX_DOCUMENT_VALUES)
    if at is not None:
        raise ConfigError(
            source,
            [
                f"{at}: the file is too large with its aliases expanded (more than "
                f"{MAX_DOCUMENT_VALUES:,} values): an alias repeated within itself?"
            ],
        )
    return document


def _past_values(document: Any, limit: int) -> str | None:
    """Where ``document``, its aliases expanded, passes ``limit`` values; None if it does
    not. An alias costs PyYAML one reference, but a value that repeats one ten times ten
    levels deep (a "billion laughs") is 10¹⁰ values in every request body that sends it
    (and in every worker that reads the version from the config topic): counted as it
    expands, up to the limit, never built."""
    count = 0
    pending: list[tuple[Any, str]] = [(document, "")]
    while pending:
        value, path = pending.pop()
        count += 1
        if count > limit:
            return path or "the file"
        if isinstance(value, dict):
            pending.extend((v, f"{path}.{k}" if path else str(k)) for k, v in value.items())
        elif isinstance(value, list):
            pending.extend((v, f"{path}[{i}]") for i, v in enumerate(value))
    return None


def parse_destinations(document: Any, source: str = "destinations") -> DestinationsFile:
    if document is None:  # an empty file (or only comments)
        raise ConfigError(source, ["is empty: a destinations file has a destinations: list"])
    try:
        return DestinationsFile.model_validate(document)
    except ValidationError as exc:
        errors = exc.errors()
        problems = [line for err in errors for line in _describe(err, document)]
        if all(err["loc"] for err in errors):  # the file's own checks did not run
            problems += _file_problems(document)
        raise ConfigError(source, problems) from None


def _used_twice(ids: Sequence[str | None]) -> list[str]:
    """Each destination id that a destination before it has too, by place."""
    problems: list[str] = []
    first_with: dict[str, int] = {}  # id → the place of the destination that has it
    for number, given in enumerate(ids):
        if given is None:
            continue
        if given in first_with:
            problems.append(
                f"destinations[{number}].id: {given!r} is used twice (destinations"
                f"[{first_with[given]}] has it too)"
            )
        first_with.setdefault(given, number)
    return problems


def _compiled_flows(
    flows: Iterable[tuple[int, Flow]], known: set[str], pinged: set[str]
) -> tuple[list[CompiledFlow], list[str]]:
    """The flows (by their place in the file) compiled, and every problem of them."""
    compiled: list[CompiledFlow] = []
    problems: list[str] = []
    for number, flow in flows:
        try:
            compiled.append(compile_flow(flow, known, pinged))
        except ValueError as exc:
            problems += [f"flows[{number}].{line}" for line in str(exc).splitlines()]
    return compiled, problems


def _file_problems(document: Any) -> list[str]:
    """Ids used twice and the flows' problems, when a field's problem kept pydantic from
    the file's own checks: against the ids the file names, so that one problem in a
    destination does not hide the rest."""
    if not isinstance(document, dict) or not isinstance(document.get("destinations"), list):
        return []
    named = [d if isinstance(d, dict) else {} for d in document["destinations"]]
    ids = [d.get("id") if isinstance(d.get("id"), str) else None for d in named]
    pinged = {i for d, i in zip(named, ids, strict=True) if i and d.get("ping") is not None}
    flows: list[tuple[int, Flow]] = []
    raw_flows = document.get("flows")
    for number, raw in enumerate(raw_flows if isinstance(raw_flows, list) else []):
        try:
            flows.append((number, Flow.model_validate(raw)))
        except ValidationError:
            continue  # its problems are among pydantic's already
    _, flow_problems = _compiled_flows(flows, {i for i in ids if i}, pinged)
    return _used_twice(ids) + flow_problems


def _describe(error: Any, document: Any) -> list[str]:
    """One pydantic error → one line per problem: ``path: reason (destination 'id')``."""
    path = ""
    for part in error["loc"]:
        if part in ("path", "spec") and path.startswith("destinations[") and ".mapping." in path:
            continue  # the union's tag, not a part of the user's file
        if isinstance(part, str) and part.startswith(STEP_TAG):
            continue  # a flow step's tag, the same
        if part == "[key]":
            continue  # pydantic's mark of a map's key: the key itself is the part before
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    named = _destination_named(error["loc"], document)
    if error["type"] == NOT_A_STEP:
        said = not_a_step(error["input"])
    else:
        said = explained(DestinationsFile, error)
    lines = []
    for message in said.removeprefix("Value error, ").splitlines():
        # Our model-level checks start with the field they are about ("url: ..."): join it on.
        head, sep, rest = message.partition(": ")
        if sep and head.startswith("[") and path:  # an item of the list at ``path``
            line = f"{path}{head}: {rest}"
        elif sep and head and " " not in head and not head.startswith("$"):
            line = f"{path}.{head}: {rest}" if path else f"{head}: {rest}"
        else:
            line = f"{path}: {message}" if path else message
        lines.append(line + named)
    return lines


def _destination_named(loc: tuple[Any, ...], document: Any) -> str:
    if len(loc) < 2 or loc[0] != "destinations" or not isinstance(loc[1], int):
        return ""
    try:
        dest_id = document["destinations"][loc[1]]["id"]
    except (KeyError, IndexError, TypeError):
        return ""
    return f" (destination {dest_id!r})" if isinstance(dest_id, str) else ""


def _errors(exc: ValidationError, model: type[BaseModel], at: str) -> list[str]:
    """Each error of a model nested at ``at``: ``at.loc: message``."""
    found = []
    for err in exc.errors():
        loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"])
        message = explained(model, err).removeprefix("Value error, ")
        found.append(f"{at}{loc}: {message}")
    return found


_BLOCK = re.compile(r"\{\{.*?\}\}")


def _quote_all(text: str) -> str:
    return quote(text, safe="")


def _one_line(text: str) -> str:
    # A value with a line break would start a header of its own (header injection).
    return text.replace("\r", " ").replace("\n", " ")


def _check_url(url: str, insecure: bool) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"url: {url!r} is not an http(s) URL")
    if parts.scheme == "http" and not insecure and not _is_loopback(parts.hostname):
        raise ValueError(
            f"url: plain http to {parts.hostname} is refused; use https "
            "(or set insecure: true for development)"
        )


def _check_url_template(url: str) -> None:
    """A lead may fill a URL's path and query, never where the request goes."""
    first_block = url.find("{{")
    if first_block < 0:
        return
    after_scheme = url.find("://") + 3
    authority_end = min(
        (i for i in (url.find(c, after_scheme) for c in "/?#") if i >= 0), default=len(url)
    )
    if first_block < authority_end:
        raise ValueError(
            "url: a template may fill the path and the query, never the scheme, host or port"
        )


def _check_url_credentials(url: str) -> None:
    """``?api_key=...`` and the like: a reference, never a literal credential."""
    parts = urlsplit(_BLOCK.sub("x", url))
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if is_sensitive_name(name) and not has_reference(value):
            raise ValueError(
                f"url: the query parameter {name!r} carries a credential: "
                "give it as a reference like ${env:NAME}, never a literal"
            )
    if "@" in parts.netloc:
        raise ValueError("url: credentials in the URL are refused; use auth: basic")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
