"""Generic JSON over HTTP: the mapped payload as the body, POST (or PUT/PATCH) to the URL.

Answers are read by the defaults in streams/outcome.py: 2xx success (``id`` and
``price`` captured), 4xx failure with the recipient's message, 408/429/5xx retryable errors.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from streams.model import HttpRequest, HttpResponse, Lead, Outcome, Target
from streams.outcome import default_outcome

NAME = "json_post"
DEFAULT_MAPPING: dict[str, str] = {}


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")


def validate(lead: Lead, settings: Config) -> str | None:
    return None


def request(payload: dict[str, Any], settings: Config, target: Target) -> HttpRequest:
    return HttpRequest.json(target.method, target.url, payload)


def response(req: HttpRequest, res: HttpResponse) -> Outcome:
    return default_outcome(res)
