//! The two ways of driving a target: a closed loop of N clients, each
//! sending its next turn when the last is answered, and an open loop that
//! sends at a fixed rate whatever the answers do.
//!
//! In the open loop a turn's latency counts from when it was due to be
//! sent, not from when it went out: a server that falls behind shows the
//! queue it built in the figures (no coordinated omission). The schedule is
//! kept by a thread of its own with the OS's high-resolution sleep, since
//! tokio's timer ticks in whole milliseconds.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::report::Load;

/// How long an open-loop run waits for its last answers before counting
/// them as errors.
const DRAIN: Duration = Duration::from_secs(10);
/// Errors quoted in a report, the first of each run.
const QUOTED_ERRORS: usize = 3;

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A user's request, made once: the URL of their chat and their token.
#[derive(Debug, Clone)]
pub struct Caller {
    pub url: hyper::Uri,
    pub authorization: http::HeaderValue,
}

/// What one run of a load saw.
#[derive(Debug, Default)]
pub struct Sample {
    /// Each answered turn's latency (open loop: from its due time).
    pub latencies: Vec<Duration>,
    pub errors: u64,
    /// The first errors, as text.
    pub quoted: Vec<String>,
    /// Open loop: how late each turn left against its schedule.
    pub send_lag: Vec<Duration>,
    pub elapsed: Duration,
}

impl Sample {
    fn failed(&mut self, why: String) {
        self.errors += 1;
        if self.quoted.len() < QUOTED_ERRORS {
            self.quoted.push(why);
        }
    }
}

/// A client that keeps connections open for reuse, as many as the load
/// needs, with Nagle's algorithm off.
pub fn http_client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(usize::MAX)
        .pool_idle_timeout(Duration::from_secs(60))
        .build(connector)
}

/// Sends one turn and reads its answer whole.
async fn turn(client: &HttpClient, caller: &Caller, body: &Bytes) -> Result<(), String> {
    let request = Request::post(caller.url.clone())
        .header(http::header::AUTHORIZATION, caller.authorization.clone())
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(body.clone()))
        .map_err(|err| err.to_string())?;
    let response = client
        .request(request)
        .await
        .map_err(|err| format!("request failed: {err:?}"))?;
    let status = response.status();
    let answer = response
        .into_body()
        .collect()
        .await
        .map_err(|err| format!("reading the answer: {err}"))?
        .to_bytes();
    if status != StatusCode::OK {
        let text = String::from_utf8_lossy(&answer[..answer.len().min(200)]).into_owned();
        return Err(format!("{status}: {text}"));
    }
    Ok(())
}

/// Drives `load` for `duration`.
pub async fn load(
    client: &HttpClient,
    callers: &[Caller],
    body: &Bytes,
    load: Load,
    duration: Duration,
) -> Sample {
    match load {
        Load::Clients(n) => closed(client, callers, body, n, duration).await,
        Load::Rate(r) => open(client, callers, body, r, duration).await,
    }
}

/// `clients` clients for `duration`, client i speaking as `callers[i % n]`.
async fn closed(
    client: &HttpClient,
    callers: &[Caller],
    body: &Bytes,
    clients: usize,
    duration: Duration,
) -> Sample {
    let started = Instant::now();
    let deadline = started + duration;
    let workers: Vec<_> = (0..clients)
        .map(|i| {
            let (client, caller, body) = (
                client.clone(),
                callers[i % callers.len()].clone(),
                body.clone(),
            );
            tokio::spawn(async move {
                let mut sample = Sample::default();
                while Instant::now() < deadline {
                    let sent = Instant::now();
                    match turn(&client, &caller, &body).await {
                        Ok(()) => sample.latencies.push(sent.elapsed()),
                        Err(why) => sample.failed(why),
                    }
                }
                sample
            })
        })
        .collect();
    let mut all = Sample::default();
    for worker in workers {
        let sample = worker.await.expect("a client task does not panic");
        all.latencies.extend(sample.latencies);
        all.errors += sample.errors;
        all.quoted.extend(sample.quoted);
    }
    all.quoted.truncate(QUOTED_ERRORS);
    all.elapsed = started.elapsed();
    all
}

/// Turns at `rate` per second for `duration`, round-robin over `callers`.
async fn open(
    client: &HttpClient,
    callers: &[Caller],
    body: &Bytes,
    rate: f64,
    duration: Duration,
) -> Sample {
    let interval = Duration::from_secs_f64(1.0 / rate);
    let count = (duration.as_secs_f64() * rate).round() as u64;
    let (due, mut schedule) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let first = Instant::now() + Duration::from_millis(5);
    // The pacer: wakes at each due time and hands the turn over.
    std::thread::spawn(move || {
        for i in 0..count {
            let at = first + interval * i as u32;
            let now = Instant::now();
            if at > now {
                std::thread::sleep(at - now);
            }
            if due.send(at).is_err() {
                return;
            }
        }
    });
    let shared = Arc::new(Mutex::new(Sample::default()));
    let mut running = tokio::task::JoinSet::new();
    let mut next = 0;
    while let Some(at) = schedule.recv().await {
        let lag = at.elapsed();
        let (client, caller, body, shared) = (
            client.clone(),
            callers[next % callers.len()].clone(),
            body.clone(),
            shared.clone(),
        );
        next += 1;
        running.spawn(async move {
            let outcome = turn(&client, &caller, &body).await;
            let mut sample = shared.lock().unwrap_or_else(|p| p.into_inner());
            sample.send_lag.push(lag);
            match outcome {
                Ok(()) => sample.latencies.push(at.elapsed()),
                Err(why) => sample.failed(why),
            }
        });
        // Reap what finished, so the set stays the size of what is in flight.
        while running.try_join_next().is_some() {}
    }
    let drained = tokio::time::timeout(DRAIN, async {
        while running.join_next().await.is_some() {}
    })
    .await;
    let unfinished = running.len();
    running.abort_all();
    let mut sample = std::mem::take(&mut *shared.lock().unwrap_or_else(|p| p.into_inner()));
    if drained.is_err() {
        for _ in 0..unfinished {
            sample.failed(format!(
                "no answer within {} s of the run's end",
                DRAIN.as_secs()
            ));
        }
    }
    sample.elapsed = duration;
    sample
}
