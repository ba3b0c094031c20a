//! How one setting's text becomes a typed value: one parser type per kind of value, named in
//! the settings table ([`super::table`]). Each says what it accepts, so an error can name the
//! setting, where its value came from, and what would have been valid.

use super::{Backend, ConfigType, LogFormat};
use crate::service::response::HeaderMode;
use crate::store::fallback::FailurePolicy;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// One kind of setting value.
pub trait Parse {
    /// The typed value a `Settings` field holds.
    type Out;
    /// Placeholder shown in `--help` and the docs (`ADDR`, `DURATION`, …).
    const HINT: &'static str;
    /// A flag that may be given without a value (`--shadow-mode` means true).
    const SWITCH: bool = false;
    /// Parses the text, or says what is wrong with it.
    fn parse(text: &str) -> Result<Self::Out, String>;
}

/// `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`, any case: upstream's Go parser takes
/// `True`, `TRUE`, `t`, `1`).
pub struct Bool;
impl Parse for Bool {
    type Out = bool;
    const HINT: &'static str = "BOOL";
    const SWITCH: bool = true;
    fn parse(text: &str) -> Result<bool, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "true" | "t" | "1" | "yes" | "on" => Ok(true),
            "false" | "f" | "0" | "no" | "off" => Ok(false),
            _ => Err("is not a boolean (true or false)".into()),
        }
    }
}

/// A non-negative integer that fits its field.
pub struct Int<T>(std::marker::PhantomData<T>);
impl<T: TryFrom<u64>> Parse for Int<T> {
    type Out = T;
    const HINT: &'static str = "N";
    fn parse(text: &str) -> Result<T, String> {
        let n: u64 = text
            .trim()
            .parse()
            .map_err(|_| "is not a non-negative integer".to_owned())?;
        T::try_from(n).map_err(|_| "is too large".to_owned())
    }
}

/// A finite number.
pub struct Float;
impl Parse for Float {
    type Out = f64;
    const HINT: &'static str = "X";
    fn parse(text: &str) -> Result<f64, String> {
        match text.trim().parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(v),
            _ => Err("is not a number".into()),
        }
    }
}

/// Any text (may be empty).
pub struct Text;
impl Parse for Text {
    type Out = String;
    const HINT: &'static str = "TEXT";
    fn parse(text: &str) -> Result<String, String> {
        Ok(text.to_owned())
    }
}

/// Text, or `None` when empty.
pub struct OptText;
impl Parse for OptText {
    type Out = Option<String>;
    const HINT: &'static str = "TEXT";
    fn parse(text: &str) -> Result<Option<String>, String> {
        Ok((!text.trim().is_empty()).then(|| text.trim().to_owned()))
    }
}

/// A path (must not be empty).
pub struct Path;
impl Parse for Path {
    type Out = PathBuf;
    const HINT: &'static str = "PATH";
    fn parse(text: &str) -> Result<PathBuf, String> {
        if text.trim().is_empty() {
            return Err("is empty".into());
        }
        Ok(PathBuf::from(text.trim()))
    }
}

/// A path, or `None` when empty.
pub struct OptPath;
impl Parse for OptPath {
    type Out = Option<PathBuf>;
    const HINT: &'static str = "FILE";
    fn parse(text: &str) -> Result<Option<PathBuf>, String> {
        Ok((!text.trim().is_empty()).then(|| PathBuf::from(text.trim())))
    }
}

/// `host:port` with an IP host (`0.0.0.0:8081`, `[::]:8081`); also upstream's `:19001` (all
/// interfaces).
pub struct Addr;
impl Parse for Addr {
    type Out = SocketAddr;
    const HINT: &'static str = "ADDR";
    fn parse(text: &str) -> Result<SocketAddr, String> {
        let t = text.trim();
        if let Some(port) = t.strip_prefix(':') {
            let port: u16 = port.parse().map_err(|_| bad_addr())?;
            return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port));
        }
        t.parse().map_err(|_| bad_addr())
    }
}

fn bad_addr() -> String {
    "is not an address IP:PORT (e.g. 0.0.0.0:8081, [::]:8081, :19001)".into()
}

/// An address, or `None` when empty or `off`.
pub struct OptAddr;
impl Parse for OptAddr {
    type Out = Option<SocketAddr>;
    const HINT: &'static str = "ADDR";
    fn parse(text: &str) -> Result<Option<SocketAddr>, String> {
        match text.trim() {
            "" | "off" => Ok(None),
            t => Addr::parse(t).map(Some),
        }
    }
}

/// A duration, bare numbers in milliseconds: `250`, `250ms`, `1.5s`, `2m`, `1h`, Go-style
/// `1m30s`.
pub struct Millis;
impl Parse for Millis {
    type Out = Duration;
    const HINT: &'static str = "DURATION";
    fn parse(text: &str) -> Result<Duration, String> {
        duration(text, 1e-3)
    }
}

/// A duration, bare numbers in seconds: `5`, `500ms`, `10s`, `1m`.
pub struct Secs;
impl Parse for Secs {
    type Out = Duration;
    const HINT: &'static str = "DURATION";
    fn parse(text: &str) -> Result<Duration, String> {
        duration(text, 1.0)
    }
}

/// Parses `<number><unit>` repeated (`1h30m`, `1.5s`, `10ms`, `250us`), or a bare number
/// scaled by `bare` (seconds per unit).
pub fn duration(text: &str, bare: f64) -> Result<Duration, String> {
    const WHAT: &str = "is not a duration (e.g. 250ms, 1.5s, 10s, 1m30s)";
    let t = text.trim();
    if t.is_empty() || t.len() > 64 {
        return Err(WHAT.into());
    }
    if let Ok(v) = t.parse::<f64>() {
        return secs(v * bare).ok_or_else(|| WHAT.to_owned());
    }
    let mut total = 0.0;
    let mut rest = t;
    while !rest.is_empty() {
        let split = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| WHAT.to_owned())?;
        let (number, tail) = rest.split_at(split);
        let value: f64 = number.parse().map_err(|_| WHAT.to_owned())?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(WHAT.into()),
        };
        total += value * scale;
        rest = next;
    }
    secs(total).ok_or_else(|| WHAT.to_owned())
}

fn secs(v: f64) -> Option<Duration> {
    if !v.is_finite() || v < 0.0 {
        return None;
    }
    Duration::try_from_secs_f64(v).ok()
}

/// `k=v,k2=v2` (upstream's node metadata), empty for none; at most 64 pairs.
pub struct Pairs;
impl Parse for Pairs {
    type Out = Vec<(String, String)>;
    const HINT: &'static str = "K=V,...";
    fn parse(text: &str) -> Result<Vec<(String, String)>, String> {
        pairs(text, '=')
    }
}

/// `k:v,k2:v2` (upstream's extra xDS request headers), empty for none; at most 64 pairs.
pub struct HeaderPairs;
impl Parse for HeaderPairs {
    type Out = Vec<(String, String)>;
    const HINT: &'static str = "K:V,...";
    fn parse(text: &str) -> Result<Vec<(String, String)>, String> {
        let list = pairs(text, ':')?;
        for (k, _) in &list {
            if k.is_empty()
                || !k
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            {
                return Err(format!(
                    "header name '{k}' is not a valid gRPC metadata key"
                ));
            }
        }
        Ok(list
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect())
    }
}

fn pairs(text: &str, sep: char) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Some((k, v)) = item.split_once(sep) else {
            return Err(format!("'{item}' is not KEY{sep}VALUE"));
        };
        out.push((k.trim().to_owned(), v.trim().to_owned()));
        if out.len() > 64 {
            return Err("has more than 64 entries".into());
        }
    }
    Ok(out)
}

/// Declares a parser for an enum from its accepted spellings (matched case-insensitively).
macro_rules! choice {
    ($(#[$doc:meta])* $name:ident => $out:ty, $hint:literal, { $($text:literal => $value:expr),+ $(,)? }) => {
        $(#[$doc])*
        pub struct $name;
        impl Parse for $name {
            type Out = $out;
            const HINT: &'static str = $hint;
            fn parse(text: &str) -> Result<$out, String> {
                let t = text.trim().to_ascii_lowercase();
                $( if t == $text { return Ok($value); } )+
                Err(format!("must be one of: {}", [$($text),+].join(", ")))
            }
        }
    };
}

choice!(
    /// The counter store.
    BackendChoice => Backend, "memory|redis|redis_cluster|redis_sentinel", {
        "memory" => Backend::Memory,
        "redis" => Backend::Redis,
        "redis_cluster" => Backend::RedisCluster,
        "redis_sentinel" => Backend::RedisSentinel,
    }
);
choice!(
    /// Log line format.
    LogFormatChoice => LogFormat, "text|json", { "text" => LogFormat::Text, "json" => LogFormat::Json }
);
choice!(
    /// Rate-limit response headers.
    HeadersChoice => HeaderMode, "off|ratelimit|draft10|all", {
        "off" => HeaderMode::Off,
        "ratelimit" => HeaderMode::Ratelimit,
        "draft10" => HeaderMode::Draft10,
        "all" => HeaderMode::All,
    }
);
choice!(
    /// What answers for keys of an unavailable Redis shard.
    FallbackChoice => FailurePolicy, "local|allow|deny", {
        "local" => FailurePolicy::Local,
        "allow" => FailurePolicy::Allow,
        "deny" => FailurePolicy::Deny,
    }
);
choice!(
    /// Where rules come from (upstream's `CONFIG_TYPE` spellings).
    ConfigTypeChoice => ConfigType, "file|grpc_xds_sotw", {
        "file" => ConfigType::File,
        "grpc_xds_sotw" => ConfigType::GrpcXdsSotw,
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ms = |t: &str| Millis::parse(t).map(|d| d.as_secs_f64());
        assert_eq!(ms("250"), Ok(0.25));
        assert_eq!(ms("10ms"), Ok(0.01));
        assert_eq!(ms("1.5s"), Ok(1.5));
        assert_eq!(ms("1m30s"), Ok(90.0));
        assert_eq!(ms("24h"), Ok(86400.0));
        assert_eq!(Secs::parse("5"), Ok(Duration::from_secs(5)));
        for bad in ["", "soon", "-1", "1x", "s", "1e400", "NaN", "1.2.3s"] {
            assert!(ms(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn addresses() {
        assert_eq!(
            Addr::parse(":19001").map(|a| a.to_string()),
            Ok("0.0.0.0:19001".into())
        );
        assert_eq!(Addr::parse("[::]:80").map(|a| a.port()), Ok(80));
        assert!(Addr::parse("localhost:80").is_err());
        assert_eq!(OptAddr::parse(""), Ok(None));
    }

    #[test]
    fn bools_and_pairs() {
        assert_eq!(Bool::parse("TRUE"), Ok(true));
        assert_eq!(Bool::parse("0"), Ok(false));
        assert!(Bool::parse("maybe").is_err());
        assert_eq!(
            Pairs::parse("a=1, b=2"),
            Ok(vec![("a".into(), "1".into()), ("b".into(), "2".into())])
        );
        assert!(Pairs::parse("a").is_err());
        assert!(HeaderPairs::parse("bad key:1").is_err());
        assert_eq!(Int::<u32>::parse("5000000000").unwrap_err(), "is too large");
    }
}
