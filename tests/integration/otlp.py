"""An OpenTelemetry collector on 127.0.0.1 that speaks OTLP/HTTP (protobuf), as the
specification has it: POST /v1/traces and /v1/metrics, an Export*ServiceResponse back.
It keeps every span it is sent, decoded with the protocol's own protobuf classes."""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from tests.integration.local_server import LocalServer

PROTOBUF = "application/x-protobuf"


@dataclass(frozen=True)
class Span:
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, Any]
    status_code: int


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    return None if kind is None else getattr(any_value, kind)


class OtlpCollector(LocalServer):
    def __init__(self) -> None:
        super().__init__()
        self.spans: list[Span] = []
        self.metric_exports = 0

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/traces", self._traces)
        app.router.add_post("/v1/metrics", self._metrics)
        return app

    async def _body(self, request: web.Request) -> bytes:
        if request.content_type != PROTOBUF:
            raise web.HTTPUnsupportedMediaType(text=f"expected {PROTOBUF}")
        body = await request.read()
        return gzip.decompress(body) if request.headers.get("Content-Encoding") == "gzip" else body

    async def _traces(self, request: web.Request) -> web.Response:
        export = trace_service_pb2.ExportTraceServiceRequest()
        export.ParseFromString(await self._body(request))
        for resource_spans in export.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.spans.append(
                        Span(
                            span.name,
                            span.kind,
                            span.trace_id.hex(),
                            span.span_id.hex(),
                            span.parent_span_id.hex(),
                            {a.key: _value(a.value) for a in span.attributes},
                            span.status.code,
                        )
                    )
        answer = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
        return web.Response(body=answer, content_type=PROTOBUF)

    async def _metrics(self, request: web.Request) -> web.Response:
        export = metrics_service_pb2.ExportMetricsServiceRequest()
        export.ParseFromString(await self._body(request))
        self.metric_exports += 1
        answer = metrics_service_pb2.ExportMetricsServiceResponse().SerializeToString()
        return web.Response(body=answer, content_type=PROTOBUF)
