"""A destination's ``feedback:`` block: how its recipient tells us what became of a lead
(returned, converted, contacted, disqualified, a status), and how we check it is them.

```yaml
feedback:
  secret: ${env:BUYER_A_FEEDBACK_SECRET}   # HMAC-SHA256 key, token, or Basic password
  auth: hmac                               # hmac (default), token, query_token, basic,
                                           # api_key, hubspot
  notices: $.events                        # where several are, when they send a few at once
  lead_id: $.lead_id                       # JSON paths into what they send (JSON, forms, XML)
  reference_id: $.their_id                 # their own id for the lead (instead or as well)
  kind: $.event
  reason: $.reason
  amount: $.amount
  at: $.occurred_at
  return_window_days: 7
  poll:                                    # for a recipient with a status API only
    url: https://buyer.example.com/api/leads/{reference_id}
    every_minutes: 60                      # or every: 1h
    for_days: 7                            # or until: 7d
```

A ``poll`` asks the recipient, for each lead it accepted, at ``url`` (``{reference_id}``,
``{lead_id}`` filled in) with the destination's own ``auth``, every ``every_minutes`` for
``for_days`` after the sale; its answer is read with the same paths as a notice it sends,
and a change (a kind, status or reason not seen before for the lead) becomes a notice.
Polling stops at a return, a conversion or a disqualification. ``secret`` is needed
only for notices sent to us.

Paths compile when the configuration loads; the words a recipient uses for each kind and
reason are matched case-insensitively (``kinds``, ``reasons`` extend the defaults).
"""

from __future__ import annotations

import re
from typing import Literal

from jsonpath_ng import JSONPath
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from streams.auth import Secret
from streams.compiled_model import CompiledModel
from streams.config.response_rules import compile_json_path

FEEDBACK_KINDS = ("returned", "converted", "contacted", "disqualified", "status")
# The words recipients use, per kind (lower case); anything else is a ``status``.
DEFAULT_KIND_WORDS: dict[str, list[str]] = {
    # affiliate platforms' postbacks too: a conversion "approved", a reversed one
    "returned": [
        "returned",
        "return",
        "rejected",
        "refund",
        "refunded",
        "credit",
        "chargeback",
        "charge back",
        "reversed",
        "reversal",
    ],
    "converted": [
        "converted",
        "conversion",
        "sold",
        "sale",
        "won",
        "closed won",
        "funded",
        "approved",
    ],
    "contacted": ["contacted", "reached", "called", "answered"],
    "disqualified": ["disqualified", "dq", "unqualified", "not qualified", "invalid"],
}
# Normalised reasons and the words (found as whole words, any case) that mean them.
DEFAULT_REASON_WORDS: dict[str, list[str]] = {
    # Besides the first words, those lead buyers' return lists use (each was no reason:
    # "Phone invalid", "Fax tone", "Never filled out a form", "Prank", "Fraudulent")
    "Bad phone": [
        "bad phone",
        "wrong number",
        "disconnected",
        "invalid phone",
        "bad number",
        "not a working number",
        "not in service",
        "phone invalid",
        "invalid number",
        "no such number",
        "wrong phone",
        "non-working",
        "nonworking",
        "fax tone",
        "fax machine",
    ],
    "Bad email": ["bad email", "invalid email", "bounced", "email invalid", "undeliverable"],
    "Duplicate": ["duplicate", "already have", "dupe"],
    "Did not request": [
        "did not request",
        "didn't request",
        "never requested",
        "not requested",
        "did not fill",
        "didn't fill",
        "never filled",
        "did not submit",
        "didn't submit",
        "never submitted",
        "did not apply",
        "didn't apply",
        "never applied",
    ],
    "Fraud": ["fraud", "fraudulent", "fake", "bot", "prank", "fictitious", "bogus"],
    "Not interested": ["not interested", "no longer interested"],
    "Outside service area": [
        "outside service area",
        "out of area",
        "service area",
        "out of state",
        "outside area",
        "out of territory",
    ],
    "Underage": ["underage", "under 18", "a minor", "under age", "too young"],  # not "Minor issue"
}
MAX_BODY_BYTES = 65_536
DEFAULT_RETURN_WINDOW_DAYS = 7.0


POLL_PLACEHOLDERS = ("{reference_id}", "{lead_id}")
# ``{{reference_id}}`` (as mapping templates write names) is the same placeholder.
_TEMPLATE_PLACEHOLDER = re.compile(r"\{\{\s*(reference_id|lead_id)\s*\}\}")
_ANY_PLACEHOLDER = re.compile(r"\{[^{}]*\}")
# "30m", "1h", "7d": how often and how long, as people write it.
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def _seconds(text: str, name: str) -> float:
    found = _DURATION.match(text)
    if found is None:
        raise ValueError(f"{name}: {text!r} is not a duration like 30m, 1h or 7d")
    return float(found[1]) * _SECONDS[found[2]]


class PollConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str
    every_minutes: float = Field(default=60.0, ge=0.1, le=10_080.0)
    for_days: float = Field(default=7.0, gt=0, le=365.0)
    # The same as a duration ("1h", "7d"); one or the other.
    every: str | None = None
    until: str | None = None

    @model_validator(mode="after")
    def _url_holds(self) -> PollConfig:
        if not self.url.startswith(("https://", "http://")):
            raise ValueError("url: must start with https:// (or http:// with insecure: true)")
        self.url = _TEMPLATE_PLACEHOLDER.sub(r"{\1}", self.url)
        unknown = [p for p in _ANY_PLACEHOLDER.findall(self.url) if p not in POLL_PLACEHOLDERS]
        if unknown:
            # It was sent as it is, to a URL the recipient does not have, every interval.
            raise ValueError(
                f"url: unknown placeholder {unknown[0]} (use {{reference_id}} or {{lead_id}})"
            )
        return self

    @model_validator(mode="after")
    def _durations(self) -> PollConfig:
        """``every: 1h``, ``until: 7d``: the same as ``every_minutes``, ``for_days``."""
        if self.every is not None:
            if "every_minutes" in self.model_fields_set:
                raise ValueError("every: give every or every_minutes, not both")
            minutes = _seconds(self.every, "every") / 60
            if not 0.1 <= minutes <= 10_080:
                raise ValueError(f"every: {self.every!r} is not between 6s and 7d")
            self.every_minutes = minutes
        if self.until is not None:
            if "for_days" in self.model_fields_set:
                raise ValueError("until: give until or for_days, not both")
            days = _seconds(self.until, "until") / 86400
            if not 0 < days <= 365:
                raise ValueError(f"until: {self.until!r} is not more than 0 and at most 365d")
            self.for_days = days
        return self


class FeedbackConfig(CompiledModel):
    model_config = ConfigDict(extra="forbid")

    secret: Secret | None = None  # for notices the recipient sends (POST /feedback/…)
    # hmac: the body's signature; token: "Authorization: Bearer <secret>"; query_token: the
    # secret in the url's ``token_parameter``, for postbacks (GET /feedback/…?lead_id=…)
    # from platforms whose postback urls can carry nothing else; basic: "Authorization:
    # Basic" with ``username`` and the secret as its password (Pipedrive's webhooks, and
    # every sender whose only option is a user and a password).
    # api_key: the secret in a header of the sender's choosing, ``key_header`` (HubSpot's
    # workflow webhooks, Zapier's and most lead platforms' "custom header" option).
    # hubspot: HubSpot's own signatures (its request-validation guide): v3 (an HMAC of the
    # method, the url it called, the body and its timestamp, at most 5 minutes old) when
    # ``public_url`` is given, else the v1 one of the webhooks API (the body's SHA-256
    # after the app's client secret).
    auth: Literal["hmac", "token", "query_token", "basic", "api_key", "hubspot"] = "hmac"
    # hmac: the header carrying the HMAC-SHA256 of the body, in hex or base64, with or
    # without a "sha256=" before it (ours, GitHub's and Meta's, Shopify's all differ)
    signature_header: str = "X-Courier-Signature"
    username: str | None = Field(default=None, min_length=1, max_length=200)
    token_parameter: str = Field(default="token", min_length=1, max_length=64)
    key_header: str = Field(default="X-Api-Key", min_length=1, max_length=64)
    # The url the sender calls, as it calls it (a proxy in front of the worker may change
    # it): ``auth: hubspot``'s v3 signature covers it.
    public_url: str | None = Field(default=None, pattern=r"^https?://[^\s?#]+$")
    # Salesforce's outbound messages: the org that may send them (its Organization ID, 15
    # or 18 characters), as Salesforce's guide asks of a listener; another org's (a leaked
    # url's) is refused, as is a message that names none.
    organization_id: str | None = Field(
        default=None, pattern=r"^00D[A-Za-z0-9]{12}(?:[A-Za-z0-9]{3})?$"
    )
    # Where the notices are in what is sent, when it holds several (a list found there, or
    # each match, is one notice each): Salesforce's outbound messages,
    # ``$.Envelope.Body.notifications.Notification``. A JSON list is always read so.
    notices: str | None = None
    lead_id: str | None = "$.lead_id"
    reference_id: str | None = None
    kind: str = "$.kind"
    reason: str | None = "$.reason"
    amount: str | None = "$.amount"
    at: str | None = "$.at"
    status: str | None = None  # the recipient's own status word, for kind ``status``
    kinds: dict[Literal["returned", "converted", "contacted", "disqualified"], list[str]] = Field(
        default_factory=dict
    )
    reasons: dict[str, list[str]] = Field(default_factory=dict)
    return_window_days: float = Field(default=DEFAULT_RETURN_WINDOW_DAYS, gt=0, le=365)
    max_body_bytes: int = Field(default=MAX_BODY_BYTES, ge=256, le=1_048_576)
    poll: PollConfig | None = None

    _paths: dict[str, JSONPath] = PrivateAttr(default_factory=dict)
    _kind_words: dict[str, str] = PrivateAttr(default_factory=dict)
    _reason_words: list[tuple[re.Pattern[str], str]] = PrivateAttr(default_factory=list)

    def window_h(self) -> float:
        """Hours after a sale in which feedback comes: returns, or the polls' answers."""
        polled_days = self.poll.for_days if self.poll is not None else 0.0
        return max(self.return_window_days, polled_days) * 24

    @model_validator(mode="after")
    def _compile(self) -> FeedbackConfig:
        if self.lead_id is None and self.reference_id is None:
            raise ValueError("give lead_id or reference_id: how a notice names its lead")
        if (self.auth == "basic") != (self.username is not None):
            raise ValueError("username: give it with auth: basic, and only then")
        if self.secret is None and self.poll is None:
            raise ValueError(
                "secret: needed to check notices the recipient sends (or give poll: to ask it)"
            )
        names = ("notices", "lead_id", "reference_id", "kind", "reason", "amount", "at", "status")
        for name in names:
            path = getattr(self, name)
            if path is not None:
                try:
                    self._paths[name] = compile_json_path(path)
                except ValueError as exc:
                    raise ValueError(f"{name}: {exc}") from None
        kinds = dict(DEFAULT_KIND_WORDS)
        kinds.update(self.kinds.items())
        for kind, words in kinds.items():
            for word in words:
                self._kind_words[word.strip().lower()] = kind
        reasons = dict(self.reasons)  # a destination's own words first
        for reason, words in DEFAULT_REASON_WORDS.items():
            reasons.setdefault(reason, words)
        for reason, words in reasons.items():
            self._reason_words += [(_whole_words(word), reason) for word in words]
        return self

    def path(self, name: str) -> JSONPath | None:
        return self._paths.get(name)

    def kind_of(self, word: str) -> str:
        """A recipient's word for what happened → one of ``FEEDBACK_KINDS``: as written, then
        in words (``closed_won``, ``Charge-Back``), without the lead it is about (``Lead
        Returned``), before its reason (``Returned - Bad Phone``), or a kind approved
        (``Return Approved``). Each but the first was a ``status``: a return that never
        credited its sale. A kind refused (``Return Denied``) is not that kind."""
        said = word.strip().lower()
        kind = self._kind_words.get(said)
        if kind is not None:
            return kind
        head = _KIND_REASON.split(said, maxsplit=1)[0]
        for text in dict.fromkeys((said, head)):
            words = _KIND_SEPARATORS.sub(" ", text).strip()
            words = words.removeprefix("lead ")
            for candidate in (words, _KIND_APPROVED.sub("", words)):
                kind = self._kind_words.get(candidate)
                if kind is not None:
                    return kind
        return "status"

    def reason_of(self, text: str) -> str | None:
        """A recipient's reason → our normalised one, or None when none fits."""
        for words, reason in self._reason_words:
            if words.search(text):
                return reason
        return None


# How a kind is written in words: "closed_won", "Charge-Back", "Closed - Won".
_KIND_SEPARATORS = re.compile(r"[\s_\-]+")
# A reason after the kind: "Returned - Bad Phone", "Returned: duplicate", "RETURNED|fax".
_KIND_REASON = re.compile(r"\s+[-\u2013|]\s+|\s*[:|(]\s*")
# A kind its platform approved: "Return Approved", "Refund issued", "Chargeback processed".
_KIND_APPROVED = re.compile(r" (?:approved|accepted|confirmed|processed|issued|completed)$")


def _whole_words(words: str) -> re.Pattern[str]:
    """Words found as words, any case: "bot" (Fraud) was found in "Both phone and email
    invalid", "Bottom of funnel" and "Abbott", "minor" (Underage) in "Minor issue"."""
    return re.compile(rf"(?<!\w){re.escape(words.strip())}(?!\w)", re.IGNORECASE)
