//! The admin API: runtime overrides, a descriptor's usage, counter resets, and `/rlconfig`.
//!
//! Every `/admin/*` call is authorised first ([`super::Auth`]); bodies are JSON (see
//! [`crate::overrides::doc`]); errors are `{"error": "<field>: <reason>"}` with 400 for bad
//! input, 401/403 for auth, 503 when Redis does not answer.

use crate::admin::{error, AdminState};
use crate::overrides::doc::{self, DocError};
use crate::overrides::registry::OverrideError;
use crate::overrides::{Override, OverrideLimit, Target};
use crate::service::error::ServiceError;
use crate::service::rls::DescriptorUsage;
use crate::store::{Storage, Store};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use std::sync::Arc;

type Admin<S> = State<Arc<AdminState<S>>>;

fn ok(body: Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn bad_doc(e: &DocError) -> Response {
    error(StatusCode::BAD_REQUEST, &e.to_string())
}

pub fn from_service(e: &ServiceError) -> Response {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    error(status, &e.to_string())
}

fn from_override(e: &OverrideError) -> Response {
    match e {
        OverrideError::Doc(d) => bad_doc(d),
        OverrideError::Store(_) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

/// An override as listed: its document plus the seconds it has left.
fn listed(o: &Override, now_ms: u64) -> Value {
    let mut doc = doc::to_doc(o);
    if let Value::Object(map) = &mut doc {
        map.insert(
            "expires_in_seconds".into(),
            json!(o.expires_at_ms.saturating_sub(now_ms).div_ceil(1000)),
        );
    }
    doc
}

/// `GET /admin/overrides`: the active overrides.
pub async fn list<S: Store>(State(st): Admin<S>, headers: HeaderMap) -> Response {
    if let Err(denied) = st.auth.check(&headers, false) {
        return denied.into_response();
    }
    let overrides = st.limiter.overrides();
    let now = overrides.now_ms();
    let all: Vec<Value> = overrides.active().iter().map(|o| listed(o, now)).collect();
    ok(json!({ "overrides": all }))
}

/// `POST /admin/overrides`: sets (or replaces) the override of a target.
pub async fn set<S: Storage>(State(st): Admin<S>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(denied) = st.auth.check(&headers, true) {
        return denied.into_response();
    }
    let overrides = st.limiter.overrides();
    let now = overrides.now_ms();
    let o = match doc::parse_set(&body, now) {
        Ok(o) => o,
        Err(e) => return bad_doc(&e),
    };
    let rules = st.limiter.rules().load_full();
    let shown = listed(&o, now);
    match overrides.set(st.limiter.store().as_ref(), &rules, o).await {
        Ok(()) => {
            tracing::info!(override = %shown, "runtime override set");
            ok(shown)
        }
        Err(e) => from_override(&e),
    }
}

/// `DELETE /admin/overrides`: removes the override of a target.
pub async fn clear<S: Storage>(State(st): Admin<S>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(denied) = st.auth.check(&headers, true) {
        return denied.into_response();
    }
    let target = match doc::parse_target(&body) {
        Ok(t) => t,
        Err(e) => return bad_doc(&e),
    };
    let overrides = st.limiter.overrides();
    match overrides.clear(st.limiter.store().as_ref(), &target).await {
        Ok(existed) => {
            tracing::info!(target = %target_name(&target), existed, "runtime override cleared");
            ok(json!({ "cleared": existed }))
        }
        Err(e) => from_override(&e),
    }
}

/// `POST /admin/usage`: used / limit / remaining / reset of one descriptor, charging nothing.
pub async fn usage<S: Store>(State(st): Admin<S>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(denied) = st.auth.check(&headers, true) {
        return denied.into_response();
    }
    let target = match doc::parse_target(&body) {
        Ok(t) => t,
        Err(e) => return bad_doc(&e),
    };
    let slots = match st.limiter.slots_usage(&target).await {
        Ok(s) => s.map(|u| {
            json!({
                "max": u.max,
                "in_flight": u.in_flight,
                "queue": u.queue,
                "queued": u.queued,
                "queued_by_flow": u.flows.iter().map(|(flow, n)| json!({ "flow": flow, "queued": n })).collect::<Vec<_>>(),
                "next_expiry_seconds": u.next_expiry.map(crate::limiter::ceil_secs),
                "fallback": u.fallback,
            })
        }),
        Err(e) => return from_service(&e),
    };
    let (status, limits) = match st.limiter.usage(&target).await {
        Ok(DescriptorUsage::NoLimit) => ("no_limit", Vec::new()),
        Ok(DescriptorUsage::Unlimited) => ("unlimited", Vec::new()),
        Ok(DescriptorUsage::Limited(limits)) => {
            let limits: Vec<Value> = limits
                .iter()
                .map(|u| {
                    json!({
                        "name": u.name,
                        "requests_per_unit": u.requests_per_unit,
                        "unit": u.unit.name().to_ascii_lowercase(),
                        "used": u.used,
                        "remaining": u.remaining,
                        "reset_seconds": crate::limiter::ceil_secs(u.reset_after),
                        "override": u.overridden,
                        // The shard did not answer: this replica's local share, not the
                        // shared count.
                        "fallback": u.fallback,
                    })
                })
                .collect();
            ("limited", limits)
        }
        Err(e) => return from_service(&e),
    };
    match slots {
        // A concurrency rule limits the descriptor even without rate limits.
        Some(slots) => ok(json!({
            "status": if status == "no_limit" { "limited" } else { status },
            "limits": limits,
            "concurrency": slots,
        })),
        None => ok(json!({ "status": status, "limits": limits })),
    }
}

/// `POST /admin/reset`: deletes one descriptor's counters.
pub async fn reset<S: Store>(State(st): Admin<S>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(denied) = st.auth.check(&headers, true) {
        return denied.into_response();
    }
    let target = match doc::parse_target(&body) {
        Ok(t) => t,
        Err(e) => return bad_doc(&e),
    };
    match st.limiter.reset(&target).await {
        Ok(n) => {
            tracing::info!(target = %target_name(&target), counters = n, "counters reset");
            ok(json!({ "reset": n }))
        }
        Err(e) => from_service(&e),
    }
}

/// `GET /rlconfig`: upstream's one line per limit, then one line per active override.
pub async fn rlconfig<S: Store>(State(st): Admin<S>) -> String {
    let rules = st.limiter.rules().load_full();
    let mut lines = rules.describe();
    let overrides = st.limiter.overrides();
    let now = overrides.now_ms();
    for o in overrides.active() {
        let limit = match o.limit {
            OverrideLimit::Unlimited => "unlimited".to_owned(),
            OverrideLimit::Limited {
                requests_per_unit,
                unit,
                ..
            } => format!("unit={unit} requests_per_unit={requests_per_unit}"),
        };
        lines.push(format!(
            "override {}: {limit}, expires_in: {}s, reason: {}",
            target_name(&o.target),
            o.expires_at_ms.saturating_sub(now).div_ceil(1000),
            o.reason
        ));
    }
    // Upstream's dump: every line ends with a newline; no limits, no text.
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// A target in stats-key style: `api.tenant` (rule) or `api.tenant_acme` (descriptor).
fn target_name(t: &Target) -> String {
    match t {
        Target::Rule(rule) => rule.clone(),
        Target::Descriptor { domain, entries } => {
            let mut name = domain.clone();
            for (k, v) in entries {
                name.push('.');
                name.push_str(k);
                name.push('_');
                name.push_str(v);
            }
            name
        }
    }
}
