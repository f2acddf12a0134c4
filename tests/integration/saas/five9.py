"""A local Five9 Configuration Web Services endpoint for ``addRecordToList`` (SOAP 1.1).

Reads the request as Five9 documents it (listName; listUpdateSettings with fieldsMapping
columnNumber/fieldName/key and the add/update modes; record/fields in column order) and
answers ``addRecordToListResponse/return`` as a listImportResult. A contact whose key
fields match one already in the list is a duplicate (uploadDuplicatesCount 1, nothing
inserted); an unknown list is a SOAP fault; wrong credentials are HTTP 401.
"""

from __future__ import annotations

import base64
from typing import Any
from xml.etree import ElementTree as ET

from aiohttp import web

from tests.integration.local_server import LocalServer

USER, PASSWORD, LIST = "api@example.com", "f9-pass", "Hot Leads"
SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
SERVICE = "http://service.admin.ws.five9.com/"


def _envelope(inner: str) -> str:
    return f'<?xml version="1.0" encoding="UTF-8"?><env:Envelope xmlns:env="{SOAP}"><env:Body>{inner}</env:Body></env:Envelope>'


class Five9Double(LocalServer):
    def __init__(self) -> None:
        super().__init__()
        self.keys: set[tuple[str, ...]] = set()
        self.records: list[dict[str, str]] = []
        self.settings: list[dict[str, Any]] = []

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/wsadmin/v13/AdminWebService", self._call)
        return app

    @staticmethod
    def _fault(text: str) -> web.Response:
        body = _envelope(
            f"<env:Fault><faultcode>env:Server</faultcode><faultstring>{text}</faultstring></env:Fault>"
        )
        return web.Response(text=body, status=500, content_type="text/xml")

    async def _call(self, request: web.Request) -> web.Response:
        _, _, encoded = request.headers.get("Authorization", "").partition("Basic ")
        if base64.b64decode(encoded or b"").decode() != f"{USER}:{PASSWORD}":
            return web.Response(status=401, text="Unauthorized")
        operation = ET.fromstring(await request.read()).find(
            f"{{{SOAP}}}Body/{{{SERVICE}}}addRecordToList"
        )
        if operation is None:
            return self._fault("Unknown operation")
        list_name = operation.findtext("listName")
        if list_name != LIST:
            return self._fault(f'List "{list_name}" does not exist')
        mapping = [
            (
                int(m.findtext("columnNumber") or 0),
                m.findtext("fieldName") or "",
                m.findtext("key") == "true",
            )
            for m in operation.iterfind("listUpdateSettings/fieldsMapping")
        ]
        values = [f.text or "" for f in operation.iterfind("record/fields")]
        record = {name: values[column - 1] for column, name, _ in mapping}
        settings = operation.find("listUpdateSettings")
        self.settings.append(
            {c.tag: c.text for c in settings if c.tag != "fieldsMapping"}
            if settings is not None
            else {}
        )
        counts = dict.fromkeys(
            (
                "crmRecordsInserted",
                "crmRecordsUpdated",
                "listRecordsDeleted",
                "listRecordsInserted",
                "uploadDuplicatesCount",
                "uploadErrorsCount",
            ),
            0,
        )
        failure = ""
        number = record.get("number1", "")
        key = tuple(record[name] for _, name, is_key in mapping if is_key)
        if not number.isdigit() or len(number) != 10:
            counts["uploadErrorsCount"], failure = 1, "number1: Invalid phone number"
        elif key in self.keys:
            counts["uploadDuplicatesCount"] = 1
        else:
            self.keys.add(key)
            self.records.append(record)
            counts["crmRecordsInserted"] = counts["listRecordsInserted"] = 1
        fields = "".join(f"<{k}>{v}</{k}>" for k, v in counts.items())
        message = f"<failureMessage>{failure}</failureMessage>" if failure else ""
        body = _envelope(
            f'<ns2:addRecordToListResponse xmlns:ns2="{SERVICE}"><return>{fields}<listName>{LIST}</listName>{message}</return></ns2:addRecordToListResponse>'
        )
        return web.Response(text=body, content_type="text/xml")
