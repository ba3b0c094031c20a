//! The xDS `RateLimitConfig` resource as prost types, written by hand from
//! `proto/ratelimit/config/ratelimit/v3/rls_conf.proto` (no code generation: five small
//! messages). Field numbers and types are the wire contract with the control plane.
//!
//! Decoding is bounded by prost itself: nesting deeper than its recursion limit (100 messages)
//! is a decode error, so a hostile resource cannot overflow the stack.

use envoy_types::pb::google::protobuf::Struct;

/// The type URL of [`RateLimitConfig`] in `DiscoveryRequest`/`DiscoveryResponse` and `Any`.
pub const TYPE_URL: &str = "type.googleapis.com/ratelimit.config.ratelimit.v3.RateLimitConfig";

/// The rules of one domain (Envoy Gateway: one resource per domain, named after it).
#[derive(Clone, PartialEq, prost::Message)]
pub struct RateLimitConfig {
    /// The resource name; labels errors (`xds:<name>`).
    #[prost(string, tag = "1")]
    pub name: String,
    /// The domain Envoy sends; YAML `domain`.
    #[prost(string, tag = "2")]
    pub domain: String,
    /// The top-level descriptors; YAML `descriptors`.
    #[prost(message, repeated, tag = "3")]
    pub descriptors: Vec<RateLimitDescriptor>,
}

/// One descriptor entry and everything below it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RateLimitDescriptor {
    /// The descriptor key (required by validation).
    #[prost(string, tag = "1")]
    pub key: String,
    /// The value; empty means the default child (any value).
    #[prost(string, tag = "2")]
    pub value: String,
    /// The limit of this node, if any.
    #[prost(message, optional, tag = "3")]
    pub rate_limit: Option<RateLimitPolicy>,
    /// Deeper entries.
    #[prost(message, repeated, tag = "4")]
    pub descriptors: Vec<RateLimitDescriptor>,
    /// Count but never deny.
    #[prost(bool, tag = "5")]
    pub shadow_mode: bool,
    /// Runtime values of every entry in stats names.
    #[prost(bool, tag = "6")]
    pub detailed_metric: bool,
    /// Deny only if every quota-mode descriptor is over.
    #[prost(bool, tag = "7")]
    pub quota_mode: bool,
    /// Opaque metadata; validated as a map like the YAML `metadata` key.
    #[prost(message, optional, tag = "8")]
    pub metadata: Option<Struct>,
}

/// A limit.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RateLimitPolicy {
    /// The window, a [`RateLimitUnit`] (kept as `i32` so an unknown number reaches validation
    /// and is rejected there with its value, instead of failing the decode).
    #[prost(enumeration = "RateLimitUnit", tag = "1")]
    pub unit: i32,
    /// Hits per window.
    #[prost(uint32, tag = "2")]
    pub requests_per_unit: u32,
    /// Never limited (then `unit` must be `UNKNOWN`).
    #[prost(bool, tag = "3")]
    pub unlimited: bool,
    /// The handle `replaces` refers to.
    #[prost(string, tag = "4")]
    pub name: String,
    /// Limits this one switches off.
    #[prost(message, repeated, tag = "5")]
    pub replaces: Vec<RateLimitReplace>,
}

/// One item of `replaces`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RateLimitReplace {
    /// The name of the limit to switch off.
    #[prost(string, tag = "1")]
    pub name: String,
}

/// Window lengths, as numbered on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum RateLimitUnit {
    /// Not set: valid only with `unlimited`.
    Unknown = 0,
    Second = 1,
    Minute = 2,
    Hour = 3,
    Day = 4,
    Month = 5,
    Year = 6,
    Week = 7,
}

impl RateLimitUnit {
    /// The enum name as the proto writes it (`SECOND`), which is what the YAML format accepts.
    pub fn as_str_name(self) -> &'static str {
        match self {
            RateLimitUnit::Unknown => "UNKNOWN",
            RateLimitUnit::Second => "SECOND",
            RateLimitUnit::Minute => "MINUTE",
            RateLimitUnit::Hour => "HOUR",
            RateLimitUnit::Day => "DAY",
            RateLimitUnit::Month => "MONTH",
            RateLimitUnit::Year => "YEAR",
            RateLimitUnit::Week => "WEEK",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn round_trips_and_keeps_unknown_unit_numbers() {
        let config = RateLimitConfig {
            name: "d".into(),
            domain: "d".into(),
            descriptors: vec![RateLimitDescriptor {
                key: "k".into(),
                rate_limit: Some(RateLimitPolicy {
                    unit: 42,
                    requests_per_unit: 3,
                    ..Default::default()
                }),
                ..Default::default()
            }],
        };
        let bytes = config.encode_to_vec();
        let back = RateLimitConfig::decode(bytes.as_slice()).expect("decodes");
        assert_eq!(back, config);
        assert_eq!(RateLimitUnit::try_from(42).ok(), None);
        assert_eq!(RateLimitUnit::try_from(7), Ok(RateLimitUnit::Week));
    }

    #[test]
    fn nesting_beyond_the_recursion_limit_is_a_decode_error() {
        let mut d = RateLimitDescriptor {
            key: "k".into(),
            ..Default::default()
        };
        for _ in 0..200 {
            d = RateLimitDescriptor {
                key: "k".into(),
                descriptors: vec![d],
                ..Default::default()
            };
        }
        let config = RateLimitConfig {
            domain: "d".into(),
            descriptors: vec![d],
            ..Default::default()
        };
        assert!(RateLimitConfig::decode(config.encode_to_vec().as_slice()).is_err());
    }
}
