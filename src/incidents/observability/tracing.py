"""OpenTelemetry tracing: spans are always created, exported only when configured."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.trace import Tracer

from incidents.config import ConfigError


def make_tracer(
    exporter: str = "none", span_exporter: SpanExporter | None = None
) -> tuple[TracerProvider, Tracer]:
    """A tracer for the platform's spans (``timeline.append``, ``timeline.query``, ...).

    ``exporter`` is ``none`` (default), ``console``, or ``otlp`` (needs the
    opentelemetry-exporter-otlp package). ``span_exporter`` wins when given (tests).
    """
    provider = TracerProvider()
    if span_exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(span_exporter))
    elif exporter == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    elif exporter == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[import-not-found]
                OTLPSpanExporter,
            )
        except ImportError as exc:
            raise ConfigError(
                "IM_OTEL_EXPORTER=otlp needs the opentelemetry-exporter-otlp package"
            ) from exc
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider, provider.get_tracer("incidents")
