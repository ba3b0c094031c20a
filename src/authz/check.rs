//! `envoy.service.auth.v3.Authorization/Check`: who is calling (API key → identity), may
//! they use this model, and are they within every limit — in one hop.
//!
//! Answers: 401 (no or unknown key), 403 (model not allowed), 429 (a limit exceeded, the most
//! specific one named as the cause), or OK with the identity as upstream request headers and
//! dynamic metadata.

use crate::authz::config::{AuthzConfig, Part, Var};
use crate::authz::keys::ApiKey;
use crate::authz::Authz;
use crate::limiter::ceil_secs;
use crate::service::error::ServiceError;
use crate::service::response::header as response_header;
use crate::service::rls::{grpc_timeout, RateLimiter};
use crate::store::Store;
use envoy_types::pb::envoy::config::core::v3::{HeaderValue, HeaderValueOption};
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::{
    Entry, RateLimitOverride,
};
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::r#type::v3::HttpStatus;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::HttpRequest;
use envoy_types::pb::envoy::service::auth::v3::authorization_server::Authorization;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{
    CheckRequest, CheckResponse, DeniedHttpResponse, OkHttpResponse,
};
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::rate_limit::Unit as PbUnit;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitRequest;
use envoy_types::pb::google::protobuf::{value::Kind, Struct, Value};
use envoy_types::pb::google::rpc::Status as RpcStatus;
use std::sync::Arc;

/// google.rpc codes Envoy sees (any non-zero code denies).
const UNAUTHENTICATED: i32 = 16;
const PERMISSION_DENIED: i32 = 7;
const RESOURCE_EXHAUSTED: i32 = 8;

/// `HeaderValueOption.append_action`: OVERWRITE_IF_EXISTS_OR_ADD, so a client cannot smuggle
/// its own `x-sluice-tenant`.
const OVERWRITE: i32 = 2;

/// The tonic service.
pub struct AuthzService<S> {
    /// Decides the limits (same rules, overrides and store as ShouldRateLimit).
    pub limiter: Arc<RateLimiter<S>>,
    /// Keys and configuration (hot-reloaded).
    pub authz: Arc<Authz>,
}

#[tonic::async_trait]
impl<S: Store> Authorization for AuthzService<S> {
    async fn check(
        &self,
        request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        let deadline = grpc_timeout(request.metadata()).map(|t| tokio::time::Instant::now() + t);
        let req = request.into_inner();
        match check(&self.limiter, &self.authz, &req, deadline).await {
            Ok(resp) => Ok(tonic::Response::new(resp)),
            Err(e) => Err(e.into()),
        }
    }
}

/// What is known about the request, for templates.
struct Facts<'a> {
    /// Who is calling.
    key: &'a ApiKey,
    /// The model named (and allowed), if any.
    model: Option<&'a str>,
    /// Its tier from `model_tiers`, if listed.
    model_tier: Option<&'a str>,
    /// The HTTP method.
    method: &'a str,
    /// The path without the query string.
    path: &'a str,
}

impl Facts<'_> {
    fn get(&self, var: Var) -> Option<&str> {
        let v = match var {
            Var::Tenant => &self.key.tenant,
            Var::User => &self.key.user,
            Var::Tier => &self.key.tier,
            Var::ApiKey => &self.key.id,
            Var::Model => self.model?,
            Var::ModelTier => self.model_tier?,
            Var::Method => self.method,
            Var::Path => self.path,
        };
        (!v.is_empty()).then_some(v)
    }
}

/// Decides one Check.
pub async fn check<S: Store>(
    limiter: &RateLimiter<S>,
    authz: &Authz,
    req: &CheckRequest,
    deadline: Option<tokio::time::Instant>,
) -> Result<CheckResponse, ServiceError> {
    let http = req
        .attributes
        .as_ref()
        .and_then(|a| a.request.as_ref())
        .and_then(|r| r.http.as_ref())
        .ok_or_else(|| {
            ServiceError::invalid("attributes.request.http", "an HTTP request is required")
        })?;
    let state = authz.snapshot();
    let config = &state.config;
    let Some(key) = presented_key(http, config).and_then(|k| state.keys.find(k)) else {
        decided(authz, "unauthenticated");
        return Ok(unauthenticated(config));
    };
    let model = match model_of(http, config, &key) {
        Ok(m) => m,
        Err(refusal) => {
            decided(authz, refusal.metric());
            return Ok(refusal.answer());
        }
    };
    let facts = Facts {
        key: &key,
        model_tier: model
            .as_deref()
            .and_then(|m| config.model_tiers.get(m))
            .map(String::as_str),
        model: model.as_deref(),
        method: &http.method,
        path: http.path.split('?').next().unwrap_or_default(),
    };
    let (names, descriptors) = descriptors(config, &facts);
    let mut ok_headers = Vec::new();
    if !descriptors.is_empty() {
        let rl = RateLimitRequest {
            domain: config.domain.clone(),
            descriptors,
            hits_addend: 0,
        };
        let decision = limiter.decide(&rl, deadline, config.headers).await?;
        let resp = &decision.response;
        if resp.overall_code == Code::OverLimit as i32 {
            decided(authz, "over_limit");
            return Ok(over_limit(config, &names, &decision));
        }
        ok_headers = resp.response_headers_to_add.clone();
    }
    decided(authz, "ok");
    Ok(allowed(config, &facts, ok_headers))
}

/// Counts one decision in `sluice_authz_decisions_total{result}`.
fn decided(authz: &Authz, result: &'static str) {
    authz.meter().record(|| {
        metrics::counter!("sluice_authz_decisions_total", "result" => result).increment(1)
    });
}

/// The key from the configured header (after the scheme, e.g. `Bearer `).
fn presented_key<'a>(http: &'a HttpRequest, config: &AuthzConfig) -> Option<&'a str> {
    let value = header(http, &config.api_key.header)?;
    let key = match &config.api_key.scheme {
        Some(scheme) => {
            let (given, rest) = value.split_once(' ')?;
            if !given.eq_ignore_ascii_case(scheme) {
                return None;
            }
            rest
        }
        None => value,
    }
    .trim();
    (!key.is_empty()).then_some(key)
}

/// A request header (Envoy sends names in lower case, in `headers` or in `header_map`).
fn header<'a>(http: &'a HttpRequest, name: &str) -> Option<&'a str> {
    if let Some(v) = http.headers.get(name) {
        return Some(v);
    }
    http.header_map.as_ref()?.headers.iter().find_map(|h| {
        if !h.key.eq_ignore_ascii_case(name) {
            return None;
        }
        if h.value.is_empty() {
            std::str::from_utf8(&h.raw_value).ok()
        } else {
            Some(h.value.as_str())
        }
    })
}

/// Whether Envoy forwarded only part of the body (`with_request_body.allow_partial_message`).
fn partial_body(http: &HttpRequest) -> bool {
    header(http, "x-envoy-auth-partial-body").is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// Why a request is refused before any limit is looked at, because of its model.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ModelRefusal {
    /// Envoy cut the body and the model is not in a header: it may be in the part not sent.
    PartialBody,
    /// A body declared as JSON that does not parse, with no model header.
    UnreadableBody,
    /// The header and the body name different models (the upstream may read the other one).
    Disagree(String, String),
    /// The key or its plan restricts models, and the request names none.
    Missing(String),
    /// The model is not allowed for the key or its plan.
    NotAllowed(String, String),
}

impl ModelRefusal {
    fn metric(&self) -> &'static str {
        match self {
            ModelRefusal::PartialBody => "partial_body",
            _ => "forbidden",
        }
    }

    fn answer(&self) -> CheckResponse {
        let (http, error, reason) = match self {
            ModelRefusal::PartialBody => (
                413,
                "payload_too_large",
                "the body was too large to read the model; send it in a header".to_owned(),
            ),
            ModelRefusal::UnreadableBody => (
                400,
                "bad_request",
                "the JSON body does not parse, so its model cannot be checked".to_owned(),
            ),
            ModelRefusal::Disagree(h, b) => (
                403,
                "forbidden",
                format!("the model header says '{h}' but the body says '{b}'"),
            ),
            ModelRefusal::Missing(tier) => (
                403,
                "forbidden",
                format!("tier '{tier}' may use only some models: name the model"),
            ),
            ModelRefusal::NotAllowed(m, tier) => (
                403,
                "forbidden",
                format!("model '{m}' is not allowed for tier '{tier}'"),
            ),
        };
        denied(
            PERMISSION_DENIED,
            http,
            Vec::new(),
            serde_json::json!({"error": error, "reason": reason}),
        )
    }
}

/// What the JSON body says about the model.
enum BodyModel {
    /// No body, no field configured, or no such field.
    Absent,
    /// The field's string value.
    Named(String),
    /// A body that should be JSON but cannot be read (or a non-string field).
    Unreadable,
}

fn body_model(http: &HttpRequest, config: &AuthzConfig) -> BodyModel {
    let Some(field) = config.model_body_field.as_ref() else {
        return BodyModel::Absent;
    };
    let body: &[u8] = if http.raw_body.is_empty() {
        http.body.as_bytes()
    } else {
        &http.raw_body
    };
    if body.is_empty() {
        return BodyModel::Absent;
    }
    let declared_json = header(http, "content-type").is_some_and(|c| c.contains("json"));
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(json) => match json.get(field) {
            None | Some(serde_json::Value::Null) => BodyModel::Absent,
            Some(serde_json::Value::String(m)) if !m.is_empty() => BodyModel::Named(m.clone()),
            Some(_) => BodyModel::Unreadable,
        },
        Err(_) if declared_json || partial_body(http) => BodyModel::Unreadable,
        Err(_) => BodyModel::Absent,
    }
}

/// The model the request names — the configured header, or the JSON body's field when Envoy
/// forwards the body — checked against the key and its plan. Refuses rather than decide
/// without a model whenever the model matters and cannot be read for sure.
fn model_of(
    http: &HttpRequest,
    config: &AuthzConfig,
    key: &ApiKey,
) -> Result<Option<String>, ModelRefusal> {
    let from_header = config
        .model_header
        .as_ref()
        .and_then(|h| header(http, h))
        .filter(|m| !m.is_empty());
    let model = match (from_header, body_model(http, config)) {
        (Some(h), BodyModel::Named(b)) if h != b => {
            return Err(ModelRefusal::Disagree(h.to_owned(), b))
        }
        (Some(h), _) => Some(h.to_owned()),
        (None, BodyModel::Named(b)) => Some(b),
        (None, BodyModel::Unreadable) if partial_body(http) => {
            return Err(ModelRefusal::PartialBody)
        }
        (None, BodyModel::Unreadable) => return Err(ModelRefusal::UnreadableBody),
        (None, BodyModel::Absent) => None,
    };
    let restricted = key.models.is_some() || config.tier_models.contains_key(&key.tier);
    match model {
        Some(m) if !key.allows(&m) || !config.tier_allows(&key.tier, &m) => {
            Err(ModelRefusal::NotAllowed(m, key.tier.clone()))
        }
        None if restricted => Err(ModelRefusal::Missing(key.tier.clone())),
        m => Ok(m),
    }
}

/// The request descriptors of every template whose facts are known, with their names.
fn descriptors(config: &AuthzConfig, facts: &Facts<'_>) -> (Vec<String>, Vec<RateLimitDescriptor>) {
    let mut names = Vec::with_capacity(config.templates.len());
    let mut out = Vec::with_capacity(config.templates.len());
    'templates: for t in &config.templates {
        let mut entries = Vec::with_capacity(t.entries.len());
        for (key, parts) in &t.entries {
            let mut value = String::new();
            for part in parts {
                match part {
                    Part::Literal(s) => value.push_str(s),
                    Part::Var(v) => match facts.get(*v) {
                        Some(s) => value.push_str(s),
                        None => continue 'templates,
                    },
                }
            }
            entries.push(Entry {
                key: key.clone(),
                value,
            });
        }
        let limit = facts
            .key
            .limits
            .get(&t.name)
            .map(|(rpu, unit)| RateLimitOverride {
                requests_per_unit: *rpu,
                unit: unit.to_override().unwrap_or(0),
            });
        names.push(t.name.clone());
        out.push(RateLimitDescriptor {
            entries,
            limit,
            ..Default::default()
        });
    }
    (names, out)
}

fn option(h: HeaderValue) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(h),
        append_action: OVERWRITE,
        ..Default::default()
    }
}

/// A denial with a JSON body.
fn denied(
    code: i32,
    http: i32,
    mut headers: Vec<HeaderValue>,
    body: serde_json::Value,
) -> CheckResponse {
    headers.push(response_header("content-type", "application/json".into()));
    CheckResponse {
        status: Some(RpcStatus {
            code,
            message: body["error"].as_str().unwrap_or_default().to_owned(),
            details: Vec::new(),
        }),
        http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus { code: http }),
            headers: headers.into_iter().map(option).collect(),
            body: body.to_string(),
        })),
        ..Default::default()
    }
}

fn unauthenticated(config: &AuthzConfig) -> CheckResponse {
    let challenge = match &config.api_key.scheme {
        Some(scheme) => format!("{scheme} realm=\"sluice\""),
        None => format!("ApiKey header=\"{}\"", config.api_key.header),
    };
    denied(
        UNAUTHENTICATED,
        401,
        vec![response_header("www-authenticate", challenge)],
        serde_json::json!({"error": "unauthenticated"}),
    )
}

/// 429 naming the most specific exceeded template, with Retry-After and RateLimit headers.
fn over_limit(
    config: &AuthzConfig,
    names: &[String],
    decision: &crate::service::rls::Decision,
) -> CheckResponse {
    let resp = &decision.response;
    let mut over: Vec<usize> = resp
        .statuses
        .iter()
        .enumerate()
        .filter(|(_, s)| s.code == Code::OverLimit as i32)
        .map(|(i, _)| i)
        .collect();
    over.sort_by_key(|&i| config.rank(&names[i]));
    let describe = |i: usize| {
        let s = &resp.statuses[i];
        let (limit, unit) = s
            .current_limit
            .as_ref()
            .map_or((0, "unit".to_owned()), |l| {
                let unit = PbUnit::try_from(l.unit).map_or("unit", |u| u.as_str_name());
                (l.requests_per_unit, unit.to_ascii_lowercase())
            });
        let used = decision.used.get(i).copied().flatten().unwrap_or(0);
        format!("{} exceeded: {used}/{limit} per {unit}", names[i])
    };
    let retry = over
        .iter()
        .filter_map(|&i| resp.statuses[i].duration_until_reset.as_ref())
        .map(|d| {
            let secs = u64::try_from(d.seconds).unwrap_or(0);
            ceil_secs(std::time::Duration::new(
                secs,
                u32::try_from(d.nanos).unwrap_or(0),
            ))
        })
        .max()
        .unwrap_or(1)
        .max(1);
    let cause = over.first().map(|&i| names[i].clone()).unwrap_or_default();
    let mut message = over.first().map(|&i| describe(i)).unwrap_or_default();
    if over.len() > 1 {
        let also: Vec<&str> = over[1..].iter().map(|&i| names[i].as_str()).collect();
        message.push_str(&format!("; also violated: {}", also.join(", ")));
    }
    let mut headers: Vec<HeaderValue> = resp.response_headers_to_add.clone();
    if !headers
        .iter()
        .any(|h| h.key.eq_ignore_ascii_case("retry-after"))
    {
        headers.push(response_header("retry-after", retry.to_string()));
    }
    denied(
        RESOURCE_EXHAUSTED,
        429,
        headers,
        serde_json::json!({
            "error": "rate_limited",
            "cause": cause,
            "message": message,
            "retry_after_seconds": retry,
        }),
    )
}

fn string_value(s: &str) -> Value {
    Value {
        kind: Some(Kind::StringValue(s.to_owned())),
    }
}

/// OK: identity headers upstream, the key header removed, identity in dynamic metadata.
fn allowed(
    config: &AuthzConfig,
    facts: &Facts<'_>,
    rate_headers: Vec<HeaderValue>,
) -> CheckResponse {
    let key = facts.key;
    let headers = [
        ("x-sluice-tenant", &key.tenant),
        ("x-sluice-user", &key.user),
        ("x-sluice-tier", &key.tier),
    ]
    .into_iter()
    .map(|(k, v)| option(response_header(k, v.clone())))
    .collect();
    let mut metadata = Struct::default();
    for (k, v) in [
        ("tenant", Some(key.tenant.as_str())),
        ("user", Some(key.user.as_str())),
        ("tier", Some(key.tier.as_str())),
        ("api_key_id", Some(key.id.as_str())),
        ("model", facts.model),
        ("model_tier", facts.model_tier),
    ] {
        if let Some(v) = v {
            metadata.fields.insert(k.to_owned(), string_value(v));
        }
    }
    CheckResponse {
        status: Some(RpcStatus::default()),
        dynamic_metadata: Some(metadata),
        http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
            headers,
            headers_to_remove: vec![config.api_key.header.clone()],
            response_headers_to_add: rate_headers.into_iter().map(option).collect(),
            ..Default::default()
        })),
    }
}
