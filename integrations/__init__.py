"""Integrations: one module per recipient or protocol, each exporting the same shape.

    NAME: str                          the name a destination's ``integration:`` uses
    Config: type[BaseModel]            the destination's integration-specific ``settings``
    DEFAULT_MAPPING: dict[str, str]    used when a destination gives no mapping
    validate(lead, settings)           → a message (skip, nothing sent) or None
    request(payload, settings, target) → HttpRequest: method, URL, body and the headers
                                       the body needs; the core adds the destination's
                                       headers, Idempotency-Key and auth, then sends
                                       (``settings``: the module's own Config; ``target``:
                                       the destination's method and URL)
    response(request, response)        → Outcome

Optional: DEFAULT_URL (the service's URL), AUTH_TYPES (the auth: types it works with),
and a look-up before creating, for a service that does not refuse duplicates:

    lookup(payload, settings, target)  → HttpRequest (a search for the record) or None
    found(request, response)           → Outcome when the record exists (no create is
                                       sent) or when the search failed; None: create it

and what the vendor's limit headers say of its allowance (a metric per destination):

    quota_left(response)               → (requests left, out of, or None) or None

No module does I/O, so each is tested with recorded responses and no network.
"""

from types import ModuleType

from integrations import (
    five9,
    form_post,
    get_query,
    hubspot,
    json_post,
    mailchimp,
    pipedrive,
    salesforce,
    webhook,
    xml_post,
)

# An explicit registry: what is deliverable is visible here, no discovery magic.
REGISTRY: dict[str, ModuleType] = {
    module.NAME: module
    for module in (
        json_post,
        form_post,
        get_query,
        xml_post,
        hubspot,
        mailchimp,
        salesforce,
        webhook,
        five9,
        pipedrive,
    )
}
