//! The model-like upstream's answers, OpenAI-shaped.
//!
//! Usage is decided before anything is sent (see `llm_request`), so every answer carries it in
//! its response HEADERS — `x-usage-prompt-tokens`, `x-usage-completion-tokens`,
//! `x-usage-total-tokens` — where Envoy's ratelimit filter reads it for `apply_on_stream_done`
//! descriptors (`%RESP(x-usage-total-tokens)%`); trailers would come too late for that.
//!
//! * One JSON body: `{"id", "object": "chat.completion" | "text_completion", "created", "model",
//!   "choices": [{"index": 0, "message": {"role", "content"} | "text", "finish_reason"}],
//!   "usage": {"prompt_tokens", "completion_tokens", "total_tokens"}}`.
//! * Streamed (`text/event-stream`): one `data: {chunk}` event per placeholder word, spread
//!   evenly over the stream's duration (word `i` of `n` at `(i+1)/n` of it), then a final chunk
//!   with `finish_reason` and the same `usage`, then `data: [DONE]`.
//!
//! The text is a placeholder: one word (`tok`) per completion token, at most [`MAX_CHUNKS`]
//! words, so neither a huge `max_tokens` nor a long stream makes a large or busy answer.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderName, HeaderValue};
use axum::response::Response;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::llm_request::{Endpoint, LlmError, LlmRequest, Usage};

/// The most placeholder words in an answer, and so the most content chunks in a stream.
pub(crate) const MAX_CHUNKS: u64 = 1000;
/// The placeholder word standing for one completion token.
const WORD: &str = "tok";

/// An accepted request with the identity of its answer.
#[derive(Debug)]
pub(crate) struct Answer {
    /// What to answer, usage included.
    request: LlmRequest,
    /// `chatcmpl-<n>` or `cmpl-<n>`: unique within the process, so logs can tell answers apart.
    id: String,
    /// Unix seconds, as OpenAI's `created`.
    created: u64,
}

impl Answer {
    /// The answer to `request`, the `seq`-th of the process, made at `created` (Unix seconds).
    pub(crate) fn new(request: LlmRequest, seq: u64, created: u64) -> Self {
        let id = match request.endpoint {
            Endpoint::Chat => format!("chatcmpl-{seq}"),
            Endpoint::Completion => format!("cmpl-{seq}"),
        };
        Self {
            request,
            id,
            created,
        }
    }

    /// The whole HTTP answer: usage headers, then one JSON body or a stream of events.
    pub(crate) fn into_response(self) -> Response {
        let usage = self.request.usage;
        let mut response = match self.request.stream {
            None => {
                let body = self.whole().to_string();
                with_type(Response::new(Body::from(body)), "application/json")
            }
            Some(duration) => {
                let mut response =
                    with_type(Response::new(self.stream(duration)), "text/event-stream");
                response
                    .headers_mut()
                    .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
                response
            }
        };
        let headers = response.headers_mut();
        let figures = [
            ("x-usage-prompt-tokens", usage.prompt),
            ("x-usage-completion-tokens", usage.completion),
            ("x-usage-total-tokens", usage.total()),
        ];
        for (name, value) in figures {
            headers.insert(HeaderName::from_static(name), HeaderValue::from(value));
        }
        response
    }

    /// How many placeholder words (and content chunks) the answer has.
    fn words(&self) -> u64 {
        self.request.usage.completion.min(MAX_CHUNKS)
    }

    /// `length` when the completion used all of `max_tokens`, as a model cut short does.
    fn finish_reason(&self) -> &'static str {
        if self.request.usage.completion >= self.request.max_tokens {
            "length"
        } else {
            "stop"
        }
    }

    /// The fields every object of the answer starts with.
    fn object(&self, object: &str, choice: Value) -> serde_json::Map<String, Value> {
        let mut fields = serde_json::Map::new();
        fields.insert("id".into(), json!(self.id));
        fields.insert("object".into(), json!(object));
        fields.insert("created".into(), json!(self.created));
        fields.insert("model".into(), json!(self.request.model));
        fields.insert("choices".into(), json!([choice]));
        fields
    }

    /// The non-streamed body.
    fn whole(&self) -> Value {
        let words = usize::try_from(self.words()).unwrap_or(0);
        let text = vec![WORD; words].join(" ");
        let finish = self.finish_reason();
        let mut fields = match self.request.endpoint {
            Endpoint::Chat => self.object(
                "chat.completion",
                json!({"index": 0, "message": {"role": "assistant", "content": text},
                       "finish_reason": finish}),
            ),
            Endpoint::Completion => self.object(
                "text_completion",
                json!({"index": 0, "text": text, "finish_reason": finish}),
            ),
        };
        fields.insert("usage".into(), usage_json(self.request.usage));
        Value::Object(fields)
    }

    /// Content chunk `index` (from 0): one placeholder word.
    fn chunk(&self, index: u64) -> Value {
        let word = if index == 0 {
            WORD.to_owned()
        } else {
            format!(" {WORD}")
        };
        let fields = match self.request.endpoint {
            Endpoint::Chat => {
                let delta = if index == 0 {
                    json!({"role": "assistant", "content": word})
                } else {
                    json!({"content": word})
                };
                self.object(
                    "chat.completion.chunk",
                    json!({"index": 0, "delta": delta, "finish_reason": null}),
                )
            }
            Endpoint::Completion => self.object(
                "text_completion",
                json!({"index": 0, "text": word, "finish_reason": null}),
            ),
        };
        Value::Object(fields)
    }

    /// The last chunk before `[DONE]`: the finish reason and the usage.
    fn final_chunk(&self) -> Value {
        let finish = self.finish_reason();
        let mut fields = match self.request.endpoint {
            Endpoint::Chat => self.object(
                "chat.completion.chunk",
                json!({"index": 0, "delta": {}, "finish_reason": finish}),
            ),
            Endpoint::Completion => self.object(
                "text_completion",
                json!({"index": 0, "text": "", "finish_reason": finish}),
            ),
        };
        fields.insert("usage".into(), usage_json(self.request.usage));
        Value::Object(fields)
    }

    /// The event stream: `words()` content chunks over `duration`, the final chunk when it has
    /// elapsed, then `[DONE]`. Lazy: a client that goes away stops it.
    fn stream(self, duration: Duration) -> Body {
        let start = Instant::now();
        let words = self.words();
        let events = futures_util::stream::unfold((self, 0u64), move |(answer, step)| async move {
            let event = if step < words {
                tokio::time::sleep_until(start + share(duration, step + 1, words)).await;
                format!("data: {}\n\n", answer.chunk(step))
            } else if step == words {
                tokio::time::sleep_until(start + duration).await;
                format!("data: {}\n\n", answer.final_chunk())
            } else if step == words + 1 {
                "data: [DONE]\n\n".to_owned()
            } else {
                return None;
            };
            Some((Ok::<_, Infallible>(event), (answer, step + 1)))
        });
        Body::from_stream(events)
    }
}

/// `part / whole` of `duration` (`whole` > 0; `part` ≤ `whole`).
fn share(duration: Duration, part: u64, whole: u64) -> Duration {
    let nanos = duration.as_nanos() * u128::from(part) / u128::from(whole.max(1));
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// OpenAI's `usage` object.
fn usage_json(usage: Usage) -> Value {
    json!({
        "prompt_tokens": usage.prompt,
        "completion_tokens": usage.completion,
        "total_tokens": usage.total(),
    })
}

/// `response` with its content type set.
fn with_type(mut response: Response, content_type: &'static str) -> Response {
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A refused request, OpenAI-shaped: `{"error": {"message", "type", "param", "code"}}`.
pub(crate) fn refusal(error: &LlmError) -> Response {
    let body = json!({"error": {
        "message": error.to_string(),
        "type": "invalid_request_error",
        "param": error.param(),
        "code": null,
    }});
    let mut response = with_type(
        Response::new(Body::from(body.to_string())),
        "application/json",
    );
    *response.status_mut() = error.status();
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(endpoint: Endpoint, max_tokens: u64, completion: u64, stream: bool) -> Answer {
        let request = LlmRequest {
            endpoint,
            model: "m".into(),
            max_tokens,
            usage: Usage {
                prompt: 3,
                completion,
            },
            stream: stream.then_some(Duration::ZERO),
        };
        Answer::new(request, 7, 1_700_000_000)
    }

    async fn body_text(response: Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        String::from_utf8(bytes.to_vec()).expect("utf-8")
    }

    #[tokio::test]
    async fn a_whole_answer_has_usage_in_headers_and_body() {
        let response = answer(Endpoint::Chat, 10, 4, false).into_response();
        let header = |name: &str| response.headers()[name].to_str().expect("ascii").to_owned();
        assert_eq!(header("x-usage-prompt-tokens"), "3");
        assert_eq!(header("x-usage-completion-tokens"), "4");
        assert_eq!(header("x-usage-total-tokens"), "7");
        assert_eq!(header("content-type"), "application/json");
        let body: Value = serde_json::from_str(&body_text(response).await).expect("JSON");
        assert_eq!(body["id"], "chatcmpl-7");
        assert_eq!(body["object"], "chat.completion");
        assert_eq!(body["choices"][0]["message"]["content"], "tok tok tok tok");
        assert_eq!(body["choices"][0]["finish_reason"], "stop");
        let usage = json!({"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7});
        assert_eq!(body["usage"], usage);

        let response = answer(Endpoint::Completion, 4, 4, false).into_response();
        let body: Value = serde_json::from_str(&body_text(response).await).expect("JSON");
        assert_eq!(body["object"], "text_completion");
        assert_eq!(body["choices"][0]["text"], "tok tok tok tok");
        assert_eq!(body["choices"][0]["finish_reason"], "length");
    }

    #[tokio::test]
    async fn a_stream_sends_one_chunk_per_word_then_usage_then_done() {
        let response = answer(Endpoint::Chat, 10, 3, true).into_response();
        assert_eq!(response.headers()["x-usage-total-tokens"], "6");
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        let text = body_text(response).await;
        let events: Vec<&str> = text
            .split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| e.strip_prefix("data: ").expect("a data event"))
            .collect();
        assert_eq!(events.len(), 3 + 2, "{text}");
        assert_eq!(events[4], "[DONE]");
        let chunks: Vec<Value> = events[..4]
            .iter()
            .map(|e| serde_json::from_str(e).expect("JSON chunk"))
            .collect();
        let content: String = chunks[..3]
            .iter()
            .map(|c| {
                c["choices"][0]["delta"]["content"]
                    .as_str()
                    .expect("content")
            })
            .collect();
        assert_eq!(content, "tok tok tok");
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(chunks[3]["choices"][0]["finish_reason"], "stop");
        assert_eq!(chunks[3]["usage"]["total_tokens"], 6);
    }

    #[test]
    fn words_and_chunks_are_bounded_and_spread_evenly() {
        assert_eq!(answer(Endpoint::Chat, 5000, 5000, true).words(), MAX_CHUNKS);
        assert_eq!(answer(Endpoint::Chat, 5, 0, true).words(), 0);
        let second = Duration::from_secs(1);
        assert_eq!(share(second, 1, 4), Duration::from_millis(250));
        assert_eq!(share(second, 4, 4), second);
        assert_eq!(
            share(Duration::from_secs(60), 1000, 1000),
            Duration::from_secs(60)
        );
    }
}
