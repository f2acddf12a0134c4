"""A local Mailchimp Marketing API 3.0 list-members endpoint, answering as Mailchimp does:

- ``PUT /3.0/lists/{list_id}/members/{md5(lowercase email)}`` upserts → 200 with the member;
- ``POST /3.0/lists/{list_id}/members`` creates → 200, or 400 problem+json titled
  "Member Exists" ("… is already a list member. Use PUT to insert or update list members.");
- a member who unsubscribed or bounced (``kept_out``): an upsert with ``status_if_new``
  updates its fields and answers 200 with its status as it was; one that asks for
  ``status: subscribed`` → 400 "Member In Compliance State" ("… is in a compliance state due
  to unsubscribe, bounce, or compliance review and cannot be subscribed.");
- a malformed address → 400 "Invalid Resource" with an ``errors`` array;
- a wrong key (Basic auth, any user name) → 401 "API Key Invalid";
- an unknown list → 404 "Resource Not Found";
- more than ``max_requests`` → 429 "Too Many Requests".
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from typing import Any

from aiohttp import web

from tests.integration.local_server import LocalServer

API_KEY = "0123456789abcdef0123456789abcdef-us6"
LIST_ID = "a1b2c3d4e5"
ERRORS_DOC = "https://mailchimp.com/developer/marketing/docs/errors/"


def _hash(email: str) -> str:
    return hashlib.md5(email.lower().encode(), usedforsecurity=False).hexdigest()


class MailchimpDouble(LocalServer):
    def __init__(self, max_requests: int = 1000) -> None:
        super().__init__()
        self.members: dict[str, dict[str, Any]] = {}
        self.bodies: list[dict[str, Any]] = []
        self.methods: list[str] = []
        self.max_requests = max_requests

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_put("/3.0/lists/{list_id}/members/{subscriber_hash}", self._upsert)
        app.router.add_post("/3.0/lists/{list_id}/members", self._create)
        return app

    @staticmethod
    def _problem(status: int, title: str, detail: str, **extra: Any) -> web.Response:
        body = {
            "type": ERRORS_DOC,
            "title": title,
            "status": status,
            "detail": detail,
            "instance": str(uuid.uuid4()),
            **extra,
        }
        return web.json_response(body, status=status, content_type="application/problem+json")

    def _refusal(self, request: web.Request) -> web.Response | None:
        self.methods.append(request.method)
        if len(self.methods) > self.max_requests:
            return self._problem(
                429,
                "Too Many Requests",
                "You have exceeded the limit of 10 simultaneous connections.",
            )
        _, _, encoded = request.headers.get("Authorization", "").partition("Basic ")
        _, _, key = base64.b64decode(encoded or b"").decode().partition(":")
        if key != API_KEY:
            return self._problem(
                401,
                "API Key Invalid",
                "Your API key may be invalid, or you've attempted to access the wrong datacenter.",
            )
        if request.match_info["list_id"] != LIST_ID:
            return self._problem(
                404, "Resource Not Found", "The requested resource could not be found."
            )
        return None

    def kept_out(self, email: str, status: str = "unsubscribed") -> None:
        """A member who unsubscribed (or, ``cleaned``, whose address bounced)."""
        self._member({"email_address": email}, status)

    def _invalid(self, email: str) -> web.Response | None:
        if "@" in email:
            return None
        return self._problem(
            400,
            "Invalid Resource",
            "The resource submitted could not be validated. For field-specific details, see the 'errors' array.",
            errors=[{"field": "email_address", "message": "This value should be a valid email."}],
        )

    def _member(self, body: dict[str, Any], status: str) -> dict[str, Any]:
        email = body["email_address"]
        member_id = _hash(email)
        member = {
            "id": member_id,
            "email_address": email,
            "unique_email_id": member_id[:10],
            "status": status,
            "list_id": LIST_ID,
            "merge_fields": body.get("merge_fields", {}),
        }
        self.members[member_id] = member
        return member

    async def _checked_body(
        self, request: web.Request
    ) -> web.Response | tuple[dict[str, Any], str]:
        """Auth, limits and the address, as both endpoints check them: a refusal, or the body."""
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        body = await request.json()
        self.bodies.append(body)
        email = str(body.get("email_address", ""))
        invalid = self._invalid(email)
        return invalid if invalid is not None else (body, email)

    async def _upsert(self, request: web.Request) -> web.Response:
        checked = await self._checked_body(request)
        if isinstance(checked, web.Response):
            return checked
        body, email = checked
        if request.match_info["subscriber_hash"] != _hash(email):
            return self._problem(
                400, "Invalid Resource", "The subscriber hash does not match the email address."
            )
        existing = self.members.get(request.match_info["subscriber_hash"])
        kept_out = existing is not None and existing["status"] in ("unsubscribed", "cleaned")
        if kept_out and body.get("status") in ("subscribed", "pending"):
            return self._problem(
                400,
                "Member In Compliance State",
                f"{email} is in a compliance state due to unsubscribe, bounce, or compliance "
                "review and cannot be subscribed.",
            )
        status = body.get("status") or (
            existing["status"] if existing else body.get("status_if_new", "subscribed")
        )
        return web.json_response(self._member(body, status))

    async def _create(self, request: web.Request) -> web.Response:
        checked = await self._checked_body(request)
        if isinstance(checked, web.Response):
            return checked
        body, email = checked
        if _hash(email) in self.members:
            return self._problem(
                400,
                "Member Exists",
                f"{email} is already a list member. Use PUT to insert or update list members.",
            )
        return web.json_response(self._member(body, body.get("status", "subscribed")))
