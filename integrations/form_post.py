"""Form-encoded POST (``application/x-www-form-urlencoded``), as HTML forms and many lead
buyers' posting APIs take it. Nested fields are written ``contact[email]`` (or
``contact.email`` with ``nested: dots``); lists repeat their key.
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlencode

from pydantic import BaseModel, ConfigDict

from streams.model import HttpRequest, HttpResponse, Lead, Outcome, Target
from streams.outcome import default_outcome
from streams.template.conversions import to_text

NAME = "form_post"
DEFAULT_MAPPING: dict[str, str] = {}
CONTENT_TYPE = "application/x-www-form-urlencoded"


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    nested: Literal["brackets", "dots"] = "brackets"


def form_pairs(payload: dict[str, Any], nested: str = "brackets") -> list[tuple[str, str]]:
    """A payload as (name, value) pairs, in the payload's order."""
    pairs: list[tuple[str, str]] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, child in value.items():
                name = (
                    key
                    if not prefix
                    else (f"{prefix}[{key}]" if nested == "brackets" else f"{prefix}.{key}")
                )
                walk(name, child)
        elif isinstance(value, list):
            for item in value:
                walk(prefix, item)
        else:
            pairs.append((prefix, to_text(value)))

    walk("", payload)
    return pairs


def validate(lead: Lead, settings: Config) -> str | None:
    return None


def request(payload: dict[str, Any], settings: Config, target: Target) -> HttpRequest:
    body = urlencode(form_pairs(payload, settings.nested)).encode()
    return HttpRequest(target.method, target.url, {"Content-Type": CONTENT_TYPE}, body)


def response(req: HttpRequest, res: HttpResponse) -> Outcome:
    return default_outcome(res)
