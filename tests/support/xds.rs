//! A small real ADS server for tests, modelled on Envoy Gateway's (a go-control-plane SotW
//! snapshot cache keyed by node id `envoy-ratelimit`, decimal versions from 1, one
//! `RateLimitConfig` resource per domain named after it), on `127.0.0.1:0`, plaintext or TLS 1.3
//! with required client certificates and ALPN h2 (as EG's `LoadTLSConfig`).
//!
//! Per stream it behaves like the snapshot cache: a request whose `version_info` differs from
//! the snapshot's is answered at once with the snapshot (so a NACK, which carries the previous
//! version, gets the same snapshot again: go-control-plane issue #962); a request already at
//! the snapshot's version opens a watch answered by the next [`XdsServer::set`]. A request with
//! a stale nonce is ignored; a request from another node id is never answered. Every request
//! is recorded. [`XdsServer::resend`] pushes the snapshot to every stream regardless (a stray
//! resend); [`XdsServer::stop`] and [`XdsServer::restart`] end all streams and re-bind the
//! same port.

pub use super::xds_fixtures::*;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::google::protobuf::Any;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sluice::xds::proto::{RateLimitConfig, TYPE_URL};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};

/// One DiscoveryRequest as received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Which stream (1, 2, … in opening order, across restarts).
    pub stream: u64,
    pub node_id: String,
    pub version_info: String,
    pub response_nonce: String,
    /// `error_detail.message` of a NACK.
    pub error_detail: Option<String>,
    pub type_url: String,
    pub resource_names: Vec<String>,
}

impl Recorded {
    /// An ACK of a response (nonce set, no error).
    pub fn is_ack(&self) -> bool {
        !self.response_nonce.is_empty() && self.error_detail.is_none()
    }
    /// A NACK.
    pub fn is_nack(&self) -> bool {
        self.error_detail.is_some()
    }
}

/// The snapshot every stream converges to.
struct Snapshot {
    version: String,
    resources: Vec<Any>,
}

struct Shared {
    snapshot: Mutex<Snapshot>,
    requests: Mutex<Vec<Recorded>>,
    /// Extra metadata of each stream (lower-case name, value), in opening order.
    stream_headers: Mutex<Vec<Vec<(String, String)>>>,
    /// Bumped by `set`: open watches answer.
    changed: watch::Sender<u64>,
    /// Bumped by `resend`: every stream pushes the snapshot.
    resend: watch::Sender<u64>,
    streams: AtomicU64,
    nonces: AtomicU64,
    handshake_failures: AtomicU64,
}

/// The running part, dropped by `stop`.
struct Running {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// The test ADS server.
pub struct XdsServer {
    /// Where it listens (kept across restarts).
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    tls: Option<Arc<rustls::ServerConfig>>,
    running: Option<Running>,
}

impl XdsServer {
    /// A plaintext server with an empty snapshot at version "" (nothing sent until `set`).
    pub async fn start() -> XdsServer {
        XdsServer::start_with(None).await
    }

    /// A TLS 1.3 server presenting `cert`/`key`, requiring client certificates from `ca`.
    pub async fn start_tls(ca: &Path, cert: &Path, key: &Path) -> XdsServer {
        XdsServer::start_with(Some(server_tls(ca, cert, key))).await
    }

    async fn start_with(tls: Option<Arc<rustls::ServerConfig>>) -> XdsServer {
        let shared = Arc::new(Shared {
            snapshot: Mutex::new(Snapshot {
                version: String::new(),
                resources: Vec::new(),
            }),
            requests: Mutex::new(Vec::new()),
            stream_headers: Mutex::new(Vec::new()),
            changed: watch::channel(0).0,
            resend: watch::channel(0).0,
            streams: AtomicU64::new(0),
            nonces: AtomicU64::new(0),
            handshake_failures: AtomicU64::new(0),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut server = XdsServer {
            addr,
            shared,
            tls,
            running: None,
        };
        server.serve(listener);
        server
    }

    fn serve(&mut self, listener: TcpListener) {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(serve(
            listener,
            Arc::clone(&self.shared),
            self.tls.clone(),
            stopped,
        ));
        self.running = Some(Running { stop, task });
    }

    /// Replaces the snapshot; watching streams get it.
    pub fn set(&self, version: &str, configs: &[RateLimitConfig]) {
        self.set_raw(version, configs.iter().map(any).collect());
    }

    /// [`XdsServer::set`] with resources as they go on the wire (garbage, oversize…).
    pub fn set_raw(&self, version: &str, resources: Vec<Any>) {
        *self.shared.snapshot.lock().expect("lock") = Snapshot {
            version: version.to_owned(),
            resources,
        };
        self.shared.changed.send_modify(|g| *g += 1);
    }

    /// Pushes the current snapshot to every stream, watched or not.
    pub fn resend(&self) {
        self.shared.resend.send_modify(|g| *g += 1);
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().expect("lock").clone()
    }

    /// The extra metadata of each stream opened so far.
    pub fn stream_headers(&self) -> Vec<Vec<(String, String)>> {
        self.shared.stream_headers.lock().expect("lock").clone()
    }

    /// TLS handshakes that failed (e.g. a client without a valid certificate).
    pub fn handshake_failures(&self) -> u64 {
        self.shared.handshake_failures.load(Ordering::SeqCst)
    }

    /// Waits (at most 15 s) for a recorded request satisfying `pred`; panics naming `what`.
    pub async fn wait_request(&self, what: &str, pred: impl Fn(&Recorded) -> bool) -> Recorded {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(r) = self.requests().into_iter().find(|r| pred(r)) {
                return r;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no request: {what}; got {:#?}",
                self.requests()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Ends every stream and stops listening (the port is free until `restart`).
    pub async fn stop(&mut self) {
        if let Some(Running { stop, mut task }) = self.running.take() {
            let _ = stop.send(true);
            if tokio::time::timeout(Duration::from_secs(5), &mut task)
                .await
                .is_err()
            {
                task.abort();
                let _ = task.await;
            }
        }
    }

    /// Listens again on the same port, with the snapshot it had.
    pub async fn restart(&mut self) {
        self.stop().await;
        let listener = TcpListener::bind(self.addr)
            .await
            .expect("re-bind the same port");
        self.serve(listener);
    }
}

/// Serves until `stopped` turns true.
async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    tls: Option<Arc<rustls::ServerConfig>>,
    stopped: watch::Receiver<bool>,
) {
    let service = AggregatedDiscoveryServiceServer::new(Ads {
        shared: Arc::clone(&shared),
        stopped: stopped.clone(),
    });
    let mut until = stopped.clone();
    let shutdown = async move {
        let _ = until.wait_for(|s| *s).await;
    };
    let router = tonic::transport::Server::builder().add_service(service);
    let Some(tls) = tls else {
        let _ = router
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
            .await;
        return;
    };
    let (tx, rx) = mpsc::channel(16);
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let mut until = stopped.clone();
    let accept = tokio::spawn(async move {
        loop {
            let tcp = tokio::select! {
                _ = stopped_now(&mut until) => return,
                accepted = listener.accept() => match accepted {
                    Ok((tcp, _)) => tcp,
                    Err(_) => continue,
                },
            };
            let (acceptor, tx, shared) = (acceptor.clone(), tx.clone(), Arc::clone(&shared));
            tokio::spawn(async move {
                let handshake = tokio::time::timeout(Duration::from_secs(5), acceptor.accept(tcp));
                match handshake.await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Ok::<_, std::io::Error>(stream)).await;
                    }
                    _ => {
                        shared.handshake_failures.fetch_add(1, Ordering::SeqCst);
                    }
                }
            });
        }
    });
    let _ = router
        .serve_with_incoming_shutdown(ReceiverStream::new(rx), shutdown)
        .await;
    accept.abort();
    let _ = accept.await;
}

/// Completes when `stopped` turns true (the guard `wait_for` returns is not `Send`).
async fn stopped_now(stopped: &mut watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}

/// The ADS service.
struct Ads {
    shared: Arc<Shared>,
    stopped: watch::Receiver<bool>,
}

#[tonic::async_trait]
impl AggregatedDiscoveryService for Ads {
    type StreamAggregatedResourcesStream = ReceiverStream<Result<DiscoveryResponse, Status>>;
    type DeltaAggregatedResourcesStream = ReceiverStream<Result<DeltaDiscoveryResponse, Status>>;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        let headers = request
            .metadata()
            .iter()
            .filter_map(|kv| match kv {
                tonic::metadata::KeyAndValueRef::Ascii(k, v) => {
                    Some((k.to_string(), v.to_str().unwrap_or("").to_owned()))
                }
                _ => None,
            })
            .collect();
        self.shared
            .stream_headers
            .lock()
            .expect("lock")
            .push(headers);
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(stream(
            Arc::clone(&self.shared),
            request.into_inner(),
            tx,
            self.stopped.clone(),
        ));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn delta_aggregated_resources(
        &self,
        _request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        Err(Status::unimplemented("state of the world only"))
    }
}

/// One ADS stream, as go-control-plane's SotW server over a snapshot cache.
async fn stream(
    shared: Arc<Shared>,
    mut inbound: Streaming<DiscoveryRequest>,
    tx: mpsc::Sender<Result<DiscoveryResponse, Status>>,
    mut stopped: watch::Receiver<bool>,
) {
    let id = shared.streams.fetch_add(1, Ordering::SeqCst) + 1;
    let mut changed = shared.changed.subscribe();
    let mut resend = shared.resend.subscribe();
    changed.borrow_and_update();
    resend.borrow_and_update();
    let mut last_nonce = String::new();
    let mut watching = false;
    let mut client_version = String::new();
    let mut subscribed = false;
    loop {
        let push = tokio::select! {
            _ = stopped_now(&mut stopped) => {
                let _ = tx.send(Err(Status::unavailable("xds server stopping"))).await;
                return;
            }
            msg = inbound.message() => {
                let Ok(Some(r)) = msg else { return };
                shared.requests.lock().expect("lock").push(Recorded {
                    stream: id,
                    node_id: r.node.as_ref().map(|n| n.id.clone()).unwrap_or_default(),
                    version_info: r.version_info.clone(),
                    response_nonce: r.response_nonce.clone(),
                    error_detail: r.error_detail.as_ref().map(|e| e.message.clone()),
                    type_url: r.type_url.clone(),
                    resource_names: r.resource_names.clone(),
                });
                let node = r.node.as_ref().map(|n| n.id.as_str()).unwrap_or("");
                if r.type_url != TYPE_URL || node != EG_NODE_ID {
                    continue;
                }
                if !r.response_nonce.is_empty() && r.response_nonce != last_nonce {
                    continue; // stale
                }
                subscribed = true;
                watching = true;
                client_version = r.version_info;
                shared.snapshot.lock().expect("lock").version != client_version
            }
            Ok(()) = changed.changed(), if watching => {
                shared.snapshot.lock().expect("lock").version != client_version
            }
            Ok(()) = resend.changed(), if subscribed => true,
        };
        if !push {
            continue;
        }
        let nonce = (shared.nonces.fetch_add(1, Ordering::SeqCst) + 1).to_string();
        let response = {
            let snap = shared.snapshot.lock().expect("lock");
            DiscoveryResponse {
                version_info: snap.version.clone(),
                resources: snap.resources.clone(),
                type_url: TYPE_URL.to_owned(),
                nonce: nonce.clone(),
                ..Default::default()
            }
        };
        last_nonce = nonce;
        watching = false;
        if tx.send(Ok(response)).await.is_err() {
            return;
        }
    }
}

/// EG's TLS: 1.3 only, ALPN h2, client certificates required and verified against `ca`.
pub fn server_tls(ca: &Path, cert: &Path, key: &Path) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    let ca_pem = std::fs::read(ca).expect("read ca");
    for c in CertificateDer::pem_slice_iter(&ca_pem) {
        roots.add(c.expect("ca pem")).expect("add ca");
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .expect("client verifier");
    let cert_pem = std::fs::read(cert).expect("read cert");
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .map(|c| c.expect("cert pem"))
        .collect();
    let key = PrivateKeyDer::from_pem_slice(&std::fs::read(key).expect("read key")).expect("key");
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .expect("server cert");
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}
