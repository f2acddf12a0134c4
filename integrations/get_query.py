"""GET with the mapped fields as query parameters (percent-encoded, after any query the
URL already has), for recipients whose "API" is a URL to call."""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlencode, urlsplit

from pydantic import BaseModel, ConfigDict

from integrations.form_post import form_pairs
from streams.model import HttpRequest, HttpResponse, Lead, Outcome, Target
from streams.outcome import default_outcome

NAME = "get_query"
DEFAULT_MAPPING: dict[str, str] = {}


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    nested: Literal["brackets", "dots"] = "brackets"


def validate(lead: Lead, settings: Config) -> str | None:
    return None


def request(payload: dict[str, Any], settings: Config, target: Target) -> HttpRequest:
    url, query = target.url, urlencode(form_pairs(payload, settings.nested))
    if query:
        url = f"{url}{'&' if urlsplit(url).query else '?'}{query}"
    return HttpRequest("GET", url, {"Accept": "application/json, */*"})


def response(req: HttpRequest, res: HttpResponse) -> Outcome:
    return default_outcome(res)
