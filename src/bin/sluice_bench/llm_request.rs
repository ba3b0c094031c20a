//! What a request to the model-like upstream asks for, and the token arithmetic: how many tokens
//! it may use (`max_tokens`), how many it uses (prompt and completion), and whether and for how
//! long the answer streams. Pure functions of the request and the configuration, so tests can
//! compute exact figures:
//!
//! * `max_tokens`: the body's `max_tokens` (or `max_completion_tokens` when `max_tokens` is
//!   absent) — what the model honours; else the `x-max-tokens` header — what Envoy reserved;
//!   else `--default-max-tokens`. From 1 to [`MAX_TOKENS`].
//! * `prompt_tokens`: the body's length in bytes / 4, rounded down, at least 1.
//! * `completion_tokens`: the `x-completion-tokens` header, clamped to `max_tokens`; else
//!   `max_tokens` × `--usage-ratio`, rounded down (the ratio is an exact decimal, in millionths).
//! * streaming: the body's `"stream"` when present decides; without it the answer streams when
//!   the request has `x-stream-ms` or `--stream-ms` is above 0. It lasts `x-stream-ms`, else
//!   `--stream-ms`, at most [`MAX_STREAM_MS`].
//!
//! Anything malformed is a typed [`LlmError`] (400, or 413 for a body over [`MAX_BODY_BYTES`]).

use std::str::FromStr;
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use serde_json::{Map, Value};

/// The largest request body read (1 MiB); a larger one is refused with 413.
pub(crate) const MAX_BODY_BYTES: usize = 1 << 20;
/// The largest `max_tokens` accepted (from the body, the header or the flag).
pub(crate) const MAX_TOKENS: u64 = 1_000_000_000;
/// The longest a streamed answer lasts (`--stream-ms`, `x-stream-ms`): 60 s.
pub(crate) const MAX_STREAM_MS: u64 = 60_000;
/// The longest `model` name echoed back, in bytes.
const MAX_MODEL_BYTES: usize = 256;
/// The model named in answers when the body names none.
const DEFAULT_MODEL: &str = "sluice-bench";
/// A usage ratio of 1, in millionths.
const RATIO_ONE: u32 = 1_000_000;

/// Why a request to the model-like upstream is refused; the message goes to the client.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LlmError {
    #[error("the request body is larger than {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("reading the request body: {0}")]
    BodyRead(String),
    #[error("the request body did not arrive within {0:?}")]
    BodyTimeout(Duration),
    #[error("the request body is not JSON: {0}")]
    NotJson(String),
    #[error("the request body must be a JSON object, not {0}")]
    NotAnObject(&'static str),
    #[error("body field `{field}` {reason}")]
    BadField { field: &'static str, reason: String },
    #[error("header `{header}` {reason}")]
    BadHeader {
        header: &'static str,
        reason: String,
    },
}

impl LlmError {
    /// The HTTP status the refusal is answered with.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// The body field or header at fault, if one is.
    pub(crate) fn param(&self) -> Option<&'static str> {
        match self {
            Self::BadField { field, .. } => Some(field),
            Self::BadHeader { header, .. } => Some(header),
            _ => None,
        }
    }
}

/// Why a `--usage-ratio` was refused.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not a decimal from 0 to 1 with at most 6 decimal places (e.g. 0.5)")]
pub(crate) struct RatioError(String);

/// The share of `max_tokens` a completion uses when the request does not say, as an exact
/// decimal from 0 to 1 (millionths), so `max_tokens × ratio` rounds the same way everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UsageRatio {
    /// The ratio × 1 000 000, at most 1 000 000.
    millionths: u32,
}

impl FromStr for UsageRatio {
    type Err = RatioError;

    fn from_str(text: &str) -> Result<Self, RatioError> {
        let refuse = || RatioError(text.to_owned());
        let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if (whole.is_empty() && fraction.is_empty()) || !digits(whole) || !digits(fraction) {
            return Err(refuse());
        }
        if whole.len() > 1 || fraction.len() > 6 {
            return Err(refuse());
        }
        let whole: u32 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| refuse())?
        };
        let padded = format!("{fraction:0<6}");
        let fraction: u32 = padded.parse().map_err(|_| refuse())?;
        let millionths = whole * RATIO_ONE + fraction;
        if millionths > RATIO_ONE {
            return Err(refuse());
        }
        Ok(Self { millionths })
    }
}

impl UsageRatio {
    /// `tokens × ratio`, rounded down.
    pub(crate) fn of(self, tokens: u64) -> u64 {
        let product = u128::from(tokens) * u128::from(self.millionths) / u128::from(RATIO_ONE);
        u64::try_from(product).unwrap_or(u64::MAX)
    }
}

/// The upstream's settings for model-like answers (validated here, not only by the flags).
#[derive(Debug, Clone)]
pub(crate) struct LlmConfig {
    /// Completion tokens as a share of `max_tokens` when the request has no `x-completion-tokens`.
    ratio: UsageRatio,
    /// `max_tokens` when neither the body nor `x-max-tokens` gives one (1..=MAX_TOKENS).
    default_max_tokens: u64,
    /// How long an answer streams when the request does not say (0 = chunks back to back).
    stream_ms: u64,
}

/// Why an [`LlmConfig`] cannot be built.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
    #[error("--default-max-tokens must be from 1 to {MAX_TOKENS}, got {0}")]
    DefaultMaxTokens(u64),
    #[error("--stream-ms must be at most {MAX_STREAM_MS}, got {0}")]
    StreamMs(u64),
}

impl LlmConfig {
    pub(crate) fn new(
        ratio: UsageRatio,
        default_max_tokens: u64,
        stream_ms: u64,
    ) -> Result<Self, ConfigError> {
        if !(1..=MAX_TOKENS).contains(&default_max_tokens) {
            return Err(ConfigError::DefaultMaxTokens(default_max_tokens));
        }
        if stream_ms > MAX_STREAM_MS {
            return Err(ConfigError::StreamMs(stream_ms));
        }
        Ok(Self {
            ratio,
            default_max_tokens,
            stream_ms,
        })
    }
}

/// Which OpenAI endpoint a request came to: it shapes the answer, not the arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// `POST /v1/chat/completions`: `chat.completion` objects with `message`/`delta`.
    Chat,
    /// `POST /v1/completions`: `text_completion` objects with `text`.
    Completion,
}

/// Tokens one request uses; sent in headers and in the body's `usage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Usage {
    /// Tokens charged for the input: body bytes / 4, at least 1.
    pub(crate) prompt: u64,
    /// Tokens the answer "generated": never more than `max_tokens`.
    pub(crate) completion: u64,
}

impl Usage {
    pub(crate) fn total(self) -> u64 {
        self.prompt.saturating_add(self.completion)
    }
}

/// A validated request to the model-like upstream: everything its answer depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LlmRequest {
    /// Shapes the JSON objects of the answer.
    pub(crate) endpoint: Endpoint,
    /// Echoed in the answer (the body's `model`, or [`DEFAULT_MODEL`]).
    pub(crate) model: String,
    /// The most tokens the completion may use; `finish_reason` is `length` when it uses them all.
    pub(crate) max_tokens: u64,
    /// What the answer reports, computed before anything is sent so it can go in the headers.
    pub(crate) usage: Usage,
    /// `Some(d)`: answer with server-sent events spread over `d`; `None`: one JSON body.
    pub(crate) stream: Option<Duration>,
}

impl LlmRequest {
    /// Reads `body` (empty, or a JSON object) and the headers as the module doc describes.
    pub(crate) fn parse(
        endpoint: Endpoint,
        headers: &HeaderMap,
        body: &[u8],
        config: &LlmConfig,
    ) -> Result<Self, LlmError> {
        let fields = body_object(body)?;
        let max_tokens = match body_max_tokens(&fields)? {
            Some(n) => n,
            None => match header_number(headers, "x-max-tokens")? {
                Some(n) if (1..=MAX_TOKENS).contains(&n) => n,
                Some(n) => return Err(bad_header("x-max-tokens", out_of_range(n, 1, MAX_TOKENS))),
                None => config.default_max_tokens,
            },
        };
        let model = match fields.get("model") {
            None | Some(Value::Null) => DEFAULT_MODEL.to_owned(),
            Some(Value::String(m)) if m.len() <= MAX_MODEL_BYTES => m.clone(),
            Some(Value::String(_)) => {
                let reason = format!("is longer than {MAX_MODEL_BYTES} bytes");
                return Err(LlmError::BadField {
                    field: "model",
                    reason,
                });
            }
            Some(_) => return Err(bad_field("model", "must be a string")),
        };
        let stream_flag = match fields.get("stream") {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => return Err(bad_field("stream", "must be true or false")),
        };
        let stream_ms = header_number(headers, "x-stream-ms")?;
        if let Some(ms) = stream_ms.filter(|ms| *ms > MAX_STREAM_MS) {
            return Err(bad_header(
                "x-stream-ms",
                out_of_range(ms, 0, MAX_STREAM_MS),
            ));
        }
        let streamed = stream_flag.unwrap_or(stream_ms.is_some() || config.stream_ms > 0);
        let stream = streamed.then(|| Duration::from_millis(stream_ms.unwrap_or(config.stream_ms)));
        let completion = match header_number(headers, "x-completion-tokens")? {
            Some(n) => n.min(max_tokens),
            None => config.ratio.of(max_tokens),
        };
        let usage = Usage {
            prompt: prompt_tokens(body.len()),
            completion,
        };
        Ok(Self {
            endpoint,
            model,
            max_tokens,
            usage,
            stream,
        })
    }
}

/// Prompt tokens of a body of `bytes` bytes: bytes / 4 rounded down, at least 1.
pub(crate) fn prompt_tokens(bytes: usize) -> u64 {
    u64::try_from(bytes / 4).unwrap_or(u64::MAX).max(1)
}

/// The body's fields: none for an empty body, else it must be a JSON object.
fn body_object(body: &[u8]) -> Result<Map<String, Value>, LlmError> {
    if body.is_empty() {
        return Ok(Map::new());
    }
    let value: Value =
        serde_json::from_slice(body).map_err(|e| LlmError::NotJson(e.to_string()))?;
    match value {
        Value::Object(fields) => Ok(fields),
        Value::Array(_) => Err(LlmError::NotAnObject("an array")),
        Value::String(_) => Err(LlmError::NotAnObject("a string")),
        Value::Number(_) => Err(LlmError::NotAnObject("a number")),
        Value::Bool(_) => Err(LlmError::NotAnObject("a boolean")),
        Value::Null => Err(LlmError::NotAnObject("null")),
    }
}

/// `max_tokens` (or, without it, `max_completion_tokens`) from the body, if either is there.
fn body_max_tokens(fields: &Map<String, Value>) -> Result<Option<u64>, LlmError> {
    for field in ["max_tokens", "max_completion_tokens"] {
        match fields.get(field) {
            None | Some(Value::Null) => continue,
            Some(value) => {
                return match value.as_u64() {
                    Some(n) if (1..=MAX_TOKENS).contains(&n) => Ok(Some(n)),
                    _ => Err(bad_field(
                        field,
                        &format!("must be a whole number from 1 to {MAX_TOKENS}, got {value}"),
                    )),
                }
            }
        }
    }
    Ok(None)
}

/// The header `name` as a whole number, if present; anything else in it is an error.
fn header_number(headers: &HeaderMap, name: &'static str) -> Result<Option<u64>, LlmError> {
    let Some(value) = headers.get(name) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| bad_header(name, "is not visible ASCII".to_owned()))?
        .trim();
    text.parse::<u64>()
        .map(Some)
        .map_err(|_| bad_header(name, format!("must be a whole number, got `{text}`")))
}

fn out_of_range(n: u64, low: u64, high: u64) -> String {
    format!("must be from {low} to {high}, got {n}")
}

fn bad_field(field: &'static str, reason: &str) -> LlmError {
    LlmError::BadField {
        field,
        reason: reason.to_owned(),
    }
}

fn bad_header(header: &'static str, reason: String) -> LlmError {
    LlmError::BadHeader { header, reason }
}

#[cfg(test)]
#[path = "llm_request_tests.rs"]
mod tests;
