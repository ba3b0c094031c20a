//! Certificate reload on the gRPC port, as a Kubernetes Secret update does it (the `..data`
//! link swapped by a rename): an open connection keeps working, new connections get the new
//! certificate (trusted through the new CA, refused through the old one), and a broken update
//! is refused while the last good certificate stays.

mod support;

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use sluice::net::tls::ServerTls;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::{Duration, Instant};
use support::certs::{Ca, KeyKind, Leaf};
use support::tls::{ask, connect_and_ask, counter, endpoint, start_tls, CALL_LIMIT};
use support::*;

/// Publishes `files` (name, source) as a new Secret version in `dir`: a fresh `..<version>`
/// directory, then `..data` re-pointed at it atomically (link then rename), like the kubelet.
fn publish(dir: &Path, version: &str, files: &[(&str, &Path)]) {
    let versioned = dir.join(format!("..{version}"));
    std::fs::create_dir(&versioned).expect("version dir");
    for (name, source) in files {
        std::fs::copy(source, versioned.join(name)).expect("copy into version dir");
    }
    let tmp = dir.join("..data_tmp");
    symlink(format!("..{version}"), &tmp).expect("link");
    std::fs::rename(&tmp, dir.join("..data")).expect("swap ..data");
    for (name, _) in files {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            symlink(format!("..data/{name}"), &link).expect("file link");
        }
    }
}

/// A CA (`name`) with a `localhost` server certificate, in a directory of its own.
fn authority(root: &Path, name: &str) -> (Ca, Leaf) {
    let dir = root.join(name);
    std::fs::create_dir(&dir).expect("ca dir");
    let ca = Ca::new(&dir, "ca", "envoy-gateway");
    let leaf = ca.leaf("tls", "*", &["DNS:localhost"], KeyKind::RsaPkcs1);
    (ca, leaf)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_update_reaches_new_connections_only() {
    let root = tempfile::tempdir().expect("tempdir");
    let (old_ca, old) = authority(root.path(), "old");
    let (new_ca, new) = authority(root.path(), "new");
    let secret = root.path().join("certs");
    std::fs::create_dir(&secret).expect("secret dir");
    publish(
        &secret,
        "v1",
        &[("tls.crt", &old.cert), ("tls.key", &old.key)],
    );

    let s = start_tls(
        ServerTls {
            cert: secret.join("tls.crt"),
            key: secret.join("tls.key"),
            client_ca: None,
            client_san: None,
        },
        &["--rules-poll-ms", "100"],
    )
    .await;
    let open = endpoint(s.addr, &old_ca.cert, None)
        .connect()
        .await
        .expect("connect with the old CA");
    assert_eq!(
        overall(&ask(open.clone()).await.expect("first call")),
        Code::Ok
    );

    publish(
        &secret,
        "v2",
        &[("tls.crt", &new.cert), ("tls.key", &new.key)],
    );
    let deadline = Instant::now() + CALL_LIMIT;
    loop {
        match connect_and_ask(endpoint(s.addr, &new_ca.cert, None)).await {
            Ok(r) => {
                assert_eq!(overall(&r), Code::Ok);
                break;
            }
            Err(e) => assert!(
                Instant::now() < deadline,
                "the new certificate was never served: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The connection opened before the update still answers: a reconnect would have to verify
    // the new certificate against the old CA, and fail.
    let r = ask(open.clone())
        .await
        .expect("the open connection survives the reload");
    assert_eq!(overall(&r), Code::Ok);
    let refused = connect_and_ask(endpoint(s.addr, &old_ca.cert, None)).await;
    assert!(
        refused.is_err(),
        "a new connection still got the old certificate"
    );
    assert!(counter(&s, "sluice_tls_reloads_total{outcome=\"applied\"}") >= 1);

    // A broken update (a certificate without its key) is refused; the last good one stays.
    let broken = root.path().join("broken.key");
    std::fs::write(&broken, "not a key\n").expect("write broken key");
    publish(
        &secret,
        "v3",
        &[("tls.crt", &old.cert), ("tls.key", &broken)],
    );
    let deadline = Instant::now() + CALL_LIMIT;
    while counter(&s, "sluice_tls_reloads_total{outcome=\"rejected\"}") < 1 {
        assert!(
            Instant::now() < deadline,
            "the broken update was not refused:\n{}",
            s.metrics()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = connect_and_ask(endpoint(s.addr, &new_ca.cert, None))
        .await
        .expect("the last good certificate is still served");
    assert_eq!(overall(&r), Code::Ok);
    s.stop().await;
}
