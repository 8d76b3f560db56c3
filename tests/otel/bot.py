"""A two-turn LLM bot instrumented with the OpenTelemetry Python SDK, exporting
its traces to convlog as any bot would: OTLP/HTTP, configured only through
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT and OTEL_EXPORTER_OTLP_HEADERS (plus
OTEL_EXPORTER_OTLP_TRACES_COMPRESSION=gzip for the gzip run).

Spans follow the current GenAI semantic conventions: per turn an agent span,
an inference span (gen_ai.operation.name = "chat") that asks for a tool, the
tool's span (execute_tool), and a second inference span that answers. The
second turn's inputs repeat the first turn as history.

Usage: bot.py CONVERSATION USER [--twice]
  --twice  export the same spans a second time (a retried export)

Prints one JSON line: {"exports": [result, ...], "trace_ids": [...]}.
Used by tests/it/adapters.rs.
"""

import json
import sys
import time

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode


def text(role, content):
    return {"role": role, "parts": [{"type": "text", "content": content}]}


def main():
    conversation, user = sys.argv[1], sys.argv[2]
    twice = "--twice" in sys.argv[3:]
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "shop-bot"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("shop-bot", "1.0")

    turns = [
        ("where is my order 1234?", "lookup_order", '{"status": "shipped"}', "Your order 1234 has shipped."),
        ("can I get a refund for it?", "refund_policy", None, "Refunds take 5 days once it is back."),
    ]
    history = [text("system", "You are the shop's assistant.")]
    for question, tool, result, answer in turns:
        history.append(text("user", question))
        common = {"gen_ai.conversation.id": conversation, "user.id": user}
        with tracer.start_as_current_span("invoke_agent shop", attributes={
            **common, "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "shop"}):
            with tracer.start_as_current_span("chat gpt-4o", attributes={
                **common,
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": "gpt-4o",
                "gen_ai.input.messages": json.dumps(history),
                "gen_ai.output.messages": json.dumps([{
                    "role": "assistant",
                    "parts": [{"type": "tool_call", "id": "call_1", "name": tool, "arguments": {}}],
                    "finish_reason": "tool_call"}]),
            }):
                time.sleep(0.002)
            with tracer.start_as_current_span(f"execute_tool {tool}", attributes={
                "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": tool,
                "gen_ai.tool.call.id": "call_1"}) as span:
                time.sleep(0.003)
                if result is None:
                    span.set_status(Status(StatusCode.ERROR, "policy service unavailable"))
            tool_message = {"role": "tool", "parts": [{"type": "tool_call_response", "id": "call_1",
                                                       "response": result or "error"}]}
            with tracer.start_as_current_span("chat gpt-4o", attributes={
                **common,
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": "gpt-4o",
                "gen_ai.input.messages": json.dumps(history + [tool_message]),
                "gen_ai.output.messages": json.dumps([text("assistant", answer)]),
            }):
                time.sleep(0.002)
        history.append(text("assistant", answer))
        time.sleep(0.01)

    spans = memory.get_finished_spans()
    exporter = OTLPSpanExporter()  # everything from OTEL_EXPORTER_OTLP_* variables
    exports = [exporter.export(spans).name]
    if twice:
        exports.append(exporter.export(spans).name)
    exporter.shutdown()
    trace_ids = sorted({format(s.context.trace_id, "032x") for s in spans})
    print(json.dumps({"exports": exports, "trace_ids": trace_ids, "spans": len(spans)}))


if __name__ == "__main__":
    main()
