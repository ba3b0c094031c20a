//! From the decided descriptors to the `RateLimitResponse`: statuses in request order, the
//! overall code (shadow and quota rules), and the optional rate-limit headers.

use crate::limiter::ceil_secs;
use crate::limiter::plan::{Checked, Decided, LimitSource, LimitSpec};
use envoy_types::pb::envoy::config::core::v3::HeaderValue;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::{
    Code, DescriptorStatus, RateLimit,
};
use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitResponse;
use envoy_types::pb::google::protobuf::Duration as PbDuration;
use std::fmt::Write;
use std::time::Duration;

/// Which rate-limit headers to add to the response (`response_headers_to_add`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HeaderMode {
    /// None (the default, as upstream).
    #[default]
    Off,
    /// envoyproxy/ratelimit's `RateLimit-Limit`/`-Remaining`/`-Reset` for the descriptor
    /// nearest its limit.
    Ratelimit,
    /// IETF draft-10 `RateLimit-Policy` and `RateLimit` covering every limited descriptor.
    Draft10,
    /// Both.
    All,
}

impl HeaderMode {
    /// Parses `off`, `ratelimit`, `draft10` or `all`.
    pub fn parse(s: &str) -> Option<HeaderMode> {
        match s {
            "off" => Some(HeaderMode::Off),
            "ratelimit" => Some(HeaderMode::Ratelimit),
            "draft10" => Some(HeaderMode::Draft10),
            "all" => Some(HeaderMode::All),
            _ => None,
        }
    }
}

/// Settings that shape every response.
#[derive(Debug, Clone, Copy)]
pub struct ResponseOptions {
    /// Global shadow mode: an OVER_LIMIT overall answer becomes OK (statuses keep the truth).
    pub shadow_mode: bool,
    /// Rate-limit headers to add.
    pub headers: HeaderMode,
    /// `near_limit` counts hits above `floor(limit × ratio)`.
    pub near_limit_ratio: f64,
    /// Names of upstream's three headers (`LIMIT_*_HEADER`).
    pub names: HeaderNames,
}

impl Default for ResponseOptions {
    fn default() -> Self {
        ResponseOptions {
            shadow_mode: false,
            headers: HeaderMode::Off,
            near_limit_ratio: 0.8,
            names: HeaderNames::default(),
        }
    }
}

/// The names of the `ratelimit`-mode headers: `'static` so that options stay `Copy` on the hot
/// path (a server leaks its three configured names once, only when they are not the defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderNames {
    /// The limit header (`RateLimit-Limit`).
    pub limit: &'static str,
    /// The remaining header (`RateLimit-Remaining`).
    pub remaining: &'static str,
    /// The reset header (`RateLimit-Reset`).
    pub reset: &'static str,
}

impl Default for HeaderNames {
    fn default() -> Self {
        HeaderNames {
            limit: "RateLimit-Limit",
            remaining: "RateLimit-Remaining",
            reset: "RateLimit-Reset",
        }
    }
}

impl HeaderNames {
    /// Names from settings; the defaults cost nothing, others are leaked once per server.
    pub fn new(limit: &str, remaining: &str, reset: &str) -> HeaderNames {
        let d = HeaderNames::default();
        let keep = |given: &str, default: &'static str| -> &'static str {
            if given == default {
                default
            } else {
                Box::leak(given.to_owned().into_boxed_str())
            }
        };
        HeaderNames {
            limit: keep(limit, d.limit),
            remaining: keep(remaining, d.remaining),
            reset: keep(reset, d.reset),
        }
    }
}

/// A descriptor's answer plus what the headers need to know about it.
struct Answer<'d, 'a> {
    status: DescriptorStatus,
    /// The check the status reports, if any limit applied.
    binding: Option<&'d Checked<'a>>,
    /// Denied by a limit (before shadow mode rewrote the status).
    over: bool,
}

/// Builds the response for the decided descriptors of one request.
pub fn respond(decided: &[Decided<'_>], opts: ResponseOptions) -> RateLimitResponse {
    let answers: Vec<Answer<'_, '_>> = decided.iter().map(answer).collect();
    let mut any_hard_over = false;
    let (mut quota_total, mut quota_over) = (0usize, 0usize);
    for (a, d) in answers.iter().zip(decided) {
        let counted_over = a.over && !d.shadow();
        if d.quota() {
            quota_total += 1;
            quota_over += usize::from(counted_over);
        } else if counted_over {
            any_hard_over = true;
        }
    }
    let over = any_hard_over || (quota_total > 0 && quota_over == quota_total);
    let mut headers = Vec::new();
    if opts.headers != HeaderMode::Off {
        headers = rate_limit_headers(decided, &answers, opts.headers, opts.names);
        if over && !opts.shadow_mode {
            let retry = answers
                .iter()
                .zip(decided)
                .filter(|(a, d)| a.over && !d.shadow())
                .filter_map(|(a, _)| a.binding.map(|c| ceil_secs(c.outcome.retry_after)))
                .max()
                .unwrap_or(1);
            headers.push(header("Retry-After", retry.max(1).to_string()));
        }
    }
    let overall = if over && !opts.shadow_mode {
        Code::OverLimit
    } else {
        Code::Ok
    };
    RateLimitResponse {
        overall_code: overall as i32,
        statuses: answers.into_iter().map(|a| a.status).collect(),
        response_headers_to_add: headers,
        ..Default::default()
    }
}

/// The status of one descriptor: the check nearest its limit (a denying one first) speaks.
fn answer<'d, 'a>(d: &'d Decided<'a>) -> Answer<'d, 'a> {
    let binding = match d {
        Decided::NoLimit => return unlimited_status(0),
        Decided::Unlimited => return unlimited_status(u32::MAX),
        Decided::Limited { .. } => d.binding(),
    };
    let Some(binding) = binding else {
        return unlimited_status(0);
    };
    let o = &binding.outcome;
    let over = !o.allowed;
    let code = if over && !d.shadow() {
        Code::OverLimit
    } else {
        Code::Ok
    };
    let until = if over { o.retry_after } else { o.reset_after };
    Answer {
        status: DescriptorStatus {
            code: code as i32,
            current_limit: Some(current_limit(&binding.limit)),
            limit_remaining: o.remaining,
            duration_until_reset: Some(pb_duration(until)),
            quota: None,
        },
        binding: Some(binding),
        over,
    }
}

fn unlimited_status<'d, 'a>(remaining: u32) -> Answer<'d, 'a> {
    Answer {
        status: DescriptorStatus {
            code: Code::Ok as i32,
            limit_remaining: remaining,
            ..Default::default()
        },
        binding: None,
        over: false,
    }
}

fn current_limit(limit: &LimitSpec<'_>) -> RateLimit {
    RateLimit {
        name: limit.name.to_owned(),
        requests_per_unit: limit.requests_per_unit,
        // Slots have no time unit: UNKNOWN (0).
        unit: if limit.source == LimitSource::Concurrency {
            0
        } else {
            limit.unit.to_proto() as i32
        },
    }
}

fn pb_duration(d: Duration) -> PbDuration {
    PbDuration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

/// A response header to add.
pub fn header(key: &str, value: String) -> HeaderValue {
    HeaderValue {
        key: key.to_owned(),
        value,
        ..Default::default()
    }
}

/// `RateLimit-Limit/-Remaining/-Reset` (upstream) and/or draft-10 `RateLimit-Policy`/`RateLimit`.
fn rate_limit_headers(
    decided: &[Decided<'_>],
    answers: &[Answer<'_, '_>],
    mode: HeaderMode,
    names: HeaderNames,
) -> Vec<HeaderValue> {
    let mut out = Vec::new();
    if matches!(mode, HeaderMode::Ratelimit | HeaderMode::All) {
        // Upstream: a (non-quota) OVER_LIMIT descriptor wins, else the smallest remaining.
        let nearest = answers
            .iter()
            .zip(decided)
            .filter(|(a, _)| a.binding.is_some())
            .min_by_key(|(a, d)| {
                let hard_over = a.status.code == Code::OverLimit as i32 && !d.quota();
                (!hard_over, a.status.limit_remaining)
            });
        if let Some((d, _)) = nearest {
            if let (Some(limit), Some(c)) = (&d.status.current_limit, d.binding) {
                out.push(header(names.limit, limit.requests_per_unit.to_string()));
                out.push(header(
                    names.remaining,
                    d.status.limit_remaining.to_string(),
                ));
                out.push(header(
                    names.reset,
                    c.outcome.reset_after.as_secs().max(1).to_string(),
                ));
            }
        }
    }
    if matches!(mode, HeaderMode::Draft10 | HeaderMode::All) {
        let (mut policy, mut state) = (String::new(), String::new());
        let mut n = 0;
        for d in decided {
            for c in d.checks() {
                let (limit, o) = (&c.limit, &c.outcome);
                // Draft-10 policies are quotas per time window: slots are not one.
                if limit.source == LimitSource::Concurrency {
                    continue;
                }
                let name = policy_name(limit.name, d.rule().map(|r| r.stats_key), n);
                n += 1;
                let sep = if policy.is_empty() { "" } else { ", " };
                let _ = write!(
                    policy,
                    "{sep}{name};q={};w={}",
                    limit.requests_per_unit,
                    limit.unit.seconds()
                );
                let t = if o.allowed {
                    o.reset_after
                } else {
                    o.retry_after
                };
                let _ = write!(state, "{sep}{name};r={};t={}", o.remaining, ceil_secs(t));
            }
        }
        if !policy.is_empty() {
            out.push(header("RateLimit-Policy", policy));
            out.push(header("RateLimit", state));
        }
    }
    out
}

/// A structured-field string naming a policy: the rule's name, else its stats key, else
/// `override-<op>`; characters outside printable ASCII become `_`.
fn policy_name(name: &str, stats_key: Option<&str>, op: usize) -> String {
    let raw = if !name.is_empty() {
        name.to_owned()
    } else if let Some(k) = stats_key {
        k.to_owned()
    } else {
        format!("override-{op}")
    };
    let mut s = String::with_capacity(raw.len() + 2);
    s.push('"');
    for c in raw.chars() {
        match c {
            '"' | '\\' => {
                s.push('\\');
                s.push(c);
            }
            ' '..='~' => s.push(c),
            _ => s.push('_'),
        }
    }
    s.push('"');
    s
}
