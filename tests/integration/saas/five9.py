"""A local Five9 Configuration Web Services endpoint for ``addRecordToList`` (SOAP 1.1).

Reads the request as Five9 documents it (listName; listUpdateSettings with fieldsMapping
columnNumber/fieldName/key and the add/update modes; record/fields in column order) and
answers ``addRecordToListResponse/return`` as a listImportResult. A contact whose key
fields match one already in the list is a duplicate (uploadDuplicatesCount 1, nothing
inserted); a contact already in the CRM and on the list is updated (crmRecordsUpdated 1,
listRecordsInserted 0: Five9's own example answer); an unknown list is a SOAP fault; wrong
credentials are HTTP 401. As Five9 documents, a login's requests may not overlap: a second
request while one is under way is refused with a fault; and ``transient`` makes the next
answer a ``ServerFault`` ("Resubmit the request"). The fault texts are ours; the fault
names (the ``detail`` element) are Five9's.
"""

from __future__ import annotations

import asyncio
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
        self.in_flight = 0
        self.most_in_flight = 0
        self.transient = 0  # the next answers that are a ServerFault
        self.known_contacts: set[str] = set()  # in the CRM and on the list already

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/wsadmin/v13/AdminWebService", self._call)
        return app

    @staticmethod
    def _fault(text: str, name: str = "") -> web.Response:
        detail = f'<detail><ns2:{name} xmlns:ns2="{SERVICE}"/></detail>' if name else ""
        body = _envelope(
            f"<env:Fault><faultcode>env:Server</faultcode><faultstring>{text}</faultstring>"
            f"{detail}</env:Fault>"
        )
        return web.Response(text=body, status=500, content_type="text/xml")

    async def _call(self, request: web.Request) -> web.Response:
        _, _, encoded = request.headers.get("Authorization", "").partition("Basic ")
        if base64.b64decode(encoded or b"").decode() != f"{USER}:{PASSWORD}":
            return web.Response(status=401, text="Unauthorized")
        if self.in_flight:
            return self._fault("Concurrent requests of one user are not allowed")
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0.02)  # long enough for an overlapping request to show
            return await self._add(request)
        finally:
            self.in_flight -= 1

    async def _add(self, request: web.Request) -> web.Response:
        if self.transient:
            self.transient -= 1
            return self._fault("Internal server error. Resubmit the request.", "ServerFault")
        try:
            envelope = ET.fromstring(await request.read())
        except ET.ParseError as exc:  # what its JAX-WS server says of ill-formed XML
            return self._fault(
                f"Couldn't create SOAP message due to exception: XML reader error: {exc}"
            )
        operation = envelope.find(f"{{{SOAP}}}Body/{{{SERVICE}}}addRecordToList")
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
        elif number in self.known_contacts:
            counts["crmRecordsUpdated"] = 1
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
