"""GET with the mapped fields as query parameters (percent-encoded, after any query the
URL already has), for recipients whose "API" is a URL to call."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlencode, urlsplit

from pydantic import BaseModel, ConfigDict

from integrations.form_post import form_pairs
from streams.model import HttpRequest, HttpResponse, Lead, Outcome
from streams.stages.outcome import default_outcome

if TYPE_CHECKING:
    from streams.config import Destination

NAME = "get_query"
DEFAULT_MAPPING: dict[str, str] = {}


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    nested: Literal["brackets", "dots"] = "brackets"


def validate(lead: Lead, destination: Destination) -> str | None:
    return None


def request(payload: dict[str, Any], destination: Destination, url: str) -> HttpRequest:
    settings = destination.integration_settings
    assert isinstance(settings, Config)
    query = urlencode(form_pairs(payload, settings.nested))
    if query:
        url = f"{url}{'&' if urlsplit(url).query else '?'}{query}"
    return HttpRequest("GET", url, {"Accept": "application/json, */*"})


def response(req: HttpRequest, res: HttpResponse) -> Outcome:
    return default_outcome(res)
