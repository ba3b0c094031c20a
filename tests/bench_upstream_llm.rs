//! `sluice-bench upstream` answers `POST /v1/chat/completions` and `/v1/completions` like a
//! model: the real binary, over HTTP/1.1 on loopback. Usage comes in response headers (where
//! Envoy's stream-done descriptors read it) and in an OpenAI-shaped body, with figures a test can
//! compute exactly; a streamed answer sends its headers first, then its chunks over the set
//! time, then `[DONE]`; bad input is refused with the reason; other paths still answer `ok`.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::envoy::{http_request, start_upstream_with, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn post(addr: SocketAddr, path: &str, headers: &[(&str, &str)], body: &str) -> Response {
    let body = (!body.is_empty()).then_some(body);
    http_request(addr, "POST", path, headers, body)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The three usage headers as numbers (prompt, completion, total).
fn usage_headers(r: &Response) -> (u64, u64, u64) {
    let number = |name: &str| -> u64 {
        r.header(name)
            .unwrap_or_else(|| panic!("no {name}: {r:?}"))
            .parse()
            .unwrap_or_else(|e| panic!("{name} is not a number ({e}): {r:?}"))
    };
    (
        number("x-usage-prompt-tokens"),
        number("x-usage-completion-tokens"),
        number("x-usage-total-tokens"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_is_in_the_headers_and_the_body() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_upstream, addr) = start_upstream_with(dir.path(), &["--usage-ratio", "0.25"]).await;

    let body =
        r#"{"model":"gpt-test","max_tokens":100,"messages":[{"role":"user","content":"hi"}]}"#;
    let r = post(addr, "/v1/chat/completions", &[], body).await;
    assert_eq!(r.status, 200, "{r:?}");
    let prompt = body.len() as u64 / 4;
    assert_eq!(usage_headers(&r), (prompt, 25, prompt + 25), "{r:?}");
    let answer = r.json();
    assert_eq!(answer["object"], "chat.completion", "{r:?}");
    assert_eq!(answer["model"], "gpt-test");
    assert_eq!(answer["choices"][0]["message"]["role"], "assistant");
    assert_eq!(answer["choices"][0]["finish_reason"], "stop");
    let usage =
        json!({"prompt_tokens": prompt, "completion_tokens": 25, "total_tokens": prompt + 25});
    assert_eq!(answer["usage"], usage);

    // No body: max_tokens from the header Envoy reserves with, one prompt token.
    let r = post(addr, "/v1/completions", &[("x-max-tokens", "40")], "").await;
    assert_eq!(usage_headers(&r), (1, 10, 11), "{r:?}");
    assert_eq!(r.json()["object"], "text_completion");
    // The used tokens the client asks for, never more than max_tokens.
    let asked = [("x-max-tokens", "40"), ("x-completion-tokens", "500")];
    let r = post(addr, "/v1/completions", &asked, "").await;
    assert_eq!(usage_headers(&r), (1, 40, 41), "{r:?}");
    assert_eq!(r.json()["choices"][0]["finish_reason"], "length");

    // Other paths keep answering `ok`; the model paths take only POST.
    let r = http_request(addr, "GET", "/anything", &[], None)
        .await
        .expect("GET");
    assert_eq!((r.status, r.body.as_str()), (200, "ok"));
    let r = http_request(addr, "GET", "/v1/chat/completions", &[], None)
        .await
        .expect("GET");
    assert_eq!(r.status, 405, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_takes_its_time_and_ends_with_done() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_upstream, addr) = start_upstream_with(dir.path(), &["--usage-ratio", "0.25"]).await;
    let body = r#"{"max_tokens":40,"stream":true}"#;
    let started = Instant::now();
    let r = post(
        addr,
        "/v1/chat/completions",
        &[("x-stream-ms", "500")],
        body,
    )
    .await;
    let took = started.elapsed();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    let prompt = body.len() as u64 / 4;
    assert_eq!(usage_headers(&r), (prompt, 10, prompt + 10), "{r:?}");
    // Chunks are spread over the configured time, so the answer cannot end sooner.
    assert!(took >= Duration::from_millis(500), "took {took:?}");

    let events: Vec<&str> = r
        .body
        .split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            e.strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not SSE: {e:?}"))
        })
        .collect();
    assert!(
        events.len() >= 10 + 2,
        "10 words, usage, [DONE]: {events:?}"
    );
    assert_eq!(events.last(), Some(&"[DONE]"));
    let last: Value = serde_json::from_str(events[events.len() - 2]).expect("final chunk");
    assert_eq!(last["object"], "chat.completion.chunk");
    assert_eq!(last["usage"]["total_tokens"], prompt + 10);
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
}

/// Envoy reads the usage for its stream-done descriptors from the response headers, so they must
/// not wait for the stream: the stream (3 s) still runs for a good while after they arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_headers_arrive_before_the_stream_ends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_upstream, addr) = start_upstream_with(dir.path(), &["--stream-ms", "3000"]).await;
    let mut socket = TcpStream::connect(addr).await.expect("connect");
    let request = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nx-max-tokens: 8\r\n\
                   Content-Length: 0\r\nConnection: close\r\n\r\n";
    socket.write_all(request.as_bytes()).await.expect("send");

    let mut seen = Vec::new();
    let head = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&seen).contains("\r\n\r\n") {
            let n = socket.read(&mut buf).await.expect("read");
            assert!(
                n > 0,
                "closed before the headers: {:?}",
                String::from_utf8_lossy(&seen)
            );
            seen.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&seen).into_owned()
    })
    .await
    .expect("headers within 10 s");
    let headers_at = Instant::now();
    assert!(head.contains("x-usage-total-tokens: 5\r\n"), "{head}");
    assert!(
        !head.contains("[DONE]"),
        "the whole stream came at once: {head}"
    );

    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut rest))
        .await
        .expect("the stream ends within 10 s")
        .expect("read");
    let streamed_for = headers_at.elapsed();
    assert!(String::from_utf8_lossy(&rest).contains("data: [DONE]"));
    // A lower bound only: the headers came at least 1.5 s before the 3 s stream ended.
    assert!(
        streamed_for >= Duration::from_millis(1500),
        "the headers came only {streamed_for:?} before the end"
    );
}

/// A refused request: its headers and body, a word of the message, the `param` named.
type Refused<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str, Option<&'a str>);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut upstream, addr) = start_upstream_with(dir.path(), &[]).await;
    let cases: [Refused; 7] = [
        (&[], "{not json", "not JSON", None),
        (&[], "[1,2]", "JSON object", None),
        (&[], r#"{"max_tokens":0}"#, "max_tokens", Some("max_tokens")),
        (
            &[],
            r#"{"max_tokens":"9"}"#,
            "max_tokens",
            Some("max_tokens"),
        ),
        (&[], r#"{"stream":"yes"}"#, "stream", Some("stream")),
        (
            &[("x-max-tokens", "lots")],
            "",
            "x-max-tokens",
            Some("x-max-tokens"),
        ),
        (
            &[("x-stream-ms", "70000")],
            "",
            "x-stream-ms",
            Some("x-stream-ms"),
        ),
    ];
    for (headers, body, reason, param) in cases {
        let r = post(addr, "/v1/chat/completions", headers, body).await;
        assert_eq!(r.status, 400, "{headers:?} {body}: {r:?}");
        let error = &r.json()["error"];
        let message = error["message"].as_str().expect("a message");
        assert!(message.contains(reason), "{body}: {message}");
        assert_eq!(error["param"].as_str(), param, "{r:?}");
        assert!(r.header("x-usage-total-tokens").is_none(), "{r:?}");
    }

    // A body declared over 1 MiB is refused before it is read.
    let mut socket = TcpStream::connect(addr).await.expect("connect");
    let request = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\
                   Connection: close\r\n\r\n{\"max_tokens\":";
    socket.write_all(request.as_bytes()).await.expect("send");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut answer))
        .await
        .expect("an answer within 10 s")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    // None of it hurt the server.
    let r = post(addr, "/v1/completions", &[("x-max-tokens", "2")], "").await;
    assert_eq!(usage_headers(&r), (1, 1, 2), "{r:?}");
    assert!(upstream.exited().is_none());
}
