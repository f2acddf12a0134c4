"""Form-encoded POST (``application/x-www-form-urlencoded``), as HTML forms and many lead
buyers' posting APIs take it. Nested fields are written ``contact[email]`` (or
``contact.email`` with ``nested: dots``); lists repeat their key.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from pydantic import AfterValidator, BaseModel, ConfigDict

from streams.model import HttpRequest, HttpResponse, Lead, Outcome, Target, text_codec
from streams.outcome import default_outcome
from streams.template.conversions import to_text

NAME = "form_post"
DEFAULT_MAPPING: dict[str, str] = {}
CONTENT_TYPE = "application/x-www-form-urlencoded"


def _known_charset(name: str) -> str:
    codec = text_codec(name)
    if codec is None:
        raise ValueError(f"{name!r} is not a charset Python knows (utf-8, windows-1252…)")
    return codec


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    nested: Literal["brackets", "dots"] = "brackets"
    # The charset the recipient's form reads (an older PHP or ASP endpoint on Windows-1252
    # read UTF-8's "José" as "JosÃ©"). A character it lacks goes as a browser sends it in a
    # form: &#NNNN;.
    charset: Annotated[str, AfterValidator(_known_charset)] = "utf-8"


def encoded(pairs: list[tuple[str, str]], charset: str) -> str:
    """The pairs percent-encoded in ``charset``, as a browser encodes a form."""
    return urlencode(pairs, encoding=charset, errors="xmlcharrefreplace")


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
    body = encoded(form_pairs(payload, settings.nested), settings.charset).encode("ascii")
    return HttpRequest(target.method, target.url, {"Content-Type": CONTENT_TYPE}, body)


def response(req: HttpRequest, res: HttpResponse) -> Outcome:
    return default_outcome(res)
