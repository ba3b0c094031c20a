//! Logs and traces: `tracing` with text or JSON lines filtered by `--log-level` (an env-filter
//! directive), and — with the `otlp` cargo feature and `--otlp-endpoint` — span export over
//! OTLP/gRPC.
//!
//! Each ShouldRateLimit call runs in a `should_rate_limit` span at debug level: free when
//! nobody listens. The OTLP layer has its own filter (`sluice=debug`), so spans are exported
//! whatever the log level.

use crate::settings::{LogFormat, Settings};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

/// Keeps the exporters alive; dropping it flushes pending spans.
pub struct Telemetry {
    /// The OTLP pipeline, when exporting.
    #[cfg(feature = "otlp")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        #[cfg(feature = "otlp")]
        if let Some(provider) = self.provider.take() {
            if let Err(e) = provider.shutdown() {
                eprintln!("sluice: flushing spans failed: {e}");
            }
        }
    }
}

/// Installs the global subscriber. Call inside the Tokio runtime (the OTLP exporter's gRPC
/// channel needs it).
pub fn init(settings: &Settings) -> Result<Telemetry, String> {
    // Validated in settings; fall back to `info` rather than fail here.
    let filter = EnvFilter::try_new(&settings.log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let fmt = tracing_subscriber::fmt::layer().with_ansi(ansi);
    let fmt = match settings.log_format {
        LogFormat::Json => fmt.json().with_filter(filter).boxed(),
        LogFormat::Text => fmt.with_filter(filter).boxed(),
    };
    #[cfg_attr(not(feature = "otlp"), allow(unused_mut))]
    let mut layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> = vec![fmt];
    #[cfg(feature = "otlp")]
    let mut provider = None;
    #[cfg(feature = "otlp")]
    if let Some(endpoint) = &settings.otlp_endpoint {
        let (layer, p) = otlp::layer(endpoint)?;
        layers.push(layer);
        provider = Some(p);
    }
    tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .map_err(|e| e.to_string())?;
    Ok(Telemetry {
        #[cfg(feature = "otlp")]
        provider,
    })
}

#[cfg(feature = "otlp")]
mod otlp {
    use opentelemetry::trace::TracerProvider;
    use opentelemetry_otlp::WithExportConfig;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use opentelemetry_sdk::Resource;
    use tracing_subscriber::{EnvFilter, Layer, Registry};

    /// The exporting layer (spans of sluice at debug and above) and its provider.
    pub fn layer(
        endpoint: &str,
    ) -> Result<(Box<dyn Layer<Registry> + Send + Sync>, SdkTracerProvider), String> {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()
            .map_err(|e| format!("otlp exporter for {endpoint}: {e}"))?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(Resource::builder().with_service_name("sluice").build())
            .build();
        let layer = tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("sluice"))
            .with_filter(EnvFilter::new("sluice=debug"))
            .boxed();
        Ok((layer, provider))
    }
}
