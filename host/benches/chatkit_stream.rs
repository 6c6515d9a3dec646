//! Benchmark: how fast the ChatKit endpoint streams, through the real
//! `wasmgate` binary with the `openai` provider pointed at a mock that waits
//! 200 ms before its first chunk, then sends a chunk every 5 ms.
//!
//! Reports, over sequential turns:
//! - time to the first ChatKit event (`thread.created`) after the request
//!   is sent, against a `/healthz` round trip on the same server;
//! - per text delta, the time from the mock handing a chunk to its socket to
//!   the client reading the matching `text_delta` event, against the same
//!   chunk stream read straight from the mock (the loopback floor).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::response::Response;
use futures::StreamExt;
use serde_json::{Value, json};

mod support;
use support::quantile;

const TURNS: usize = 30;
const CHUNKS: usize = 10;
const FIRST_CHUNK_DELAY: Duration = Duration::from_millis(200);
const CHUNK_GAP: Duration = Duration::from_millis(5);

/// When the mock handed each chunk of the current stream to its socket.
type Sent = Arc<Mutex<Vec<Instant>>>;

fn main() {
    support::block_on(bench());
}

async fn bench() {
    let sent: Sent = Arc::default();
    let base_url = start_mock(sent.clone()).await;
    let server = support::server(&[
        ("WASMGATE_MODEL", "openai:gpt-bench"),
        ("OPENAI_BASE_URL", &base_url),
        ("OPENAI_API_KEY", "sk-bench"),
    ])
    .await;
    let token = support::token("bench");
    let client = reqwest::Client::new();

    let mut first_event = Vec::new();
    let mut healthz = Vec::new();
    let mut forwarded = Vec::new();
    let mut direct = Vec::new();
    for turn in 0..TURNS + 2 {
        // The first two turns warm up connections and caches.
        let warm = turn >= 2;

        let started = Instant::now();
        client
            .get(format!("{}/healthz", server.base))
            .send()
            .await
            .unwrap();
        if warm {
            healthz.push(started.elapsed());
        }

        let request = json!({"type": "threads.create", "params": {"input": {
            "content": [{"type": "input_text", "text": "Tell me something"}],
            "attachments": [], "inference_options": {}}}});
        let started = Instant::now();
        let response = client
            .post(format!("{}/api/v1/chatkit", server.base))
            .bearer_auth(&token)
            .json(&request)
            .send()
            .await
            .unwrap();
        let deltas = read_events(response, |event| {
            event["update"]["type"] == "assistant_message.content_part.text_delta"
        })
        .await;
        if warm {
            first_event.push(deltas.first_event - started);
            forwarded.extend(latencies(&sent, &deltas.matched));
        }

        // The same chunks straight from the mock.
        let response = client
            .post(format!("{base_url}/chat/completions"))
            .json(&json!({"stream": true, "direct": true}))
            .send()
            .await
            .unwrap();
        let chunks = read_events(response, |event| {
            event["choices"][0]["delta"]["content"].is_string()
        })
        .await;
        if warm {
            direct.extend(latencies(&sent, &chunks.matched));
        }
    }

    for samples in [&mut first_event, &mut healthz, &mut forwarded, &mut direct] {
        samples.sort();
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "ChatKit streaming via the real binary: {TURNS} turns, first chunk after {} ms, {CHUNKS} chunks {} ms apart\n",
        FIRST_CHUNK_DELAY.as_millis(),
        CHUNK_GAP.as_millis()
    );
    println!("| measure | p50 | p99 | baseline p50 | ratio p50 |");
    println!("|---|---|---|---|---|");
    println!(
        "| first ChatKit event (vs /healthz round trip) | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} |",
        ms(quantile(&first_event, 0.5)),
        ms(quantile(&first_event, 0.99)),
        ms(quantile(&healthz, 0.5)),
        ms(quantile(&first_event, 0.5)) / ms(quantile(&healthz, 0.5)),
    );
    println!(
        "| delta forwarded after its chunk (vs chunk read from the mock directly) | {:.3} ms | {:.3} ms | {:.3} ms | {:.2} |",
        ms(quantile(&forwarded, 0.5)),
        ms(quantile(&forwarded, 0.99)),
        ms(quantile(&direct, 0.5)),
        ms(quantile(&forwarded, 0.5)) / ms(quantile(&direct, 0.5)),
    );
}

struct Read {
    first_event: Instant,
    /// When each matching event was read, in order.
    matched: Vec<Instant>,
}

/// Reads an SSE body to its end, timing the first event and each event
/// `matches` accepts.
async fn read_events(response: reqwest::Response, matches: impl Fn(&Value) -> bool) -> Read {
    let mut body = response.bytes_stream();
    let mut buffer = String::new();
    let mut first_event = None;
    let mut matched = Vec::new();
    while let Some(chunk) = body.next().await {
        let now = Instant::now();
        buffer.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        while let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            let Some(data) = frame.trim().strip_prefix("data: ") else {
                continue;
            };
            first_event.get_or_insert(now);
            if let Ok(event) = serde_json::from_str::<Value>(data)
                && matches(&event)
            {
                matched.push(now);
            }
        }
    }
    Read {
        first_event: first_event.expect("at least one event"),
        matched,
    }
}

fn latencies(sent: &Sent, received: &[Instant]) -> Vec<Duration> {
    let sent = sent.lock().unwrap();
    assert_eq!(sent.len(), received.len(), "one event per chunk");
    sent.iter()
        .zip(received)
        .map(|(sent, received)| received.saturating_duration_since(*sent))
        .collect()
}

/// A mock provider on loopback: after the first-chunk delay (none for the
/// direct baseline), `CHUNKS` text chunks, recording when each was handed on.
async fn start_mock(sent: Sent) -> String {
    async fn completions(State(sent): State<Sent>, body: String) -> Response {
        let direct = body.contains("\"direct\"");
        sent.lock().unwrap().clear();
        let frames = futures::stream::unfold(0usize, move |i| {
            let sent = sent.clone();
            async move {
                if i == CHUNKS + 1 {
                    return None;
                }
                let frame = if i == CHUNKS {
                    "data: [DONE]\n\n".to_string()
                } else {
                    tokio::time::sleep(if i == 0 && !direct {
                        FIRST_CHUNK_DELAY
                    } else {
                        CHUNK_GAP
                    })
                    .await;
                    sent.lock().unwrap().push(Instant::now());
                    let chunk = json!({"id": "c", "object": "chat.completion.chunk",
                        "choices": [{"index": 0, "delta": {"content": format!("w{i} ")}, "finish_reason": null}]});
                    format!("data: {chunk}\n\n")
                };
                Some((Ok::<_, std::convert::Infallible>(frame), i + 1))
            }
        });
        Response::builder()
            .header("content-type", "text/event-stream")
            .body(axum::body::Body::from_stream(frames))
            .unwrap()
    }
    let app = axum::Router::new()
        .route("/v1/chat/completions", axum::routing::post(completions))
        .with_state(sent);
    support::serve_mock(app).await
}
