//! `wasmgate-load`: drives any service that serves `POST /api/{user_id}/chat`
//! with a bearer token, closed or open loop, side by side with others in one
//! run; and `wasmgate-load mock`, the model those services are pointed at.

mod drive;
mod mock;
mod report;
mod target;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use http_body_util::BodyExt;

use drive::Caller;
use report::{Load, Median, Row, Window};
use target::{Auth, Target};

#[derive(Parser)]
#[command(name = "wasmgate-load", about, version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Drive one or more targets and print a table per row, then medians
    /// with ratios to the first target.
    Run(RunArgs),
    /// Serve the mock model; prints its base URL (`http://ADDR/v1`) first.
    Mock(MockArgs),
}

#[derive(Args)]
struct RunArgs {
    /// A service under load: `URL`, or `url=URL[,name=N][,pid=P][,token=T|secret=S]`.
    /// Give it several times to compare them in one run; the first is the
    /// baseline of the ratios.
    #[arg(long = "target", required = true)]
    targets: Vec<String>,
    /// HS256 secret to mint each user's token with (`sub` = the user).
    #[arg(long, env = "BETTER_AUTH_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// One bearer token for all turns, as `--user`.
    #[arg(long, conflicts_with = "secret")]
    token: Option<String>,
    /// The user a `--token` speaks for.
    #[arg(long, default_value = "load")]
    user: String,
    /// Users the turns are spread over when tokens are minted (`load-0` …).
    #[arg(long, default_value_t = 64)]
    users: usize,
    /// Closed loops to run, by their number of clients (comma-separated).
    #[arg(long, value_delimiter = ',')]
    clients: Vec<usize>,
    /// Open loops to run, by their turns per second (comma-separated).
    #[arg(long, value_delimiter = ',')]
    rate: Vec<f64>,
    /// Seconds each row is measured.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of the same load before each row, not measured.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Times every row is run, targets alternating, for medians.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// What each turn says.
    #[arg(long, default_value = "Add a task to buy milk")]
    message: String,
    /// The mock model's base URL, to subtract its time from each turn's.
    #[arg(long)]
    mock: Option<String>,
    /// Also write every row and median as JSON here.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

#[derive(Args)]
struct MockArgs {
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The tool the first round of every turn calls.
    #[arg(long, default_value = "add_task")]
    tool: String,
    /// Its arguments, a JSON object.
    #[arg(long, default_value = r#"{"title":"Buy milk"}"#)]
    arguments: String,
    /// The final answer.
    #[arg(long, default_value = "Added \"Buy milk\" to your tasks.")]
    text: String,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // One thread: the generator takes at most one core from the machine it
    // shares with its target (the open loop's pacer only sleeps).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Mock(args) => runtime.block_on(serve_mock(args)),
        Command::Run(args) => runtime.block_on(run(args)),
    }
}

async fn serve_mock(args: MockArgs) -> anyhow::Result<()> {
    let arguments: serde_json::Value =
        serde_json::from_str(&args.arguments).context("--arguments must be JSON")?;
    if !arguments.is_object() {
        bail!("--arguments must be a JSON object");
    }
    let (listener, addr) = mock::bind(args.listen).await?;
    println!("http://{addr}/v1");
    let script = mock::Script {
        tool: args.tool,
        arguments,
        text: args.text,
    };
    mock::serve(listener, script).await
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let default_auth = match (&args.token, &args.secret) {
        (Some(token), _) => Some(Auth::Token(token.clone())),
        (None, Some(secret)) => Some(Auth::Secret(secret.clone())),
        (None, None) => None,
    };
    let targets: Vec<Target> = args
        .targets
        .iter()
        .map(|spec| Target::parse(spec, default_auth.as_ref()))
        .collect::<anyhow::Result<_>>()?;
    let mut loads: Vec<Load> = args.clients.iter().map(|&n| Load::Clients(n)).collect();
    loads.extend(args.rate.iter().map(|&r| Load::Rate(r)));
    if loads.is_empty() {
        loads.push(Load::Clients(64));
    }
    if loads
        .iter()
        .any(|l| matches!(*l, Load::Clients(0)) || matches!(*l, Load::Rate(r) if r <= 0.0))
    {
        bail!("--clients and --rate must be above zero");
    }
    let client = drive::http_client();
    let body = Bytes::from(serde_json::to_vec(
        &serde_json::json!({ "content": args.message }),
    )?);
    let callers: Vec<Vec<Caller>> = targets
        .iter()
        .map(|target| callers_of(target, &args))
        .collect::<anyhow::Result<_>>()?;
    let mock_stats = args
        .mock
        .as_deref()
        .map(|base| format!("{}/stats", base.trim_end_matches('/')).parse::<hyper::Uri>())
        .transpose()
        .context("--mock is not a URL")?;
    let (duration, warmup) = (
        Duration::from_secs_f64(args.duration),
        Duration::from_secs_f64(args.warmup),
    );

    println!("{}", Row::HEADER);
    let mut rows = Vec::new();
    for _ in 0..args.rounds {
        for &load in &loads {
            for (target, callers) in targets.iter().zip(&callers) {
                let drive = |length| drive::load(&client, callers, &body, load, length);
                if !warmup.is_zero() {
                    drive(warmup).await;
                }
                let mock_before = read_mock(&client, mock_stats.as_ref()).await?;
                let cpu_before = target.pid.map(target::cpu_time).transpose()?;
                let own_before = target::cpu_time(std::process::id())?;
                let sample = drive(duration).await;
                let cpu_after = target.pid.map(target::cpu_time).transpose()?;
                let own_after = target::cpu_time(std::process::id())?;
                let mock_after = read_mock(&client, mock_stats.as_ref()).await?;
                let answered = sample.latencies.len().max(1) as u32;
                let window = Window {
                    target_cpu: cpu_before.zip(cpu_after).map(|(b, a)| a.saturating_sub(b)),
                    own_cpu: own_after.saturating_sub(own_before),
                    mock_per_turn: mock_before.zip(mock_after).map(|(b, a)| {
                        Duration::from_nanos(a.busy_ns.saturating_sub(b.busy_ns)) / answered
                    }),
                };
                let row = Row::new(&target.name, load, sample, window);
                println!("{}", row.line());
                for quoted in &row.quoted_errors {
                    eprintln!("{}: {quoted}", target.name);
                }
                rows.push(row);
            }
        }
    }

    let medians: Vec<Median> = loads
        .iter()
        .flat_map(|load| {
            let rows = &rows;
            targets.iter().map(move |target| {
                let of: Vec<&Row> = rows
                    .iter()
                    .filter(|r| r.load == *load && r.target == target.name)
                    .collect();
                Median::of(&of)
            })
        })
        .collect();
    println!(
        "\nmedians over {} round(s); ratios to {}\n",
        args.rounds, targets[0].name
    );
    println!("{}", Median::HEADER);
    for chunk in medians.chunks(targets.len()) {
        for median in chunk {
            println!("{}", median.line(&chunk[0]));
        }
    }
    if let Some(path) = &args.json {
        let report = serde_json::json!({ "rows": rows, "medians": medians });
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if rows.iter().any(|r| r.turns == 0) {
        bail!("a row had no answered turn; see the errors above");
    }
    Ok(())
}

/// The users a target's turns are spread over, each with their token.
fn callers_of(target: &Target, args: &RunArgs) -> anyhow::Result<Vec<Caller>> {
    let users: Vec<String> = match target.auth {
        Auth::Token(_) => vec![args.user.clone()],
        Auth::Secret(_) => (0..args.users.max(1))
            .map(|i| format!("load-{i}"))
            .collect(),
    };
    users
        .iter()
        .map(|user| {
            Ok(Caller {
                url: format!("{}/api/{user}/chat", target.base)
                    .parse()
                    .with_context(|| format!("{} is not a URL", target.base))?,
                authorization: format!("Bearer {}", target.token_for(user))
                    .parse()
                    .context("the token is not a valid header value")?,
            })
        })
        .collect()
}

/// The mock's counters, when there is a mock to ask.
async fn read_mock(
    client: &drive::HttpClient,
    stats: Option<&hyper::Uri>,
) -> anyhow::Result<Option<mock::Stats>> {
    let Some(uri) = stats else {
        return Ok(None);
    };
    let request = hyper::Request::get(uri.clone()).body(http_body_util::Full::new(Bytes::new()))?;
    let response = client
        .request(request)
        .await
        .context("asking the mock for its stats")?;
    let body = response.into_body().collect().await?.to_bytes();
    Ok(Some(
        serde_json::from_slice(&body).context("the mock's stats are not JSON")?,
    ))
}
