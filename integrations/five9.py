"""Five9 Configuration Web Services: ``addRecordToList`` (SOAP 1.1, HTTP Basic auth), which
adds a record to a dialing list and, by the settings, inserts or updates the contact.

The mapped fields become the record's columns, in mapping order; ``key_fields`` are the
contact fields matched to find an existing contact. The answer's ``return`` is a
listImportResult: ``listRecordsInserted``, ``crmRecordsInserted``/``Updated``,
``uploadDuplicatesCount``, ``uploadErrorsCount``, ``failureMessage``. Refusals arrive as
SOAP faults (HTTP 500) whose ``faultstring`` says why.
"""

from __future__ import annotations

import base64
from typing import Any, Literal
from xml.sax.saxutils import escape

import defusedxml.ElementTree as SafeET
from pydantic import BaseModel, ConfigDict, Field, model_validator

from streams.auth import Secret
from streams.model import HttpRequest, HttpResponse, Lead, Outcome, OutcomeCategory, Target
from streams.outcome import (
    RAW_LIMIT,
    REASON_LIMIT,
    auth_failed,
    configuration_refused,
    default_outcome,
    rate_limited,
)
from streams.secrets import SCRUBBER
from streams.template.conversions import xml_text

NAME = "five9"
# Five9 denies a login's concurrent requests, and documents addRecordToList at 160 a
# minute, 7,200 an hour and 172,800 a day: one at a time, 160/60 a second, and no more than
# 7,200 in any hour or 172,800 in any day, unless the destination's limits say otherwise.
DEFAULT_LIMITS = {"concurrency": 1, "per_second": 160 / 60, "per_hour": 7200, "per_day": 172_800}
# Faults Five9 documents as passing ("Resubmit the request"): retried.
TRANSIENT_FAULTS = frozenset({"ServiceUnavailableFault", "ServerFault", "InternalImportFault"})
DEFAULT_URL = "https://api.five9.com/wsadmin/v13/AdminWebService"
DEFAULT_MAPPING: dict[str, str] = {
    "number1": "lead.phone_1",
    "first_name": "lead.first_name",
    "last_name": "lead.last_name",
    "email": "lead.email",
    "state": "lead.state",
    "zip": "lead.zip",
}
SERVICE_NS = "http://service.admin.ws.five9.com/"
SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str
    password: Secret
    list_name: str
    key_fields: list[str] = Field(default_factory=lambda: ["number1"], min_length=1)
    crm_add_mode: Literal["ADD_NEW", "DONT_ADD"] = "ADD_NEW"
    crm_update_mode: Literal["UPDATE_FIRST", "UPDATE_ALL", "UPDATE_SOLE_MATCHES", "DONT_UPDATE"] = (
        "UPDATE_FIRST"
    )
    list_add_mode: Literal["ADD_FIRST", "ADD_ALL", "ADD_IF_SOLE_CRM_MATCH"] = "ADD_FIRST"

    @model_validator(mode="after")
    def _known_to_scrubber(self) -> Config:
        SCRUBBER.keep_basic(self.username, self.password.get_secret_value())
        return self

    call_now: bool = False


def validate(lead: Lead, settings: Config) -> str | None:
    return None if lead.get("phone_1") else "phone_1 is required"


def request(payload: dict[str, Any], settings: Config, target: Target) -> HttpRequest:
    columns = [
        (name, value) for name, value in payload.items() if not isinstance(value, dict | list)
    ]
    mapping = "".join(
        f"<fieldsMapping><columnNumber>{n}</columnNumber><fieldName>{escape(xml_text(name))}</fieldName>"
        f"<key>{'true' if name in settings.key_fields else 'false'}</key></fieldsMapping>"
        for n, (name, _) in enumerate(columns, start=1)
    )
    fields = "".join(f"<fields>{escape(xml_text(value))}</fields>" for _, value in columns)
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<soapenv:Envelope xmlns:soapenv="{SOAP_NS}" '
        f'xmlns:ser="{SERVICE_NS}"><soapenv:Body><ser:addRecordToList>'
        f"<listName>{escape(xml_text(settings.list_name))}</listName><listUpdateSettings>{mapping}"
        f"<skipHeaderLine>false</skipHeaderLine>"
        f"<callNowMode>{'ANY' if settings.call_now else 'NONE'}</callNowMode>"
        f"<cleanListBeforeUpdate>false</cleanListBeforeUpdate>"
        f"<crmAddMode>{settings.crm_add_mode}</crmAddMode>"
        f"<crmUpdateMode>{settings.crm_update_mode}</crmUpdateMode>"
        f"<listAddMode>{settings.list_add_mode}</listAddMode></listUpdateSettings>"
        f"<record>{fields}</record></ser:addRecordToList></soapenv:Body></soapenv:Envelope>"
    ).encode()
    pair = f"{settings.username}:{settings.password.get_secret_value()}".encode()
    headers = {
        "Content-Type": "text/xml; charset=utf-8",
        "SOAPAction": '""',
        "Authorization": f"Basic {base64.b64encode(pair).decode()}",
    }
    return HttpRequest("POST", target.url, headers, body, frozenset({"authorization"}))


def response(req: HttpRequest, res: HttpResponse) -> Outcome:
    raw = res.text[:RAW_LIMIT] or None
    if res.status == 401:
        return auth_failed("HTTP 401", raw)
    try:
        root = SafeET.fromstring(res.body)
    except Exception:  # not XML: an HTML error page, a proxy's answer
        return default_outcome(res)
    fault = root.find(f".//{{{SOAP_NS}}}Fault")
    if fault is not None:
        message = (fault.findtext("faultstring") or "").strip()
        detail = fault.find("detail")
        name = detail[0].tag.rsplit("}", 1)[-1] if detail is not None and len(detail) else ""
        if name in TRANSIENT_FAULTS:
            return Outcome.error(
                f"Recipient error (Five9 {name})",
                retryable=True,
                raw=raw,
                category=OutcomeCategory.RECIPIENT_ERROR,
            )
        if "limit" in message.lower():
            return rate_limited(raw)
        if name in ("ObjectNotFoundFault", "AccessDisallowedFault") or "does not exist" in message:
            # A list or permission every lead would meet: the configuration's, not the lead's.
            return configuration_refused(f"Five9: {message[:60]}", raw)
        return Outcome.error(message[:REASON_LIMIT] or "SOAP fault", retryable=False, raw=raw)
    result = root.find(f".//{{{SERVICE_NS}}}addRecordToListResponse/return")
    if result is None:
        return Outcome.error("Unreadable response", retryable=False, raw=raw)
    counts = {child.tag: (child.text or "").strip() for child in result if len(child) == 0}
    troubles = [
        (t.findtext("trouble") or t.findtext("kind") or "").strip()
        for t in result.findall("importTroubles")
    ]

    def number(name: str) -> int:
        text = counts.get(name) or "0"
        return int(text) if text.isascii() and text.isdigit() else 0

    if number("uploadErrorsCount") or (troubles and not number("listRecordsInserted")):
        why = counts.get("failureMessage") or "; ".join(t for t in troubles if t)
        reason = f"Invalid data: {why}".strip(": ")
        return Outcome.failure(
            reason[:REASON_LIMIT], raw=raw, category=OutcomeCategory.INVALID_DATA
        )
    if number("listRecordsInserted"):
        appended = {
            k: counts[k] for k in ("crmRecordsInserted", "crmRecordsUpdated") if k in counts
        }
        return Outcome.success(appended=appended, raw=raw)
    if number("uploadDuplicatesCount"):
        return Outcome.failure("Duplicate lead", raw=raw, category=OutcomeCategory.DUPLICATE)
    if number("crmRecordsUpdated"):
        # Five9's own example answer for a contact it knew: updated, not inserted into the
        # list (it is on it already): for billing, a duplicate.
        return Outcome.failure(
            "Duplicate lead (contact updated)", raw=raw, category=OutcomeCategory.DUPLICATE
        )
    return Outcome.failure("Not added to the list", raw=raw)
