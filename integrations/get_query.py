"""GET with the mapped fields as query parameters (percent-encoded, after any query the
URL already has), for recipients whose "API" is a URL to call."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from integrations.form_post import Config as FormConfig
from integrations.form_post import encoded, form_pairs
from streams.model import HttpRequest, HttpResponse, Lead, Outcome, Target
from streams.outcome import default_outcome

NAME = "get_query"
DEFAULT_MAPPING: dict[str, str] = {}


class Config(FormConfig):
    """As a form's: ``nested``, and ``charset`` for an older endpoint's query string."""


def validate(lead: Lead, settings: Config) -> str | None:
    return None


def request(payload: dict[str, Any], settings: Config, target: Target) -> HttpRequest:
    url, query = target.url, encoded(form_pairs(payload, settings.nested), settings.charset)
    if query:
        url = f"{url}{'&' if urlsplit(url).query else '?'}{query}"
    return HttpRequest("GET", url, {"Accept": "application/json, */*"})


def response(req: HttpRequest, res: HttpResponse) -> Outcome:
    return default_outcome(res)
