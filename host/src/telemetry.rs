//! OpenTelemetry traces (docs/MODELS.md, "Traces"): with
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `…_TRACES_ENDPOINT`) set, the spans of
//! requests, chat turns, provider rounds and tool calls are exported over
//! OTLP/HTTP (`OTEL_EXPORTER_OTLP_PROTOCOL`: `http/protobuf`, the default,
//! or `http/json`), with the GenAI semantic conventions' attributes. An
//! incoming `traceparent` is continued, and sent on to the providers.
//!
//! Without an endpoint there is no exporter, no propagator and no layer:
//! the spans are the `tracing` spans the log has anyway. Message content
//! (prompts, answers, tool arguments and results) is recorded only with
//! `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`; secrets never
//! reach a span.

use std::sync::OnceLock;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The tracer provider when an endpoint is configured, or why it could not
/// be made (the server then runs without traces).
pub fn exporter() -> Option<Result<SdkTracerProvider, String>> {
    let configured = [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|name| std::env::var(name).is_ok_and(|v| !v.trim().is_empty()));
    if !configured {
        return None;
    }
    // Endpoint, protocol, headers and timeout come from the OTEL_* variables.
    let exporter = match opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
    {
        Ok(exporter) => exporter,
        Err(err) => return Some(Err(err.to_string())),
    };
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name("wasmgate")
                .build(),
        )
        .build();
    ENABLED.get_or_init(|| true);
    Some(Ok(provider))
}

/// The `tracing` layer exporting `wasmgate`'s own spans to `provider`.
pub fn layer<S>(provider: &SdkTracerProvider) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    use tracing_subscriber::Layer;
    use tracing_subscriber::filter::FilterExt;
    let ours =
        tracing_subscriber::filter::Targets::new().with_target("wasmgate", tracing::Level::INFO);
    // Spans only, each with its own attributes: log lines, source
    // locations, threads and busy/idle times would triple what every turn
    // exports.
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("wasmgate"))
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_target(false)
        .with_filter(ours.and(tracing_subscriber::filter::filter_fn(|meta| meta.is_span())))
}

static ENABLED: OnceLock<bool> = OnceLock::new();

fn enabled() -> bool {
    ENABLED.get().copied().unwrap_or(false)
}

/// Whether prompts, answers and tool data may go into spans.
pub fn capture_content() -> bool {
    static CAPTURE: OnceLock<bool> = OnceLock::new();
    *CAPTURE.get_or_init(|| {
        std::env::var("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT")
            .is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"))
    })
}

/// Makes `span` continue the trace of an incoming `traceparent`, if any.
pub fn continue_trace(span: &Span, headers: &http::HeaderMap) {
    if !enabled() {
        return;
    }
    let parent =
        TraceContextPropagator::new().extract(&opentelemetry_http::HeaderExtractor(headers));
    let _ = span.set_parent(parent);
}

/// Adds the current span's `traceparent` to a request going out.
pub fn propagate(headers: &mut http::HeaderMap) {
    if !enabled() {
        return;
    }
    let context = Span::current().context();
    TraceContextPropagator::new()
        .inject_context(&context, &mut opentelemetry_http::HeaderInjector(headers));
}

/// A chat turn, whatever the door.
pub fn turn_span(door: &str, conversation_id: i64) -> Span {
    tracing::info_span!(
        "turn",
        otel.name = "invoke_agent wasmgate",
        gen_ai.operation.name = "invoke_agent",
        gen_ai.agent.name = "wasmgate",
        gen_ai.conversation.id = conversation_id,
        wasmgate.door = door,
    )
}

/// One provider round: `chat <model>`, a client span. The usage and the
/// answer are recorded by [`record_answer`].
pub fn chat_span(provider: &str, model: &str) -> Span {
    tracing::info_span!(
        "chat",
        otel.name = %format!("chat {model}"),
        otel.kind = "client",
        gen_ai.operation.name = "chat",
        gen_ai.provider.name = provider,
        gen_ai.request.model = model,
        gen_ai.response.model = tracing::field::Empty,
        gen_ai.response.finish_reasons = tracing::field::Empty,
        gen_ai.usage.input_tokens = tracing::field::Empty,
        gen_ai.usage.output_tokens = tracing::field::Empty,
        gen_ai.output.messages = tracing::field::Empty,
        error.type = tracing::field::Empty,
    )
}

/// What a provider round answered, on its span.
pub fn record_answer(
    span: &Span,
    model: &str,
    usage: Option<(u32, u32)>,
    finish: &str,
    text: &str,
) {
    span.record("gen_ai.response.model", model);
    span.record("gen_ai.response.finish_reasons", finish);
    if let Some((input, output)) = usage {
        span.record("gen_ai.usage.input_tokens", input);
        span.record("gen_ai.usage.output_tokens", output);
    }
    if capture_content() {
        span.record("gen_ai.output.messages", text);
    }
}

/// One tool call: `execute_tool <tool>`, with the model's id for it when
/// a chat turn made it.
pub fn tool_span(tool: &str, call_id: Option<&str>, door: &str, arguments: &str) -> Span {
    let span = tracing::info_span!(
        "execute_tool",
        otel.name = %format!("execute_tool {tool}"),
        gen_ai.operation.name = "execute_tool",
        gen_ai.tool.name = tool,
        gen_ai.tool.type = "function",
        gen_ai.tool.call.id = call_id,
        gen_ai.tool.call.arguments = tracing::field::Empty,
        gen_ai.tool.call.result = tracing::field::Empty,
        wasmgate.door = door,
        error.type = tracing::field::Empty,
    );
    if capture_content() {
        span.record("gen_ai.tool.call.arguments", arguments);
    }
    span
}

/// A tool call's result (only with content capture) or its error kind.
pub fn record_tool_result(span: &Span, result: Result<&serde_json::Value, &str>) {
    match result {
        Ok(value) if capture_content() => {
            span.record("gen_ai.tool.call.result", value.to_string());
        }
        Ok(_) => {}
        Err(kind) => {
            span.record("error.type", kind);
        }
    }
}
