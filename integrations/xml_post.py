"""XML over HTTP: plain XML or a SOAP 1.1 / 1.2 envelope, built from the mapped fields.

The body is either a declared element tree (the payload: keys are element names, nested
objects nest, lists repeat the element, keys starting with ``@`` are attributes) or an XML
``template`` whose ``{{ }}`` blocks read ``payload.<field>`` and are XML-escaped.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any, Literal
from xml.sax.saxutils import escape

from pydantic import ConfigDict, PrivateAttr, model_validator

from streams.compiled_model import CompiledModel
from streams.errors import MappingError
from streams.model import HttpRequest, HttpResponse, Lead, Outcome, Target
from streams.outcome import default_outcome
from streams.template.conversions import xml_text
from streams.template.parser import CompiledTemplate, EvaluationError, compile_template

NAME = "xml_post"
DEFAULT_MAPPING: dict[str, str] = {}
SOAP_NAMESPACES = {
    "1.1": "http://schemas.xmlsoap.org/soap/envelope/",
    "1.2": "http://www.w3.org/2003/05/soap-envelope",
}
_XML_NAME = re.compile(r"^[A-Za-z_][\w.\-]*(:[A-Za-z_][\w.\-]*)?$")


class Config(CompiledModel):
    model_config = ConfigDict(extra="forbid")

    root: str = "lead"  # the element the fields go in (inside the SOAP operation, if any)
    namespace: str | None = None  # of the root element
    soap: Literal["1.1", "1.2"] | None = None
    soap_action: str | None = None
    template: str | None = None  # a whole XML body (or SOAP Body content) instead of a tree

    _template: CompiledTemplate | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _compile(self) -> Config:
        if not _XML_NAME.match(self.root):
            raise ValueError(f"root: {self.root!r} is not an XML element name")
        if self.template is not None:
            self._template = compile_template(self.template, escape=_escape_xml)
        return self

    @property
    def compiled_template(self) -> CompiledTemplate | None:
        return self._template


def _escape_xml(text: str) -> str:
    # Quotes too: a block may sit inside an attribute value.
    return escape(xml_text(text), {'"': "&quot;", "'": "&apos;"})


def validate(lead: Lead, settings: Config) -> str | None:
    return None


def request(payload: dict[str, Any], settings: Config, target: Target) -> HttpRequest:
    inner = (
        _template_body(settings, payload) if settings.template else _tree_body(settings, payload)
    )
    if settings.soap is None:
        body = b'<?xml version="1.0" encoding="UTF-8"?>\n' + inner
        return HttpRequest(
            target.method, target.url, {"Content-Type": "application/xml; charset=utf-8"}, body
        )
    ns = SOAP_NAMESPACES[settings.soap]
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<soap:Envelope xmlns:soap="{ns}"><soap:Body>'.encode()
        + inner
        + b"</soap:Body></soap:Envelope>"
    )
    action = settings.soap_action or ""
    if settings.soap == "1.1":
        headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{action}"'}
    else:
        content_type = "application/soap+xml; charset=utf-8"
        headers = {"Content-Type": f'{content_type}; action="{action}"' if action else content_type}
    return HttpRequest("POST", target.url, headers, body)


def _template_body(settings: Config, payload: dict[str, Any]) -> bytes:
    template = settings.compiled_template
    assert template is not None
    try:
        return str(template.evaluate({"payload": payload})).encode()
    except EvaluationError as exc:
        raise MappingError("template", f"template: {exc}") from None


def _tree_body(settings: Config, payload: dict[str, Any]) -> bytes:
    root = ET.Element(settings.root)
    if settings.namespace:
        root.set("xmlns", settings.namespace)
    _fill(root, payload)
    serialized: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=False)
    return serialized


def _fill(element: ET.Element, value: Any) -> None:
    if isinstance(value, dict):
        for key, child in value.items():
            if key.startswith("@"):
                element.set(_name(key[1:]), xml_text(child))
                continue
            for item in child if isinstance(child, list) else [child]:
                _fill(ET.SubElement(element, _name(key)), item)
    elif value is not None:
        element.text = xml_text(value)


def _name(key: str) -> str:
    if not _XML_NAME.match(key):
        raise MappingError(key, f"{key!r} is not an XML element name")
    return key


def response(req: HttpRequest, res: HttpResponse) -> Outcome:
    return default_outcome(res)
