//! Time units of a limit, as envoyproxy/ratelimit defines them.
//!
//! Windows are whole numbers of seconds aligned to the Unix epoch: a week starts on a Thursday,
//! a month is 30 days and a year 365 days, exactly as the reference service counts them —
//! unless a fixed-window limit opts into calendar windows ([`crate::limiter::calendar`]).

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::rate_limit::Unit as PbUnit;
use std::fmt;

/// The period a limit's `requests_per_unit` applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unit {
    Second,
    Minute,
    Hour,
    Day,
    Week,
    Month,
    Year,
}

impl Unit {
    /// Every unit, shortest first (used in error messages).
    pub const ALL: [Unit; 7] = [
        Unit::Second,
        Unit::Minute,
        Unit::Hour,
        Unit::Day,
        Unit::Week,
        Unit::Month,
        Unit::Year,
    ];

    /// Length of one window in seconds.
    pub fn seconds(self) -> u64 {
        match self {
            Unit::Second => 1,
            Unit::Minute => 60,
            Unit::Hour => 3_600,
            Unit::Day => 86_400,
            Unit::Week => 604_800,
            Unit::Month => 2_592_000,
            Unit::Year => 31_536_000,
        }
    }

    /// Parses a rule file's unit, case-insensitively (`second` … `year`).
    pub fn parse(s: &str) -> Option<Unit> {
        Unit::ALL
            .into_iter()
            .find(|u| u.name().eq_ignore_ascii_case(s))
    }

    /// The upper-case name used by the protos and by `/rlconfig`.
    pub fn name(self) -> &'static str {
        match self {
            Unit::Second => "SECOND",
            Unit::Minute => "MINUTE",
            Unit::Hour => "HOUR",
            Unit::Day => "DAY",
            Unit::Week => "WEEK",
            Unit::Month => "MONTH",
            Unit::Year => "YEAR",
        }
    }

    /// The response enum (`RateLimitResponse.RateLimit.Unit`).
    pub fn to_proto(self) -> PbUnit {
        match self {
            Unit::Second => PbUnit::Second,
            Unit::Minute => PbUnit::Minute,
            Unit::Hour => PbUnit::Hour,
            Unit::Day => PbUnit::Day,
            Unit::Week => PbUnit::Week,
            Unit::Month => PbUnit::Month,
            Unit::Year => PbUnit::Year,
        }
    }

    /// The `envoy.type.v3.RateLimitUnit` number of this unit (`None` for WEEK, which it lacks).
    pub fn to_override(self) -> Option<i32> {
        match self {
            Unit::Second => Some(1),
            Unit::Minute => Some(2),
            Unit::Hour => Some(3),
            Unit::Day => Some(4),
            Unit::Week => None,
            Unit::Month => Some(5),
            Unit::Year => Some(6),
        }
    }

    /// A request's limit override carries `envoy.type.v3.RateLimitUnit`, whose numbering is
    /// SECOND=1 … YEAR=6 with no WEEK. `UNKNOWN` (0) and undefined numbers give `None`.
    pub fn from_override(value: i32) -> Option<Unit> {
        match value {
            1 => Some(Unit::Second),
            2 => Some(Unit::Minute),
            3 => Some(Unit::Hour),
            4 => Some(Unit::Day),
            5 => Some(Unit::Month),
            6 => Some(Unit::Year),
            _ => None,
        }
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_case_insensitively() {
        assert_eq!(Unit::parse("second"), Some(Unit::Second));
        assert_eq!(Unit::parse("MiNuTe"), Some(Unit::Minute));
        assert_eq!(Unit::parse("week"), Some(Unit::Week));
        assert_eq!(Unit::parse("unknown"), None);
        assert_eq!(Unit::parse(""), None);
        assert_eq!(Unit::parse("foo"), None);
    }

    #[test]
    fn lengths_match_the_reference_service() {
        assert_eq!(Unit::Month.seconds(), 30 * 86_400);
        assert_eq!(Unit::Year.seconds(), 365 * 86_400);
        assert_eq!(Unit::Week.seconds(), 7 * 86_400);
    }

    #[test]
    fn override_numbering_has_no_week() {
        assert_eq!(Unit::from_override(0), None);
        assert_eq!(Unit::from_override(5), Some(Unit::Month));
        assert_eq!(Unit::from_override(6), Some(Unit::Year));
        assert_eq!(Unit::from_override(7), None);
        assert_eq!(Unit::from_override(-1), None);
    }
}
