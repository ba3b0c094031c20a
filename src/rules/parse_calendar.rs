//! Parsing a limit's `calendar` and `utc_offset` fields: the opt-in calendar window of the
//! fixed window ([`crate::limiter::calendar`]), with the same file/path/reason errors as every
//! other rule field.
//!
//! - `calendar: true` needs the fixed window (the default `algorithm`) and unit `day`, `month`
//!   or `year`: windows are UTC calendar days, months or years.
//! - `utc_offset: "+HH:MM"` (within ±14:00) needs `calendar: true` and unit `day`: the day
//!   then starts at local midnight of that fixed offset.

use crate::limiter::calendar::Calendar;
use crate::limiter::unit::Unit;
use crate::rules::model::Algorithm;
use crate::rules::parse::{join, show, Parser};
use crate::rules::RuleError;
use serde_yaml::{Mapping, Value};

impl Parser<'_> {
    /// The limit's algorithm once `calendar` and `utc_offset` are read: `algorithm` itself,
    /// or the calendar window when `calendar: true`.
    pub(super) fn calendar(
        &self,
        m: &Mapping,
        path: &str,
        unit: Unit,
        algorithm: Algorithm,
    ) -> Result<Algorithm, RuleError> {
        let calendar_path = join(path, "calendar");
        let calendar = match m.get("calendar") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                return Err(self.err(
                    &calendar_path,
                    format!("must be true or false, not {}", show_short(other)),
                ))
            }
        };
        let offset_path = join(path, "utc_offset");
        let offset = match m.get("utc_offset") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.as_str()),
            Some(other) => {
                return Err(self.err(
                    &offset_path,
                    format!(
                        "must be a string such as \"+02:00\", not {}",
                        show_short(other)
                    ),
                ))
            }
        };
        if !calendar {
            if offset.is_some() {
                return Err(self.err(&offset_path, "utc_offset requires calendar: true"));
            }
            return Ok(algorithm);
        }
        if algorithm != Algorithm::FixedWindow {
            return Err(self.err(
                &calendar_path,
                format!("calendar windows apply only to algorithm: fixed_window, not {algorithm}"),
            ));
        }
        if !matches!(unit, Unit::Day | Unit::Month | Unit::Year) {
            return Err(self.err(
                &calendar_path,
                format!(
                    "calendar windows apply only to unit day, month or year, not {}",
                    unit.name().to_ascii_lowercase()
                ),
            ));
        }
        let calendar = match offset {
            None => Calendar::UTC,
            Some(_) if unit != Unit::Day => {
                return Err(self.err(
                    &offset_path,
                    format!(
                        "utc_offset applies only to unit day (calendar {}s start at 00:00 UTC)",
                        unit.name().to_ascii_lowercase()
                    ),
                ))
            }
            Some(text) => {
                Calendar::parse_offset(text).map_err(|e| self.err(&offset_path, e.to_string()))?
            }
        };
        Ok(Algorithm::CalendarWindow(calendar))
    }

    /// Rejects `calendar` and `utc_offset` on an unlimited limit (nothing is counted).
    pub(super) fn no_calendar(&self, m: &Mapping, path: &str) -> Result<(), RuleError> {
        for key in ["calendar", "utc_offset"] {
            if !matches!(m.get(key), None | Some(Value::Null)) {
                return Err(self.err(
                    &join(path, key),
                    "an unlimited limit counts nothing: it has no calendar window",
                ));
            }
        }
        Ok(())
    }
}

/// [`show`], cut to 32 characters: a file cannot make an error message large.
fn show_short(v: &Value) -> String {
    let text = show(v);
    if text.chars().count() <= 32 {
        return text;
    }
    let mut cut: String = text.chars().take(32).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use crate::limiter::calendar::Calendar;
    use crate::rules::model::{Algorithm, Limit, Policy};
    use crate::rules::parse::parse_domain;
    use crate::rules::unit::Unit;

    /// Parses one descriptor whose `rate_limit` is `limit` (YAML flow map).
    fn parse(limit: &str) -> Result<Limit, String> {
        let text = format!("domain: d\ndescriptors:\n  - key: k\n    rate_limit: {limit}\n");
        let domain = parse_domain("rules/d.yaml", &text).map_err(|e| e.to_string())?;
        let node = domain.root.nodes().next().expect("one node").clone();
        match node.policy {
            Policy::Limited(mut limits) => Ok(limits.remove(0)),
            other => panic!("not a limit: {other:?}"),
        }
    }

    fn err(limit: &str) -> String {
        parse(limit).expect_err("must be rejected")
    }

    #[test]
    fn calendar_months_days_and_years() {
        let month = parse("{unit: month, requests_per_unit: 500000, calendar: true}").expect("ok");
        assert_eq!(month.algorithm, Algorithm::CalendarWindow(Calendar::UTC));
        assert_eq!(
            (month.unit, month.requests_per_unit),
            (Unit::Month, 500_000)
        );
        let year = parse("{unit: year, requests_per_unit: 1, calendar: true}").expect("ok");
        assert_eq!(year.algorithm.calendar(), Some(Calendar::UTC));
        let day =
            parse(r#"{unit: day, requests_per_unit: 1, calendar: true, utc_offset: "-05:30"}"#)
                .expect("ok");
        assert_eq!(
            day.algorithm.calendar().map(|c| c.offset_minutes()),
            Some(-330)
        );
        let unquoted =
            parse("{unit: day, requests_per_unit: 1, calendar: true, utc_offset: +02:00}")
                .expect("an unquoted offset is a string in YAML 1.2");
        assert_eq!(
            unquoted.algorithm.calendar().map(|c| c.offset_minutes()),
            Some(120)
        );
        let explicit =
            parse("{unit: month, requests_per_unit: 1, calendar: true, algorithm: fixed_window}")
                .expect("ok");
        assert!(explicit.algorithm.calendar().is_some());
    }

    #[test]
    fn the_default_stays_upstreams_month() {
        for limit in [
            "{unit: month, requests_per_unit: 1}",
            "{unit: month, requests_per_unit: 1, calendar: false}",
        ] {
            assert_eq!(parse(limit).expect("ok").algorithm, Algorithm::FixedWindow);
        }
    }

    #[test]
    fn calendar_needs_the_fixed_window() {
        for algorithm in ["sliding_window", "sliding_log", "token_bucket"] {
            let e = err(&format!(
                "{{unit: month, requests_per_unit: 1, calendar: true, algorithm: {algorithm}}}"
            ));
            assert_eq!(
                e,
                format!("rules/d.yaml: descriptors[0].rate_limit.calendar: calendar windows apply only to algorithm: fixed_window, not {algorithm}")
            );
        }
    }

    #[test]
    fn calendar_needs_a_calendar_unit() {
        for unit in ["second", "minute", "hour", "week"] {
            let e = err(&format!(
                "{{unit: {unit}, requests_per_unit: 1, calendar: true}}"
            ));
            assert_eq!(
                e,
                format!("rules/d.yaml: descriptors[0].rate_limit.calendar: calendar windows apply only to unit day, month or year, not {unit}")
            );
        }
    }

    #[test]
    fn utc_offset_needs_a_calendar_day() {
        let e = err(r#"{unit: day, requests_per_unit: 1, utc_offset: "+02:00"}"#);
        assert_eq!(
            e,
            "rules/d.yaml: descriptors[0].rate_limit.utc_offset: utc_offset requires calendar: true"
        );
        let e = err(r#"{unit: day, requests_per_unit: 1, calendar: false, utc_offset: "+02:00"}"#);
        assert!(e.ends_with("utc_offset requires calendar: true"), "{e}");
        let e = err(r#"{unit: month, requests_per_unit: 1, calendar: true, utc_offset: "+02:00"}"#);
        assert_eq!(
            e,
            "rules/d.yaml: descriptors[0].rate_limit.utc_offset: utc_offset applies only to unit day (calendar months start at 00:00 UTC)"
        );
    }

    #[test]
    fn bad_values_are_named() {
        let e = err("{unit: day, requests_per_unit: 1, calendar: yes please}");
        assert_eq!(
            e,
            "rules/d.yaml: descriptors[0].rate_limit.calendar: must be true or false, not yes please"
        );
        let e = err(r#"{unit: day, requests_per_unit: 1, calendar: true, utc_offset: "+14:30"}"#);
        assert_eq!(
            e,
            "rules/d.yaml: descriptors[0].rate_limit.utc_offset: UTC offset '+14:30' is outside -14:00 … +14:00"
        );
        let e = err(r#"{unit: day, requests_per_unit: 1, calendar: true, utc_offset: "2h"}"#);
        assert!(e.contains("utc_offset: invalid UTC offset '2h'"), "{e}");
        let e = err("{unit: day, requests_per_unit: 1, calendar: true, utc_offset: 120}");
        assert!(e.contains("utc_offset: must be a string"), "{e}");
        let long = "9".repeat(100_000);
        let e = err(&format!(
            "{{unit: day, requests_per_unit: 1, calendar: true, utc_offset: \"{long}\"}}"
        ));
        assert!(e.len() < 200, "bounded: {} bytes", e.len());
        let e = err(&format!(
            "{{unit: day, requests_per_unit: 1, calendar: {long}}}"
        ));
        assert!(e.len() < 200, "bounded: {} bytes", e.len());
    }

    #[test]
    fn unlimited_has_no_calendar() {
        let e = err("{unlimited: true, calendar: true}");
        assert_eq!(
            e,
            "rules/d.yaml: descriptors[0].rate_limit.calendar: an unlimited limit counts nothing: it has no calendar window"
        );
    }

    #[test]
    fn calendar_works_in_a_rate_limits_list() {
        let text = "domain: d\ndescriptors:\n  - key: k\n    rate_limits:\n      - {unit: second, requests_per_unit: 5}\n      - {unit: hour, requests_per_unit: 9, calendar: true}\n";
        let e = parse_domain("rules/d.yaml", text).expect_err("hour is not a calendar unit");
        assert_eq!(e.path, "descriptors[0].rate_limits[1].calendar");
    }
}
