"""The worker's producer options (``streams.app.CourierProducer``), built without a broker."""

from __future__ import annotations

import uuid
from typing import Any

import faust
import pytest

from streams.app import TRANSPORT_SCHEME


@pytest.mark.parametrize("idempotent", [False, True])
async def test_the_producer_is_idempotent_when_the_worker_was_started_so(idempotent: bool) -> None:
    app: Any = faust.App(
        f"producer-{uuid.uuid4().hex[:8]}",
        broker=f"{TRANSPORT_SCHEME}://127.0.0.1:9",  # never reached: nothing is started
        autodiscover=False,
    )
    app.idempotent_producer = idempotent  # ``kafka_idempotence``, decided at start
    client = app.producer._new_producer()  # aiokafka's, as Faust makes it
    try:
        # aiokafka keeps producer ids and sequence numbers only when idempotent.
        assert (client._txn_manager is not None) is idempotent
        if idempotent:
            assert client._sender._acks == -1  # every replica, as idempotence requires
    finally:
        await client.stop()
