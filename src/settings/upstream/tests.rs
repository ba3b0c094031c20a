//! Upstream variables: mappings, refusals, notes, and the table covering every variable read.

use super::*;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn value<'a>(d: &'a Derived, name: &str) -> Option<&'a str> {
    d.values
        .iter()
        .rev()
        .find(|(n, _, _)| *n == name)
        .map(|(_, v, _)| v.as_str())
}

#[test]
fn redis_urls() {
    let d = derive(
        &env(&[
            ("REDIS_SOCKET_TYPE", "tcp"),
            ("REDIS_URL", "redis:6379"),
            ("REDIS_AUTH", "u:p@ss"),
        ]),
        false,
    )
    .expect("valid");
    assert_eq!(
        value(&d, "redis_nodes"),
        Some("redis://u:p%40ss@redis:6379")
    );
    assert_eq!(value(&d, "backend"), Some("redis"));
    let d = derive(
        &env(&[
            ("REDIS_TYPE", "sentinel"),
            ("REDIS_URL", "mymaster,a:26379,b:26379"),
        ]),
        false,
    )
    .expect("valid");
    assert_eq!(value(&d, "redis_sentinel_master"), Some("mymaster"));
    assert_eq!(
        value(&d, "redis_nodes"),
        Some("redis://a:26379,redis://b:26379")
    );
    // The primary would be reached in plaintext: refused rather than half honoured.
    let e = derive(
        &env(&[
            ("REDIS_TYPE", "sentinel"),
            ("REDIS_URL", "mymaster,a:26379"),
            ("REDIS_TLS", "true"),
        ]),
        false,
    )
    .expect_err("sentinel over TLS");
    assert!(e.to_string().contains("REDIS_TLS"), "{e}");
    let d = derive(
        &env(&[("REDIS_URL", "/run/redis.sock"), ("REDIS_AUTH", "u:p")]),
        false,
    )
    .expect("valid");
    assert_eq!(
        value(&d, "redis_nodes"),
        Some("redis+unix:///run/redis.sock?user=u&pass=p")
    );
    let d = derive(
        &env(&[("REDIS_TYPE", "CLUSTER"), ("REDIS_URL", "a:1,b:2")]),
        false,
    )
    .expect("valid");
    assert_eq!(value(&d, "backend"), Some("redis_cluster"));
    assert!(derive(&env(&[]), false).expect("valid").values.is_empty());
    assert!(derive(&env(&[("BACKEND_TYPE", "memcache")]), false).is_err());
    assert!(derive(&env(&[("REDIS_PERSECOND", "true")]), false).is_err());
}

#[test]
fn listeners_and_notes() {
    let d = derive(
        &env(&[
            ("GRPC_HOST", "::"),
            ("PORT", "9000"),
            ("USE_STATSD", "true"),
            ("REDIS_POOL_SIZE", "5"),
            ("MEMCACHE_HOST_PORT", "x:1"),
        ]),
        true,
    )
    .expect("valid");
    assert_eq!(value(&d, "grpc_addr"), Some("[::]:8081"));
    assert_eq!(value(&d, "http_addr"), Some("0.0.0.0:9000"));
    assert_eq!(value(&d, "debug_addr"), Some("0.0.0.0:6070"));
    assert_eq!(
        value(&d, "rules_dir"),
        Some("/srv/runtime_data/current/config")
    );
    assert_eq!(d.notes.len(), 3, "{:?}", d.notes);
}

#[test]
fn every_variable_read_is_documented() {
    let r = Reader {
        env: &HashMap::new(),
        read: RefCell::new(BTreeSet::new()),
    };
    let mut out = Derived::default();
    listeners(&r, false, &mut out).expect("ok");
    config_source(&r, false, &mut out).expect("ok");
    redis::redis(&r, &mut out).expect("ok");
    behaviour(&r, &mut out).expect("ok");
    observability(&r, &mut out).expect("ok");
    for var in r.read.borrow().iter() {
        assert!(
            UPSTREAM.iter().any(|(n, _, _)| n == var),
            "{var} is read but not in UPSTREAM"
        );
    }
}
