//! The gRPC server: ShouldRateLimit, `grpc.health.v1` and reflection (v1 and v1alpha), with a
//! graceful shutdown that reports NOT_SERVING before it stops accepting.

use crate::admin::{AdminState, Auth};
use crate::authz::check::AuthzService;
use crate::authz::Authz;
use crate::clock::{Clock, SystemClock};
use crate::concurrency::memory::MemorySlots;
use crate::concurrency::metrics::RoomMetrics;
use crate::concurrency::{SlotBackend, WaitingRoom};
use crate::meter::Meter;
use crate::net::tls::{LiveTls, ServerTls, TlsError};
use crate::net::track::Tracked;
use crate::net::Timeouts;
use crate::overrides::registry::Overrides;
use crate::rules::{LoadError, LoadOptions, RuleError, Rules};
use crate::service::response::ResponseOptions;
use crate::service::rls::{RateLimiter, RlsService};
use crate::service::strict::{Check, ShouldRateLimit, StrictServer};
use crate::settings::{Backend, ConfigType, Settings};
use crate::store::fallback::BreakerConfig;
use crate::store::memory::MemoryStore;
use crate::store::redis::{FallbackConfig, RedisConfig, RedisStore};
use crate::store::redis_conn::Topology;
use crate::store::{Storage, Store};
use crate::xds::source::XdsSource;
use arc_swap::ArcSwap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tonic_health::ServingStatus;

/// The descriptor set of the vendored protos, built by `build.rs`.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/envoy_descriptor.bin"));

/// Health service names that report the rate-limit service: the empty name, upstream's
/// `ratelimit`, and the full gRPC service name.
pub const HEALTH_NAMES: [&str; 3] = [
    "",
    "ratelimit",
    "envoy.service.ratelimit.v3.RateLimitService",
];

/// HTTP/2 streams one gRPC connection may have open at once.
pub const MAX_CONCURRENT_STREAMS: u32 = 128;

/// How often histogram samples are folded into buckets when nobody scrapes.
const METER_UPKEEP: Duration = Duration::from_secs(5);

/// How long in-flight calls may take to finish after the shutdown delay.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// The health name of the ext_authz service (reported only when it is enabled).
pub const AUTHZ_HEALTH_NAME: &str = "envoy.service.auth.v3.Authorization";

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The rule directory is invalid at start-up.
    #[error("invalid rules: {0}")]
    Rules(#[from] RuleError),
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// Building reflection failed (a broken descriptor set: a build bug).
    #[error("reflection: {0}")]
    Reflection(String),
    /// The counter store could not be set up (e.g. a Redis node unreachable at start).
    #[error("store: {0}")]
    Store(String),
    /// The admin token file is unreadable or too short.
    #[error("admin: {0}")]
    Admin(String),
    /// The gRPC port's TLS files are unusable (at start; reload errors only log).
    #[error("grpc TLS: {0}")]
    Tls(#[from] TlsError),
    /// The transport failed.
    #[error("grpc server: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The xDS client cannot start (settings) or ended before the first config.
    #[error("{0}")]
    Xds(#[from] crate::xds::XdsError),
}

/// A bound, not yet serving, sluice.
pub struct Server {
    /// The bound gRPC listener (port 0 resolved).
    listener: TcpListener,
    /// The bound HTTP admin listener.
    http: TcpListener,
    /// The debug listener (`/rlconfig`, `/stats`), when `debug_addr` is set.
    debug: Option<TcpListener>,
    /// The metrics-only listener, when `prometheus_addr` is set.
    prometheus: Option<TcpListener>,
    /// Settings it runs with.
    settings: Settings,
    /// Loaded rules, shared with the limiter (reload swaps them).
    rules: Arc<ArcSwap<Rules>>,
    /// Time for the counters (the system clock, or a test's manual clock).
    clock: Arc<dyn Clock>,
    /// The admin API's bearer token, read at start so a bad file fails fast.
    admin_token: Option<String>,
    /// ext_authz keys and configuration, when enabled.
    authz: Option<Arc<Authz>>,
    /// This server's metrics (served on `/metrics`); never the process-wide recorder.
    meter: Meter,
    /// TLS on the gRPC port, loaded and validated at start; `None` serves plaintext.
    grpc_tls: Option<Arc<LiveTls>>,
    /// The xDS client publishing into `rules` (`config_type = grpc_xds_sotw`); `None`: the
    /// rule directory, reloaded by polling.
    xds: Option<XdsSource>,
}

impl Server {
    /// Loads the rules and binds the gRPC listener.
    pub async fn bind(settings: Settings) -> Result<Server, ServeError> {
        Server::bind_with_clock(settings, Arc::new(SystemClock)).await
    }

    /// [`Server::bind`] with the counters' time coming from `clock`.
    pub async fn bind_with_clock(
        settings: Settings,
        clock: Arc<dyn Clock>,
    ) -> Result<Server, ServeError> {
        for note in &settings.upstream_notes {
            tracing::warn!("{note}");
        }
        let admin_token = settings
            .admin_token()
            .map_err(|e| ServeError::Admin(e.to_string()))?;
        // Read and parsed on the blocking pool: a slow disk or a big file never holds a worker.
        let meter = Meter::prometheus();
        let from_xds = settings.config_type == ConfigType::GrpcXdsSotw;
        let (rules, authz) = {
            let dir = settings.rules_dir.clone();
            let authz_meter = meter.clone();
            let cap = settings.rules_max_file_bytes;
            let options = LoadOptions {
                max_file_bytes: cap,
                merge_domains: settings.merge_domain_config,
            };
            let authz_files = settings
                .authz_config
                .clone()
                .zip(settings.authz_keys.clone());
            tokio::task::spawn_blocking(move || -> Result<_, RuleError> {
                // With xDS the directory is neither read nor polled: rules start empty.
                let rules = if from_xds {
                    Rules::default()
                } else {
                    Rules::load_dir_with(&dir, options).map_err(LoadError::into_rule_error)?
                };
                let authz = match authz_files {
                    None => None,
                    Some((config, keys)) => Some(Arc::new(
                        Authz::load(&config, &keys, cap)?.with_meter(&authz_meter),
                    )),
                };
                Ok((rules, authz))
            })
            .await
            .map_err(|e| {
                ServeError::Rules(RuleError {
                    file: settings.rules_dir.display().to_string(),
                    path: String::new(),
                    reason: format!("loading the configuration failed: {e}"),
                })
            })??
        };
        let rules = Arc::new(ArcSwap::from_pointee(rules));
        // Certificates first: a bad file fails start-up before any wait for xDS.
        let grpc_tls = match grpc_tls(&settings)? {
            Some(tls) => Some(Arc::new(load_tls(tls, &meter).await?)),
            None => None,
        };
        // Both series exist from the start (at 0 until something loads).
        meter.record(|| {
            metrics::counter!("ratelimit_service_config_load_success").absolute(0);
            metrics::counter!("ratelimit_service_config_load_error").absolute(0);
        });
        let xds = if from_xds {
            Some(XdsSource::start(&settings, &rules, &meter).await?)
        } else {
            // Upstream counts its first load too.
            meter.record(|| {
                metrics::counter!("ratelimit_service_config_load_success").increment(1);
            });
            tracing::info!(
                dir = %settings.rules_dir.display(),
                domains = rules.load().files().len(),
                "rules loaded"
            );
            None
        };
        let listener = TcpListener::bind(settings.grpc_addr)
            .await
            .map_err(|source| ServeError::Bind {
                addr: settings.grpc_addr,
                source,
            })?;
        let http = TcpListener::bind(settings.http_addr)
            .await
            .map_err(|source| ServeError::Bind {
                addr: settings.http_addr,
                source,
            })?;
        let debug = bind_optional(settings.debug_addr).await?;
        let prometheus = bind_optional(settings.prometheus_addr).await?;
        Ok(Server {
            listener,
            http,
            debug,
            prometheus,
            settings,
            rules,
            clock,
            admin_token,
            authz,
            meter,
            grpc_tls,
            xds,
        })
    }

    /// Serves gRPC over TLS with the files of `tls`, read and validated now (on the blocking
    /// pool); they are reloaded when they change, every `rules_poll_ms`. [`Server::bind`] calls
    /// it when `grpc_tls` is set; embedders may call it themselves.
    pub async fn with_grpc_tls(mut self, tls: ServerTls) -> Result<Server, ServeError> {
        let live = load_tls(tls, &self.meter).await?;
        self.grpc_tls = Some(Arc::new(live));
        Ok(self)
    }

    /// The address gRPC is served on.
    pub fn grpc_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The address of the HTTP admin port.
    pub fn http_addr(&self) -> std::io::Result<SocketAddr> {
        self.http.local_addr()
    }

    /// The address of the debug port, if one is bound.
    pub fn debug_addr(&self) -> Option<SocketAddr> {
        self.debug.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The address of the metrics-only port, if one is bound.
    pub fn prometheus_addr(&self) -> Option<SocketAddr> {
        self.prometheus.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Serves until `shutdown` completes, then reports NOT_SERVING, waits the configured
    /// delay, stops accepting and lets in-flight calls finish.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let settings = &self.settings;
        match settings.backend {
            Backend::Memory => {
                let store = Arc::new(
                    MemoryStore::new(Arc::clone(&self.clock), settings.memory_max_keys)
                        .all_or_nothing(settings.atomic_admission)
                        .with_meter(&self.meter),
                );
                let sweeper = store.spawn_sweeper(settings.memory_sweep_secs);
                let slots = Arc::new(MemorySlots::new(
                    Arc::clone(&self.clock),
                    settings.memory_max_keys,
                ));
                let result = self.run_with(store, slots, shutdown).await;
                sweeper.abort();
                result
            }
            Backend::Redis | Backend::RedisCluster | Backend::RedisSentinel => {
                let store = Arc::new(connect_redis(settings, &self.meter).await?);
                tracing::info!(shards = store.len(), "redis connected");
                let slots = store.slots();
                self.run_with(store, slots, shutdown).await
            }
        }
    }

    /// Runs every part (admin port, rule reload, override sync, gRPC) over `store`.
    async fn run_with<S: Storage>(
        self,
        store: Arc<S>,
        slots: Arc<dyn SlotBackend>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let Server {
            listener,
            http,
            debug,
            prometheus,
            settings,
            rules,
            clock,
            admin_token,
            authz,
            meter,
            grpc_tls,
            xds,
        } = self;
        let http_addr = http.local_addr().map_err(|source| ServeError::Bind {
            addr: settings.http_addr,
            source,
        })?;
        let options = ResponseOptions {
            shadow_mode: settings.shadow_mode,
            headers: settings.response_headers,
            near_limit_ratio: settings.near_limit_ratio,
            names: crate::service::response::HeaderNames::new(
                &settings.response_header_limit,
                &settings.response_header_remaining,
                &settings.response_header_reset,
            ),
        };
        let overrides = Arc::new(Overrides::new(clock).with_meter(&meter));
        let limiter = Arc::new(
            RateLimiter::new(
                Arc::clone(&rules),
                Arc::clone(&overrides),
                Arc::clone(&store),
                options,
            )
            .with_bounds(crate::request::RequestBounds {
                max_descriptors: settings.max_descriptors,
                max_entries: settings.max_entries,
                max_value_bytes: settings.max_value_bytes,
            })
            .with_meter(&meter)
            .with_room(WaitingRoom::new(
                slots,
                // A wait ends before the server's own call timeout cuts the call.
                settings
                    .request_timeout_ms
                    .saturating_sub(Duration::from_millis(100))
                    .max(Duration::from_millis(1)),
                RoomMetrics::new(meter.clone()),
            )),
        );
        let room_tasks = limiter.room().spawn_tasks();
        let upkeep = meter.spawn_upkeep(METER_UPKEEP);
        let sync = overrides.spawn_sync(store, settings.overrides_poll_ms);
        let auth = Auth::new(admin_token, http_addr);
        if auth == Auth::Disabled {
            tracing::warn!(
                "admin API disabled: http_addr {http_addr} is not loopback and no admin_token_file is set"
            );
        }
        let draining = Arc::new(AtomicBool::new(false));
        let (stop_admin, admin_stopped) = tokio::sync::watch::channel(false);
        let state = Arc::new(AdminState {
            limiter: Arc::clone(&limiter),
            auth,
            draining: Arc::clone(&draining),
            meter: meter.clone(),
            loaded: xds.as_ref().map(|source| source.loaded()),
        });
        // The HTTP port, and the debug and metrics ports when bound: same hygiene, same stop.
        let limits = crate::admin::Limits {
            timeouts: timeouts(&settings),
            max_request_bytes: settings.max_request_bytes,
            request_timeout: settings.request_timeout_ms,
            max_connections: settings.max_connections,
        };
        let port = |name: &'static str, listener: TcpListener, router: axum::Router| {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!("listening {name}={addr}");
            }
            let mut stopped = admin_stopped.clone();
            let stop = async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            };
            let serving = crate::admin::serve_router(listener, router, limits, &meter, stop);
            (name, tokio::spawn(serving))
        };
        let mut ports = vec![port(
            "http",
            http,
            crate::admin::admin_router(Arc::clone(&state)),
        )];
        if let Some(l) = debug {
            ports.push(port(
                "debug",
                l,
                crate::admin::debug_router(Arc::clone(&state)),
            ));
        }
        if let Some(l) = prometheus {
            let router =
                crate::admin::metrics_router(Arc::clone(&state), &settings.prometheus_path);
            ports.push(port("metrics", l, router));
        }
        // With xDS the rule directory is neither read nor polled.
        let reloader = xds.is_none().then(|| {
            crate::rules::reload::Reloader::new(
                &settings.rules_dir,
                rules,
                settings.rules_max_file_bytes,
            )
            .with_meter(&meter)
            .with_merge_domains(settings.merge_domain_config)
            .spawn(settings.rules_poll_ms)
        });
        let mut rls = RlsService::new(Arc::clone(&limiter));
        if let Some(source) = &xds {
            rls = rls.until_loaded(source.loaded());
        }
        let authz_reloader = authz
            .as_ref()
            .map(|a| a.spawn_reload(settings.rules_poll_ms));
        let result = serve(
            listener, grpc_tls, &settings, &meter, rls, authz, draining, shutdown,
        )
        .await;
        if let Some(task) = authz_reloader {
            task.abort();
        }
        if let Some(task) = reloader {
            task.abort();
        }
        drop(xds);
        sync.abort();
        for task in room_tasks {
            task.abort();
        }
        if let Some(task) = upkeep {
            task.abort();
        }
        let _ = stop_admin.send(true);
        // Like gRPC: an idle keep-alive connection must not hold the process.
        let drained = tokio::time::timeout(DRAIN_LIMIT, async {
            for (name, task) in ports.iter_mut() {
                if let Ok(Err(e)) = task.await {
                    tracing::warn!(error = %e, "{name} server stopped with an error");
                }
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!("HTTP connections still open after {DRAIN_LIMIT:?}; closing them");
            for (_, task) in &ports {
                task.abort();
            }
        }
        result
    }
}

/// The gRPC port's TLS files, when `grpc_tls` is on.
fn grpc_tls(settings: &Settings) -> Result<Option<ServerTls>, ServeError> {
    if !settings.grpc_tls {
        if settings.grpc_tls_client_ca.is_some() || settings.grpc_tls_client_san.is_some() {
            tracing::warn!("grpc_tls_client_ca / grpc_tls_client_san are set but grpc_tls is off: the gRPC port serves plaintext");
        }
        return Ok(None);
    }
    // Settings validation requires both; checked again so a bypass cannot serve plaintext.
    let (Some(cert), Some(key)) = (&settings.grpc_tls_cert, &settings.grpc_tls_key) else {
        return Err(ServeError::Tls(TlsError::Config(
            "grpc_tls needs grpc_tls_cert and grpc_tls_key".into(),
        )));
    };
    Ok(Some(ServerTls {
        cert: cert.clone(),
        key: key.clone(),
        client_ca: settings.grpc_tls_client_ca.clone(),
        client_san: settings.grpc_tls_client_san.clone(),
    }))
}

/// Binds an optional listener (the debug and metrics ports).
async fn bind_optional(addr: Option<SocketAddr>) -> Result<Option<TcpListener>, ServeError> {
    match addr {
        None => Ok(None),
        Some(addr) => TcpListener::bind(addr)
            .await
            .map(Some)
            .map_err(|source| ServeError::Bind { addr, source }),
    }
}

/// Reads and validates the gRPC TLS files (on the blocking pool).
async fn load_tls(tls: ServerTls, meter: &Meter) -> Result<LiveTls, ServeError> {
    let live = LiveTls::load_async(tls).await?.with_meter(meter);
    tracing::info!(
        cert = %live.spec().cert.display(),
        client_ca = ?live.spec().client_ca,
        "gRPC TLS certificates loaded"
    );
    Ok(live)
}

/// Connects the Redis store the settings describe.
async fn connect_redis(settings: &Settings, meter: &Meter) -> Result<RedisStore, ServeError> {
    let topology = match settings.backend {
        Backend::RedisCluster => Topology::Cluster,
        Backend::RedisSentinel => Topology::Sentinel {
            master: settings.redis_sentinel_master.clone(),
        },
        _ => Topology::Shards,
    };
    // PEM files are read on the blocking pool, like every other file.
    let files = [
        ("redis_tls_ca_file", settings.redis_tls_ca_file.clone()),
        (
            "redis_tls_client_cert",
            settings.redis_tls_client_cert.clone(),
        ),
        (
            "redis_tls_client_key",
            settings.redis_tls_client_key.clone(),
        ),
    ];
    let [tls_ca, cert, key] = tokio::task::spawn_blocking(move || {
        files.map(|(name, path)| {
            path.map(|p| {
                crate::rules::read::read_capped(&p, 1 << 20)
                    .map(String::into_bytes)
                    .map_err(|e| format!("{name} {}: {e}", p.display()))
            })
            .transpose()
        })
    })
    .await
    .map_err(|e| ServeError::Store(format!("reading the Redis TLS files failed: {e}")))?;
    let tls_ca = tls_ca.map_err(ServeError::Store)?;
    let tls_client = cert
        .map_err(ServeError::Store)?
        .zip(key.map_err(ServeError::Store)?);
    let config = RedisConfig {
        nodes: settings.redis_node_list(),
        topology,
        tls_ca,
        tls_client,
        key_prefix: settings.redis_key_prefix.clone(),
        timeout: settings.redis_timeout,
        clock: None,
        atomic: settings.atomic_admission,
        local_max_keys: settings.memory_max_keys,
        fallback: FallbackConfig {
            policy: settings.fallback,
            replicas: settings.fallback_replicas,
            breaker: BreakerConfig {
                failures: settings.breaker_failures,
                open_for: settings.breaker_open_ms,
                max_open_for: settings.breaker_max_open_ms,
            },
        },
    };
    RedisStore::connect_with_meter(config, meter)
        .await
        .map_err(|e| ServeError::Store(e.to_string()))
}

/// Serves `limiter` with health and reflection until `shutdown`, then drains: NOT_SERVING
/// (and `/healthcheck` 500), the configured delay, then no new calls. Over TLS when `tls`
/// is set (its files polled for changes meanwhile).
#[allow(clippy::too_many_arguments)]
async fn serve<S: Store>(
    listener: TcpListener,
    tls: Option<Arc<LiveTls>>,
    settings: &Settings,
    meter: &Meter,
    rls: RlsService<S>,
    authz: Option<Arc<Authz>>,
    draining: Arc<AtomicBool>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let (reporter, health) = tonic_health::server::health_reporter();
    let mut names: Vec<&'static str> = HEALTH_NAMES.to_vec();
    if authz.is_some() {
        names.push(AUTHZ_HEALTH_NAME);
    }
    for name in names.iter().copied() {
        reporter
            .set_service_status(name, ServingStatus::Serving)
            .await;
    }
    let max_request_bytes = settings.max_request_bytes;
    let authz_service = authz.map(|authz| {
        StrictServer::new(
            Check(Arc::new(AuthzService {
                limiter: Arc::clone(rls.limiter()),
                authz,
            })),
            max_request_bytes,
        )
    });
    // Both versions: grpcurl 1.8 speaks only v1alpha.
    let reflection_v1 = reflection()
        .build_v1()
        .map_err(|e| ServeError::Reflection(e.to_string()))?;
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .map_err(|e| ServeError::Reflection(e.to_string()))?;

    let delay = settings.shutdown_delay_ms;
    let drain_began = Arc::new(tokio::sync::Notify::new());
    let began = Arc::clone(&drain_began);
    let drain = async move {
        shutdown.await;
        began.notify_one();
        tracing::info!("shutting down: reporting NOT_SERVING");
        draining.store(true, Ordering::SeqCst);
        for name in names {
            reporter
                .set_service_status(name, ServingStatus::NotServing)
                .await;
        }
        tokio::time::sleep(delay).await;
    };
    let addr = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: settings.grpc_addr,
        source,
    })?;
    let conn_metrics = crate::net::ConnMetrics::new(meter, settings.max_connections);
    // Tests and tools read the address from the end of this line: keep it last.
    tracing::info!("listening grpc={addr}");
    let router = tonic::transport::Server::builder()
        // Half-open connections: a peer that stops answering PINGs is dropped.
        .http2_keepalive_interval(Some(settings.keepalive_ms))
        .http2_keepalive_timeout(Some(settings.keepalive_timeout_ms))
        // Envoy multiplexes a few streams per connection and opens another when it reaches
        // the peer's limit; a client cannot park unbounded streams (each may buffer up to
        // max_request_bytes) on one connection.
        .max_concurrent_streams(Some(MAX_CONCURRENT_STREAMS))
        // A request stalled mid-body (or a handler stuck) ends: its stream and buffers go.
        .timeout(settings.request_timeout_ms)
        .add_service(Tracked(health))
        .add_service(Tracked(reflection_v1))
        .add_service(Tracked(reflection_v1alpha))
        .add_service(Tracked(StrictServer::new(
            ShouldRateLimit(Arc::new(rls)),
            max_request_bytes,
        )))
        .add_optional_service(authz_service.map(Tracked));
    let tls_reload = tls
        .as_ref()
        .map(|tls| tls.spawn_reload(settings.rules_poll_ms));
    let serving = match tls {
        None => futures_util::future::Either::Left(router.serve_with_incoming_shutdown(
            crate::net::incoming(listener, timeouts(settings), conn_metrics),
            drain,
        )),
        Some(tls) => futures_util::future::Either::Right(router.serve_with_incoming_shutdown(
            crate::net::tls::tls_incoming(listener, timeouts(settings), conn_metrics, tls, meter),
            drain,
        )),
    };
    // A client that keeps an idle connection open must not hold the process forever.
    let deadline = async {
        drain_began.notified().await;
        tokio::time::sleep(delay + DRAIN_LIMIT).await;
    };
    let result = tokio::select! {
        result = serving => result,
        () = deadline => {
            tracing::warn!("connections still open {DRAIN_LIMIT:?} after the shutdown delay; closing them");
            Ok(())
        }
    };
    if let Some(task) = tls_reload {
        task.abort();
    }
    tracing::info!("stopped");
    Ok(result?)
}

/// The connection deadlines both ports enforce.
pub fn timeouts(settings: &Settings) -> Timeouts {
    Timeouts {
        header_read: settings.header_read_timeout_ms,
        idle: settings.idle_timeout_ms,
    }
}

/// Reflection over the vendored Envoy protos and the health service.
fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
}
