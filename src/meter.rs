//! The metrics registry one server records into, injected into every part that records —
//! never installed as the process-wide recorder, so two servers in one process (tests, or an
//! embedding application) keep their series apart.
//!
//! Parts keep using the `metrics` macros; they run them inside [`Meter::record`], which points
//! the macros at this meter's recorder for the duration of the closure. Handles created there
//! (`Counter`, `Gauge`, `Histogram`) stay bound to it, so hot paths register once and then
//! only increment. A part built without a meter ([`Meter::default`]) records nowhere.

use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use std::sync::Arc;

/// Latency buckets (seconds) for every `*_seconds` histogram: 50 µs to 1 s, dense where a
/// sidecar answers (Envoy's filter timeout is typically 20 ms).
const LATENCY_BUCKETS: [f64; 14] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// Buckets (seconds) of `sluice_concurrency_wait_seconds`: a wait in the waiting room lasts
/// from a millisecond to `queue_timeout` (at most 600 s).
const WAIT_BUCKETS: [f64; 14] = [
    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 600.0,
];

/// One server's metrics: a Prometheus recorder and the handle that renders it.
#[derive(Clone, Default)]
pub struct Meter {
    /// `None`: record nowhere (parts built outside a server, unit tests).
    inner: Option<Arc<Inner>>,
}

/// The recorder and its renderer.
struct Inner {
    /// Where the macros record while [`Meter::record`] runs.
    recorder: PrometheusRecorder,
    /// Renders the text exposition for `/metrics`.
    handle: PrometheusHandle,
}

impl std::fmt::Debug for Meter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.inner.is_some() {
            "Meter(prometheus)"
        } else {
            "Meter(none)"
        })
    }
}

impl Meter {
    /// A fresh Prometheus registry.
    pub fn prometheus() -> Meter {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("sluice_concurrency_wait_seconds".into()),
                &WAIT_BUCKETS,
            )
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &LATENCY_BUCKETS)
            })
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        Meter {
            inner: Some(Arc::new(Inner { recorder, handle })),
        }
    }

    /// Runs `f` with the `metrics` macros recording into this meter.
    pub fn record<T>(&self, f: impl FnOnce() -> T) -> T {
        match &self.inner {
            Some(inner) => metrics::with_local_recorder(&inner.recorder, f),
            None => metrics::with_local_recorder(&metrics::NoopRecorder, f),
        }
    }

    /// Drains histogram samples into their buckets every `every`: the exporter keeps raw
    /// samples until a render, so without scrapes they would pile up without bound.
    pub fn spawn_upkeep(&self, every: std::time::Duration) -> Option<tokio::task::JoinHandle<()>> {
        let inner = Arc::clone(self.inner.as_ref()?);
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                inner.handle.run_upkeep();
            }
        }))
    }

    /// The Prometheus text exposition of everything recorded so far ("" without a registry).
    pub fn render(&self) -> String {
        self.inner
            .as_ref()
            .map(|i| i.handle.render())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::Meter;

    #[test]
    fn two_meters_keep_their_series_apart() {
        let (a, b) = (Meter::prometheus(), Meter::prometheus());
        let counter = a.record(|| metrics::counter!("sluice_test_total"));
        counter.increment(3);
        b.record(|| metrics::counter!("sluice_test_total").increment(1));
        assert!(a.render().contains("sluice_test_total 3"), "{}", a.render());
        assert!(b.render().contains("sluice_test_total 1"), "{}", b.render());
        Meter::default().record(|| metrics::counter!("sluice_test_total").increment(5));
        assert!(a.render().contains("sluice_test_total 3"));
    }

    #[test]
    fn waits_have_buckets_up_to_the_longest_queue_timeout() {
        let m = Meter::prometheus();
        m.record(|| metrics::histogram!("sluice_concurrency_wait_seconds").record(42.0));
        m.record(|| metrics::histogram!("sluice_request_duration_seconds").record(0.0001));
        let text = m.render();
        assert!(
            text.contains("sluice_concurrency_wait_seconds_bucket{le=\"60\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("sluice_request_duration_seconds_bucket{le=\"0.0001\"} 1"),
            "{text}"
        );
    }
}
