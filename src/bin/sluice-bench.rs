//! `sluice-bench`: a gRPC load generator for `ShouldRateLimit`, and a do-nothing server that
//! gives the throughput ceiling to compare sluice against.
//!
//! * `sluice-bench noop --addr 127.0.0.1:0` serves a `RateLimitService` that answers OK at
//!   once, with one OK status per descriptor. What a load shape reaches against it is the cost
//!   of gRPC, HTTP/2 and the client on this machine, with no rate limiting at all.
//! * `sluice-bench load --target 127.0.0.1:PORT ...` opens `C` HTTP/2 connections and keeps
//!   `S` requests in flight on each (`C`×`S` closed-loop tasks), then prints one result line.
//!   With `--distinct-keys N` it instead sends `N` requests each naming a new counter, so the
//!   server ends up holding `N` live counters (for measuring memory per counter).
//!   With `--workload slots` each operation is an acquire+release pair on a concurrency
//!   (in-flight) key: one call takes a slot of `{<slot-key>: u<n>}` under a lease id unique to the
//!   operation, the next gives it back (`is_negative_hits`), as Envoy's stream-done call does.
//!   `requests` and `rps` then count pairs, and the result adds each call's percentiles.
//! * `sluice-bench upstream --addr 127.0.0.1:0` is the HTTP/1.1 upstream behind Envoy: `200 ok`
//!   to anything, optionally late; and a model-like endpoint on `POST /v1/chat/completions` and
//!   `POST /v1/completions` that reports token usage in response headers (module `upstream`).
//!
//! Latency is measured per call, from just before the call is issued until its response is
//! decoded (for a slot pair: from before the acquire until the release is decoded, and each call
//! on its own too). The loop is closed (a task waits for its answer before sending again), so
//! the percentiles are service times at the offered concurrency, not open-loop latencies.
//! Failed calls are counted as errors and kept out of the histogram.
//!
//! Every subcommand refuses any address outside 127.0.0.0/8: this tool exists to saturate a
//! service and must never be pointed at a shared one.
//!
//! Modules (under `src/bin/sluice_bench/`): `upstream` (the HTTP server and its routes),
//! `llm_request` (what an LLM request asks for and the usage arithmetic), `llm_reply` (the
//! answer: usage headers, OpenAI-shaped JSON, server-sent events).

#![forbid(unsafe_code)]

use std::error::Error;
use std::fmt::{self, Write as _};
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Args, Parser, Subcommand, ValueEnum};
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::{
    rate_limit_descriptor::Entry, RateLimitDescriptor,
};
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::{Code, DescriptorStatus};
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::{
    RateLimitService, RateLimitServiceServer,
};
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use hdrhistogram::Histogram;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::task::JoinSet;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Endpoint, Server};

#[path = "sluice_bench/llm_reply.rs"]
mod llm_reply;
#[path = "sluice_bench/llm_request.rs"]
mod llm_request;
#[path = "sluice_bench/upstream.rs"]
mod upstream;

use upstream::{run_upstream, UpstreamArgs};

type BoxError = Box<dyn Error + Send + Sync>;

/// Highest latency the histogram tracks (60 s, in nanoseconds); slower calls are clamped.
const MAX_TRACKED_NANOS: u64 = 60_000_000_000;
/// Descriptor values cycle through this many numbers so counters stay bounded.
const VALUE_SPREAD: usize = 100;
/// How long a single connection attempt may take before the run is abandoned.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Parser)]
#[command(
    name = "sluice-bench",
    about = "Load generator and ceiling server for sluice"
)]
struct Cli {
    /// Tokio worker threads (default: one per available CPU).
    #[arg(long, global = true, value_parser = clap::value_parser!(u16).range(1..))]
    threads: Option<u16>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve a do-nothing RateLimitService (the throughput ceiling) until SIGTERM/SIGINT.
    Noop(NoopArgs),
    /// Drive a RateLimitService with C connections x S in-flight requests and report.
    Load(Box<LoadArgs>),
    /// Serve HTTP/1.1 `200 ok` to every request (the upstream behind Envoy in the Envoy runs),
    /// optionally late (a slow upstream); `POST /v1/chat/completions` and `/v1/completions`
    /// answer like an LLM endpoint, with token usage in response headers.
    Upstream(UpstreamArgs),
}

#[derive(Debug, Args)]
struct NoopArgs {
    /// Address to listen on; port 0 picks a free port. Loopback only.
    #[arg(long, value_parser = parse_loopback)]
    addr: SocketAddr,
}

#[derive(Debug, Args)]
struct LoadArgs {
    /// Service to load, `127.0.0.1:PORT` (an `http://` prefix is accepted). Loopback only.
    #[arg(long, value_parser = parse_loopback)]
    target: SocketAddr,
    /// Separate HTTP/2 connections to open.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    connections: u32,
    /// Concurrent in-flight request loops per connection.
    #[arg(long, default_value_t = 25, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    streams: u32,
    /// Descriptors per request: descriptor i is `{k<i>: <task id mod 100>}`.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    descriptors: u32,
    /// Measured seconds (fractions allowed).
    #[arg(long, default_value = "10", value_parser = parse_seconds)]
    duration: Duration,
    /// Seconds of unrecorded load before measuring.
    #[arg(long, default_value = "1", value_parser = parse_seconds)]
    warmup: Duration,
    /// Rate-limit domain sent in every request.
    #[arg(long, default_value = "bench")]
    domain: String,
    /// Stop after this many measured requests, even if --duration has not elapsed.
    #[arg(long)]
    requests: Option<u64>,
    /// Send N requests in total, each with one descriptor `{<key>: <unique n>}`, so the server
    /// ends up with N live counters. Ignores --duration, --warmup, --requests, --descriptors.
    #[arg(long, value_name = "N")]
    distinct_keys: Option<u64>,
    /// Descriptor key used by --distinct-keys.
    #[arg(long, default_value = "k0", value_name = "KEY")]
    distinct_key: String,
    /// Free text copied into the result (avoid spaces if you parse the text output).
    #[arg(long, default_value = "load")]
    label: String,
    /// Print the result as one JSON object instead of key=value text.
    #[arg(long)]
    json: bool,
    /// Offer this many requests per second in total (spread evenly over the loops) instead of
    /// sending as fast as answers come back: latency at a load below saturation.
    #[arg(long, value_name = "RPS", value_parser = clap::value_parser!(u64).range(1..))]
    rate: Option<u64>,
    /// What each operation is: `check`, one rate check with --descriptors descriptors; `once`,
    /// the same check carrying a fresh idempotency key (`--idempotency-key`) each time (every
    /// call a first attempt: the record's cost); `slots`, an acquire+release pair on a
    /// concurrency key (one descriptor; requests count pairs).
    #[arg(long, value_enum, default_value_t = WorkloadKind::Check)]
    workload: WorkloadKind,
    /// Descriptor key of the concurrency rule the slots workload acquires on.
    #[arg(long, default_value = "slot", value_name = "KEY")]
    slot_key: String,
    /// Slot keys (`{<slot-key>: u0 .. u<N-1>}`) the pairs are spread over, in turn per loop.
    #[arg(long, default_value_t = 100, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    slot_users: u64,
    /// Descriptor key carrying the lease id (the rule's `lease_id`), unique per pair.
    #[arg(long, default_value = "request_id", value_name = "KEY")]
    lease_key: String,
    /// Descriptor key carrying the idempotency key of the `once` workload (the domain's
    /// `idempotency.key`).
    #[arg(long, default_value = "request_id", value_name = "KEY")]
    idempotency_key: String,
}

/// The `--workload` choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum WorkloadKind {
    /// One rate check per operation.
    Check,
    /// One rate check per operation, with a fresh idempotency key.
    Once,
    /// One acquire and one release of a concurrency slot per operation.
    Slots,
}

impl WorkloadKind {
    fn name(self) -> &'static str {
        match self {
            Self::Check => "check",
            Self::Once => "once",
            Self::Slots => "slots",
        }
    }
}

/// Why a command-line address was refused.
#[derive(Debug)]
enum AddrError {
    Unparsable(String, std::net::AddrParseError),
    NotLoopback(SocketAddr),
}

impl fmt::Display for AddrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unparsable(text, e) => write!(f, "`{text}` is not an IP:PORT address ({e})"),
            Self::NotLoopback(addr) => write!(
                f,
                "refusing {addr}: only loopback IPv4 addresses (127.0.0.0/8) are allowed"
            ),
        }
    }
}

impl Error for AddrError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::Unparsable(_, e) => Some(e),
            Self::NotLoopback(_) => None,
        }
    }
}

/// Failures of a load run, with enough context to say what went wrong.
#[derive(Debug)]
enum BenchError {
    Connect {
        target: SocketAddr,
        source: tonic::transport::Error,
    },
    HistogramSetup(hdrhistogram::CreationError),
    HistogramMerge(hdrhistogram::AdditionError),
    Worker(tokio::task::JoinError),
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connect { target, .. } => write!(f, "connecting to {target}"),
            Self::HistogramSetup(_) => write!(f, "creating the latency histogram"),
            Self::HistogramMerge(_) => write!(f, "merging latency histograms"),
            Self::Worker(_) => write!(f, "a load task failed"),
        }
    }
}

impl Error for BenchError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::Connect { source, .. } => Some(source),
            Self::HistogramSetup(e) => Some(e),
            Self::HistogramMerge(e) => Some(e),
            Self::Worker(e) => Some(e),
        }
    }
}

fn parse_loopback(text: &str) -> Result<SocketAddr, AddrError> {
    let bare = text.strip_prefix("http://").unwrap_or(text);
    let addr: SocketAddr = bare
        .parse()
        .map_err(|e| AddrError::Unparsable(text.to_owned(), e))?;
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_loopback() => Ok(addr),
        _ => Err(AddrError::NotLoopback(addr)),
    }
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|e| format!("`{text}` is not a number of seconds ({e})"))?;
    Duration::try_from_secs_f64(secs).map_err(|e| format!("`{text}` seconds: {e}"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluice-bench: {}", error_chain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), BoxError> {
    let runtime = build_runtime(cli.threads)?;
    match cli.command {
        Command::Noop(args) => runtime.block_on(run_noop(args)),
        Command::Load(args) => runtime.block_on(run_load(*args)),
        Command::Upstream(args) => runtime.block_on(run_upstream(args)),
    }
}

/// Renders an error and all its sources as `outer: inner: innermost`.
fn error_chain(error: &(dyn Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

fn build_runtime(threads: Option<u16>) -> std::io::Result<tokio::runtime::Runtime> {
    let workers = match threads {
        Some(n) => usize::from(n),
        None => std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
    };
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
}

// ---------------------------------------------------------------------------------------------
// noop: the ceiling server
// ---------------------------------------------------------------------------------------------

/// Answers every request OK, with one OK status per descriptor, without looking at anything.
#[derive(Debug, Default)]
struct NoopService;

#[tonic::async_trait]
impl RateLimitService for NoopService {
    async fn should_rate_limit(
        &self,
        request: tonic::Request<RateLimitRequest>,
    ) -> Result<tonic::Response<RateLimitResponse>, tonic::Status> {
        let descriptors = request.get_ref().descriptors.len();
        Ok(tonic::Response::new(all_ok(descriptors)))
    }
}

fn all_ok(descriptors: usize) -> RateLimitResponse {
    let ok = DescriptorStatus {
        code: Code::Ok.into(),
        ..Default::default()
    };
    RateLimitResponse {
        overall_code: Code::Ok.into(),
        statuses: vec![ok; descriptors],
        ..Default::default()
    }
}

async fn run_noop(args: NoopArgs) -> Result<(), BoxError> {
    let shutdown = shutdown_signal()?;
    let listener = TcpListener::bind(args.addr).await?;
    let local = listener.local_addr()?;
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    announce(local)?;
    Server::builder()
        .add_service(RateLimitServiceServer::new(NoopService))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    Ok(())
}

/// Prints the one readiness line scripts wait for. The socket is already bound, so
/// connections made after this line are queued even before the server polls them.
fn announce(local: SocketAddr) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening grpc={local}")?;
    out.flush()
}

/// Resolves on SIGTERM or SIGINT. Handlers are installed before returning, so a signal that
/// arrives while the server starts is not lost.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
    })
}

// ---------------------------------------------------------------------------------------------
// load: the client
// ---------------------------------------------------------------------------------------------

type Client = RateLimitServiceClient<Channel>;

/// What one task measured; tasks keep their own and are merged at the end (no shared locks).
struct Tally {
    /// Per operation: a call, or a whole acquire+release pair.
    latency_ns: Histogram<u64>,
    /// Slot pairs only: each of the two calls on its own.
    calls: Option<PairCalls>,
    errors: u64,
    over_limit: u64,
}

/// The two calls of a slot pair, timed separately.
struct PairCalls {
    acquire_ns: Histogram<u64>,
    release_ns: Histogram<u64>,
}

impl Tally {
    fn new(template: &Histogram<u64>, workload: WorkloadKind) -> Self {
        Self {
            latency_ns: Histogram::new_from(template),
            calls: (workload == WorkloadKind::Slots).then(|| PairCalls {
                acquire_ns: Histogram::new_from(template),
                release_ns: Histogram::new_from(template),
            }),
            errors: 0,
            over_limit: 0,
        }
    }

    fn record(
        &mut self,
        started: Instant,
        result: &Result<tonic::Response<RateLimitResponse>, tonic::Status>,
    ) {
        match result {
            Ok(response) => {
                let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
                self.latency_ns.saturating_record(nanos);
                if response.get_ref().overall_code == i32::from(Code::OverLimit) {
                    self.over_limit += 1;
                }
            }
            Err(_) => self.errors += 1,
        }
    }

    /// One slot pair: the acquire ran from `started` to `acquired_at`, the release from there
    /// to now. A pair with a failed call counts as one error and is kept out of the histograms;
    /// a refused acquire counts as over limit.
    fn record_pair(
        &mut self,
        started: Instant,
        acquired_at: Instant,
        acquire: &Result<tonic::Response<RateLimitResponse>, tonic::Status>,
        release: &Result<tonic::Response<RateLimitResponse>, tonic::Status>,
    ) {
        let (Ok(acquire), Ok(_)) = (acquire, release) else {
            self.errors += 1;
            return;
        };
        let ended = Instant::now();
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.latency_ns
            .saturating_record(nanos(ended.duration_since(started)));
        if let Some(calls) = self.calls.as_mut() {
            calls
                .acquire_ns
                .saturating_record(nanos(acquired_at.duration_since(started)));
            calls
                .release_ns
                .saturating_record(nanos(ended.duration_since(acquired_at)));
        }
        if acquire.get_ref().overall_code == i32::from(Code::OverLimit) {
            self.over_limit += 1;
        }
    }

    fn merge(&mut self, other: &Self) -> Result<(), BenchError> {
        self.latency_ns
            .add(&other.latency_ns)
            .map_err(BenchError::HistogramMerge)?;
        if let (Some(mine), Some(theirs)) = (self.calls.as_mut(), other.calls.as_ref()) {
            mine.acquire_ns
                .add(&theirs.acquire_ns)
                .map_err(BenchError::HistogramMerge)?;
            mine.release_ns
                .add(&theirs.release_ns)
                .map_err(BenchError::HistogramMerge)?;
        }
        self.errors += other.errors;
        self.over_limit += other.over_limit;
        Ok(())
    }
}

/// Hands out request numbers up to an optional limit, shared by all tasks.
struct Tickets {
    issued: AtomicU64,
    limit: Option<u64>,
}

impl Tickets {
    fn new(limit: Option<u64>) -> Self {
        Self {
            issued: AtomicU64::new(0),
            limit,
        }
    }

    /// The next request number, or `None` once the limit is used up.
    fn take(&self) -> Option<u64> {
        let n = self.issued.fetch_add(1, Ordering::Relaxed);
        match self.limit {
            Some(limit) if n >= limit => None,
            _ => Some(n),
        }
    }
}

/// The time frame of a steady run: unrecorded warmup, then the measured window.
#[derive(Clone, Copy)]
struct Window {
    measure_from: Instant,
    stop_at: Instant,
}

/// How each task chooses its requests.
#[derive(Clone)]
enum Workload {
    /// Fixed descriptors per task, until the window closes or the request budget is spent.
    Steady {
        descriptors: u32,
        /// `once`: the idempotency descriptor's key and a run nonce (keys never repeat).
        once: Option<(String, u32)>,
        window: Window,
        /// Time between requests of one loop, when a total rate is offered.
        pace: Option<Duration>,
    },
    /// One fresh counter (`{key: <request number>}`) per request, until the tickets run out.
    Distinct { key: String },
    /// Acquire+release pairs on concurrency keys, until the window closes or the budget is spent.
    Slots {
        slots: SlotPlan,
        window: Window,
        /// Time between pairs of one loop, when a total rate is offered.
        pace: Option<Duration>,
    },
}

/// Which slot keys the pairs use and how their leases are named.
#[derive(Clone)]
struct SlotPlan {
    /// The concurrency rule's descriptor key.
    key: String,
    /// Slot keys `u0 .. u<users-1>`.
    users: u64,
    /// The descriptor key carrying the lease id.
    lease_key: String,
    /// Differs between runs (and processes), so a run never reuses an earlier run's lease ids.
    run: u32,
}

/// Everything the tasks share, fixed once the connections are open.
struct RunPlan {
    workload: Workload,
    domain: String,
    tickets: Arc<Tickets>,
    measure_from: Instant,
}

impl RunPlan {
    fn new(args: &LoadArgs) -> Self {
        let now = Instant::now();
        let (workload, limit, measure_from) = match args.distinct_keys {
            Some(total) => {
                let key = args.distinct_key.clone();
                (Workload::Distinct { key }, Some(total), now)
            }
            None => {
                let window = Window {
                    measure_from: now + args.warmup,
                    stop_at: now + args.warmup + args.duration,
                };
                let descriptors = args.descriptors;
                let loops = u64::from(args.connections) * u64::from(args.streams);
                let pace = args
                    .rate
                    .map(|rps| Duration::from_secs_f64(loops as f64 / rps as f64));
                let workload = match args.workload {
                    WorkloadKind::Check | WorkloadKind::Once => Workload::Steady {
                        descriptors,
                        once: (args.workload == WorkloadKind::Once)
                            .then(|| (args.idempotency_key.clone(), run_nonce())),
                        window,
                        pace,
                    },
                    WorkloadKind::Slots => Workload::Slots {
                        slots: SlotPlan {
                            key: args.slot_key.clone(),
                            users: args.slot_users,
                            lease_key: args.lease_key.clone(),
                            run: run_nonce(),
                        },
                        window,
                        pace,
                    },
                };
                (workload, args.requests, window.measure_from)
            }
        };
        Self {
            workload,
            domain: args.domain.clone(),
            tickets: Arc::new(Tickets::new(limit)),
            measure_from,
        }
    }
}

/// Refuses option combinations the slots workload cannot honour.
fn check_workload(args: &LoadArgs) -> Result<(), String> {
    if args.workload == WorkloadKind::Slots {
        if args.distinct_keys.is_some() {
            return Err("--distinct-keys and --workload slots cannot be combined".into());
        }
        if args.descriptors != 1 {
            return Err("--workload slots sends one descriptor per call (--descriptors 1)".into());
        }
    }
    Ok(())
}

/// A number that differs between runs: the low bits of the wall clock's nanoseconds, mixed
/// with the process id.
fn run_nonce() -> u32 {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| {
        d.subsec_nanos() ^ (d.as_secs() as u32).rotate_left(16)
    });
    nanos ^ std::process::id().rotate_left(8)
}

async fn run_load(args: LoadArgs) -> Result<(), BoxError> {
    check_workload(&args)?;
    let template =
        Histogram::new_with_bounds(1, MAX_TRACKED_NANOS, 3).map_err(BenchError::HistogramSetup)?;
    let clients = connect_all(args.target, args.connections).await?;
    let plan = RunPlan::new(&args);
    let streams = args.streams as usize;
    let mut tasks = JoinSet::new();
    for (connection, client) in clients.into_iter().enumerate() {
        for stream in 0..streams {
            let task_id = connection * streams + stream;
            tasks.spawn(worker(
                client.clone(),
                task_id,
                Tally::new(&template, args.workload),
                &plan,
            ));
        }
    }
    let total = collect(&mut tasks, &template, args.workload).await?;
    let report = Report::new(&args, &total, plan.measure_from.elapsed());
    let line = if args.json {
        report.json()
    } else {
        report.text()
    };
    println!("{line}");
    Ok(())
}

/// Opens one HTTP/2 connection per requested connection (separate channels, not clones).
async fn connect_all(target: SocketAddr, connections: u32) -> Result<Vec<Client>, BenchError> {
    let mut clients = Vec::with_capacity(connections as usize);
    for _ in 0..connections {
        clients.push(connect(target).await?);
    }
    Ok(clients)
}

async fn connect(target: SocketAddr) -> Result<Client, BenchError> {
    let failed = |source| BenchError::Connect { target, source };
    let channel = Endpoint::from_shared(format!("http://{target}"))
        .map_err(failed)?
        .tcp_nodelay(true)
        .connect_timeout(CONNECT_TIMEOUT)
        .connect()
        .await
        .map_err(failed)?;
    Ok(RateLimitServiceClient::new(channel))
}

fn worker(
    client: Client,
    task_id: usize,
    tally: Tally,
    plan: &RunPlan,
) -> impl std::future::Future<Output = Tally> + Send + 'static {
    let tickets = Arc::clone(&plan.tickets);
    let domain = plan.domain.clone();
    let workload = plan.workload.clone();
    async move {
        match workload {
            Workload::Steady {
                descriptors,
                once,
                window,
                pace,
            } => {
                let request = steady_request(domain, descriptors, task_id);
                let once = once.map(|(key, run)| (key, run, task_id));
                steady_loop(client, (request, once), tally, &tickets, window, pace).await
            }
            Workload::Distinct { key } => distinct_loop(client, domain, key, tally, &tickets).await,
            Workload::Slots {
                slots,
                window,
                pace,
            } => {
                let plan = (domain, slots, task_id);
                slots_loop(client, plan, tally, &tickets, window, pace).await
            }
        }
    }
}

/// Closed (or paced) loop of one request; with `once` (key, run nonce, task), each call adds
/// `{key: <run>-<task>-<n>}`, an idempotency key no other call of the run uses.
async fn steady_loop(
    mut client: Client,
    (request, once): (RateLimitRequest, Option<(String, u32, usize)>),
    mut tally: Tally,
    tickets: &Tickets,
    window: Window,
    pace: Option<Duration>,
) -> Tally {
    let mut ticker = pace.map(|every| {
        let mut t = tokio::time::interval(every);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        t
    });
    let mut seq = 0u64;
    loop {
        if let Some(t) = ticker.as_mut() {
            t.tick().await;
        }
        let started = Instant::now();
        if started >= window.stop_at {
            break;
        }
        let measured = started >= window.measure_from;
        if measured && tickets.take().is_none() {
            break;
        }
        let mut call = request.clone();
        if let Some((key, run, task)) = &once {
            seq += 1;
            call.descriptors
                .push(descriptor(key.clone(), format!("{run:08x}-{task}-{seq}")));
        }
        let result = client.should_rate_limit(call).await;
        if measured {
            tally.record(started, &result);
        }
    }
    tally
}

/// Closed (or paced) loop of acquire+release pairs. Pair `n` of task `t` acquires on user
/// `(t + n) mod users` under a lease id no other pair of the run uses, then releases it; the
/// release is sent whatever the acquire answered, as Envoy does on stream done.
async fn slots_loop(
    mut client: Client,
    (domain, slots, task_id): (String, SlotPlan, usize),
    mut tally: Tally,
    tickets: &Tickets,
    window: Window,
    pace: Option<Duration>,
) -> Tally {
    let mut ticker = pace.map(|every| {
        let mut t = tokio::time::interval(every);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        t
    });
    for seq in 0u64.. {
        if let Some(t) = ticker.as_mut() {
            t.tick().await;
        }
        let (acquire, release) = slot_pair(&domain, &slots, task_id, seq);
        let started = Instant::now();
        if started >= window.stop_at {
            break;
        }
        let measured = started >= window.measure_from;
        if measured && tickets.take().is_none() {
            break;
        }
        let acquired = client.should_rate_limit(acquire).await;
        let acquired_at = Instant::now();
        let released = client.should_rate_limit(release).await;
        if measured {
            tally.record_pair(started, acquired_at, &acquired, &released);
        }
    }
    tally
}

/// Pair `seq` of task `task_id`: the acquire (`{key: u<i>}, {lease_key: <id>}`, one hit) and
/// its release (the same descriptor with `is_negative_hits`). The lease id is shaped like
/// Envoy's `x-request-id` (a 36-character UUID) and unique per run, task and pair.
fn slot_pair(
    domain: &str,
    slots: &SlotPlan,
    task_id: usize,
    seq: u64,
) -> (RateLimitRequest, RateLimitRequest) {
    let user = (task_id as u64).wrapping_add(seq) % slots.users;
    let task = task_id as u64;
    let lease = format!(
        "{:08x}-{:04x}-{:04x}-8000-{:012x}",
        slots.run,
        (task >> 16) & 0xffff,
        task & 0xffff,
        seq & 0xffff_ffff_ffff
    );
    let acquire = RateLimitDescriptor {
        entries: vec![
            Entry {
                key: slots.key.clone(),
                value: format!("u{user}"),
            },
            Entry {
                key: slots.lease_key.clone(),
                value: lease,
            },
        ],
        ..Default::default()
    };
    let release = RateLimitDescriptor {
        is_negative_hits: true,
        ..acquire.clone()
    };
    let request = |descriptor| RateLimitRequest {
        domain: domain.to_owned(),
        descriptors: vec![descriptor],
        hits_addend: 1,
    };
    (request(acquire), request(release))
}

async fn distinct_loop(
    mut client: Client,
    domain: String,
    key: String,
    mut tally: Tally,
    tickets: &Tickets,
) -> Tally {
    while let Some(n) = tickets.take() {
        let request = RateLimitRequest {
            domain: domain.clone(),
            descriptors: vec![descriptor(key.clone(), n.to_string())],
            hits_addend: 1,
        };
        let started = Instant::now();
        let result = client.should_rate_limit(request).await;
        tally.record(started, &result);
    }
    tally
}

/// Descriptor `i` is `{k<i>: <task id mod 100>}`: many tasks share counters, which stay few.
fn steady_request(domain: String, descriptors: u32, task_id: usize) -> RateLimitRequest {
    let value = (task_id % VALUE_SPREAD).to_string();
    RateLimitRequest {
        domain,
        descriptors: (0..descriptors)
            .map(|i| descriptor(format!("k{i}"), value.clone()))
            .collect(),
        hits_addend: 1,
    }
}

fn descriptor(key: String, value: String) -> RateLimitDescriptor {
    RateLimitDescriptor {
        entries: vec![Entry { key, value }],
        ..Default::default()
    }
}

async fn collect(
    tasks: &mut JoinSet<Tally>,
    template: &Histogram<u64>,
    workload: WorkloadKind,
) -> Result<Tally, BenchError> {
    let mut total = Tally::new(template, workload);
    while let Some(joined) = tasks.join_next().await {
        let tally = joined.map_err(BenchError::Worker)?;
        total.merge(&tally)?;
    }
    Ok(total)
}

// ---------------------------------------------------------------------------------------------
// report
// ---------------------------------------------------------------------------------------------

/// One run's result; `requests` counts successful operations only (calls, or slot pairs both
/// of whose calls succeeded), and `rps` is based on them.
struct Report {
    label: String,
    target: SocketAddr,
    shape: String,
    descriptors: u32,
    workload: WorkloadKind,
    requests: u64,
    errors: u64,
    over_limit: u64,
    elapsed_s: f64,
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
    max_us: f64,
    /// Slot pairs: the acquire's and the release's p50/p99/p999 (µs), each call on its own.
    calls: Option<[[f64; 3]; 2]>,
}

/// p50, p99 and p999 of `h`, in microseconds.
fn percentiles_us(h: &Histogram<u64>) -> [f64; 3] {
    [0.50, 0.99, 0.999].map(|q| h.value_at_quantile(q) as f64 / 1_000.0)
}

impl Report {
    fn new(args: &LoadArgs, tally: &Tally, elapsed: Duration) -> Self {
        let latency = &tally.latency_ns;
        let requests = latency.len();
        let elapsed_s = elapsed.as_secs_f64();
        let micros = |nanos: u64| nanos as f64 / 1_000.0;
        Self {
            label: args.label.clone(),
            target: args.target,
            shape: format!("{}x{}", args.connections, args.streams),
            descriptors: if args.distinct_keys.is_some() {
                1
            } else {
                args.descriptors
            },
            workload: args.workload,
            requests,
            errors: tally.errors,
            over_limit: tally.over_limit,
            elapsed_s,
            rps: if elapsed_s > 0.0 {
                requests as f64 / elapsed_s
            } else {
                0.0
            },
            p50_us: micros(latency.value_at_quantile(0.50)),
            p99_us: micros(latency.value_at_quantile(0.99)),
            p999_us: micros(latency.value_at_quantile(0.999)),
            max_us: micros(latency.max()),
            calls: tally
                .calls
                .as_ref()
                .map(|c| [percentiles_us(&c.acquire_ns), percentiles_us(&c.release_ns)]),
        }
    }

    /// The per-call percentiles of a slot pair as `(name, value)`s, or none.
    fn call_fields(&self) -> Vec<(String, f64)> {
        let Some(calls) = &self.calls else {
            return Vec::new();
        };
        let mut fields = Vec::with_capacity(6);
        for (call, values) in ["acquire", "release"].iter().zip(calls) {
            for (q, v) in ["p50", "p99", "p999"].iter().zip(values) {
                fields.push((format!("{call}_{q}_us"), *v));
            }
        }
        fields
    }

    fn text(&self) -> String {
        let mut line = format!(
            "label={} target={} shape={} descriptors={} workload={} requests={} errors={} \
             over_limit={} elapsed_s={:.3} rps={:.0} p50_us={:.1} p99_us={:.1} p999_us={:.1} \
             max_us={:.1}",
            self.label,
            self.target,
            self.shape,
            self.descriptors,
            self.workload.name(),
            self.requests,
            self.errors,
            self.over_limit,
            self.elapsed_s,
            self.rps,
            self.p50_us,
            self.p99_us,
            self.p999_us,
            self.max_us,
        );
        for (name, value) in self.call_fields() {
            let _ = write!(line, " {name}={value:.1}");
        }
        line
    }

    fn json(&self) -> String {
        let mut object = format!(
            "{{\"label\":{},\"target\":\"{}\",\"shape\":\"{}\",\"descriptors\":{},\"workload\":\"{}\",\
             \"requests\":{},\"errors\":{},\"over_limit\":{},\"elapsed_s\":{:.3},\"rps\":{:.0},\
             \"p50_us\":{:.1},\"p99_us\":{:.1},\"p999_us\":{:.1},\"max_us\":{:.1}",
            json_string(&self.label),
            self.target,
            self.shape,
            self.descriptors,
            self.workload.name(),
            self.requests,
            self.errors,
            self.over_limit,
            self.elapsed_s,
            self.rps,
            self.p50_us,
            self.p99_us,
            self.p999_us,
            self.max_us,
        );
        for (name, value) in self.call_fields() {
            let _ = write!(object, ",\"{name}\":{value:.1}");
        }
        object.push('}');
        object
    }
}

/// Quotes `text` as a JSON string.
fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
