//! Calendar windows: the fixed window with its boundaries on civil time (`calendar: true`).
//!
//! Upstream's windows are whole periods counted from the Unix epoch — a "month" is any 30 days.
//! A calendar window is the civil unit instead, read at a fixed offset from UTC:
//!
//! - a **month** runs from the 1st 00:00 to the next 1st 00:00 (28 to 31 days);
//! - a **year** from 1 January 00:00 to the next (365 or 366 days);
//! - any other period — a **day**, from local midnight to the next — is a run of whole
//!   periods counted from the epoch's local midnight, i.e. shifted by the offset.
//!
//! An op carries its unit as the unit's length ([`crate::limiter::unit::Unit::seconds`]), so
//! the span is read back from it: [`MONTH_SECS`] is the civil month, [`YEAR_SECS`] the civil
//! year. `lua/limiter.lua` mirrors [`Calendar::window`] step by step; the civil arithmetic
//! (days ↔ year/month/day, proleptic Gregorian) is exact integer arithmetic in both.
//!
//! Time is at most 2⁵² µs after the epoch ([`crate::limiter::NOW_CAP_US`], the year 2112),
//! so every number here stays far below 2⁵³ (exact in Lua's doubles). A window that would
//! start before the epoch (an offset east of UTC, in the first hours of 1970) starts at 0.

use std::fmt;

/// The widest UTC offset, in minutes: ±14:00 spans every zone in use (Kiribati +14:00,
/// Baker Island −12:00).
pub const MAX_OFFSET_MINUTES: i16 = 14 * 60;

/// A month as an op's period: upstream's 30-day length names the civil month here.
pub const MONTH_SECS: u64 = 2_592_000;

/// A year as an op's period: upstream's 365-day length names the civil year here.
pub const YEAR_SECS: u64 = 31_536_000;

const DAY_SECS: i64 = 86_400;

/// Where calendar windows start: civil time at a fixed offset from UTC (no daylight saving:
/// a zone's offset is whatever the rule says, all year).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Calendar {
    /// Minutes east of UTC (`+02:00` is 120, `-05:30` is −330), within
    /// ±[`MAX_OFFSET_MINUTES`]: checked by [`Calendar::new`], so the window arithmetic never
    /// sees an offset larger than a day.
    offset_minutes: i16,
}

/// A UTC offset outside ±14:00, or not written `±HH:MM`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OffsetError {
    /// Not `+HH:MM` or `-HH:MM` (sign required, two digits each, minutes below 60).
    #[error("invalid UTC offset '{0}' (expected +HH:MM or -HH:MM, e.g. +02:00 or -05:30)")]
    Syntax(String),
    /// Further from UTC than any zone.
    #[error("UTC offset '{0}' is outside -14:00 … +14:00")]
    Range(String),
}

/// The longest offset text echoed in an error (the rest is cut: a file cannot make an error
/// message large).
const MAX_ECHO: usize = 16;

impl Calendar {
    /// Civil time in UTC.
    pub const UTC: Calendar = Calendar { offset_minutes: 0 };

    /// Civil time `offset_minutes` east of UTC; `None` beyond ±[`MAX_OFFSET_MINUTES`].
    pub fn new(offset_minutes: i16) -> Option<Calendar> {
        (offset_minutes.unsigned_abs() <= MAX_OFFSET_MINUTES.unsigned_abs())
            .then_some(Calendar { offset_minutes })
    }

    /// Parses a rule's `utc_offset`: `+HH:MM` or `-HH:MM`, within ±14:00.
    pub fn parse_offset(text: &str) -> Result<Calendar, OffsetError> {
        let echo = || text.chars().take(MAX_ECHO).collect::<String>();
        let bytes = text.as_bytes();
        let digit = |i: usize| -> Option<i16> {
            bytes
                .get(i)
                .filter(|b| b.is_ascii_digit())
                .map(|b| i16::from(b - b'0'))
        };
        let sign = match bytes.first() {
            Some(b'+') => 1,
            Some(b'-') => -1,
            _ => return Err(OffsetError::Syntax(echo())),
        };
        let parsed = (|| {
            if bytes.len() != 6 || bytes[3] != b':' {
                return None;
            }
            let hours = digit(1)? * 10 + digit(2)?;
            let minutes = digit(4)? * 10 + digit(5)?;
            (minutes < 60).then_some(hours * 60 + minutes)
        })();
        let Some(magnitude) = parsed else {
            return Err(OffsetError::Syntax(echo()));
        };
        Calendar::new(sign * magnitude).ok_or_else(|| OffsetError::Range(echo()))
    }

    /// Minutes east of UTC.
    pub fn offset_minutes(self) -> i16 {
        self.offset_minutes
    }

    /// Seconds east of UTC.
    pub fn offset_secs(self) -> i64 {
        i64::from(self.offset_minutes) * 60
    }

    /// The window holding `now_s` (seconds since the epoch) for a period of `period_secs`:
    /// `(start, end)` in seconds since the epoch, `start <= now_s < end` (start clamped at 0).
    pub fn window(self, period_secs: u64, now_s: u64) -> (u64, u64) {
        let off = self.offset_secs();
        // now_s ≤ 2⁵² / 10⁶: far inside i64, as are all the sums below.
        let local = i64::try_from(now_s).unwrap_or(i64::MAX / 2) + off;
        let (start, end) = match period_secs {
            MONTH_SECS | YEAR_SECS => {
                let days = local.div_euclid(DAY_SECS);
                let (y, m, _) = civil_from_days(days);
                let (first, next) = if period_secs == YEAR_SECS {
                    (days_from_civil(y, 1, 1), days_from_civil(y + 1, 1, 1))
                } else if m == 12 {
                    (days_from_civil(y, 12, 1), days_from_civil(y + 1, 1, 1))
                } else {
                    (days_from_civil(y, m, 1), days_from_civil(y, m + 1, 1))
                };
                (first * DAY_SECS - off, next * DAY_SECS - off)
            }
            p => {
                let p = i64::try_from(p.max(1)).unwrap_or(i64::MAX / 4);
                let start = local - local.rem_euclid(p) - off;
                (start, start + p)
            }
        };
        let clamp = |s: i64| u64::try_from(s).unwrap_or(0);
        (clamp(start), clamp(end))
    }
}

impl fmt::Display for Calendar {
    /// `+HH:MM` / `-HH:MM`, as a rule writes it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.offset_minutes < 0 { '-' } else { '+' };
        let m = self.offset_minutes.unsigned_abs();
        write!(f, "{sign}{:02}:{:02}", m / 60, m % 60)
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (`month` 1–12, `day` 1–31).
///
/// Counts in 400-year eras (146 097 days each) of years that begin on 1 March, so the leap
/// day is the last day of its year and a month's first day is a linear function of its
/// number: March 1 is day 0 of the shifted year, and 153 days pass every 5 months.
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let (month, day) = (i64::from(month), i64::from(day));
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let shifted_month = (month + 9) % 12; // March = 0 … February = 11
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    // 719 468 days from 0000-03-01 to 1970-01-01.
    era * 146_097 + day_of_era - 719_468
}

/// The proleptic Gregorian date `(year, month 1–12, day 1–31)` of `days` since 1970-01-01:
/// the inverse of [`days_from_civil`].
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097; // 0 ..= 146 096
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153; // March = 0
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    // Both are within 1..=12 and 1..=31 by construction.
    (
        year,
        u32::try_from(month).unwrap_or(1),
        u32::try_from(day).unwrap_or(1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400;

    /// Seconds since the epoch of `y-m-d hh:mm:ss` UTC.
    fn at(y: i64, m: u32, d: u32, hh: u64, mm: u64, ss: u64) -> u64 {
        let days = u64::try_from(days_from_civil(y, m, d)).expect("after 1970");
        days * DAY + hh * 3_600 + mm * 60 + ss
    }

    fn month(now: u64) -> (u64, u64) {
        Calendar::UTC.window(MONTH_SECS, now)
    }

    fn day_at(offset: &str, now: u64) -> (u64, u64) {
        Calendar::parse_offset(offset)
            .expect("valid offset")
            .window(DAY, now)
    }

    /// An oracle that shares nothing with the formulas: walk day by day from 1 March 1968,
    /// keeping the date with month lengths and the leap rule written out.
    #[test]
    fn civil_conversions_match_a_day_by_day_walk() {
        let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let length = |y: i64, m: u32| match m {
            2 if leap(y) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        let (mut y, mut m, mut d) = (1968_i64, 3_u32, 1_u32);
        let start = -671; // 1968-03-01
        for days in start..start + 60_000 {
            assert_eq!(civil_from_days(days), (y, m, d), "day {days}");
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
            d += 1;
            if d > length(y, m) {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2024, 2, 29), 19_782);
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn january_31_to_february_1() {
        let jan31 = at(2026, 1, 31, 23, 59, 59);
        assert_eq!(
            month(jan31),
            (at(2026, 1, 1, 0, 0, 0), at(2026, 2, 1, 0, 0, 0))
        );
        let feb1 = jan31 + 1;
        assert_eq!(month(feb1), (feb1, at(2026, 3, 1, 0, 0, 0)));
    }

    #[test]
    fn february_in_leap_and_common_years() {
        // 2028 is a leap year: February has 29 days.
        let (s, e) = month(at(2028, 2, 28, 23, 59, 59));
        assert_eq!((s, e), (at(2028, 2, 1, 0, 0, 0), at(2028, 3, 1, 0, 0, 0)));
        assert_eq!(e - s, 29 * DAY);
        let feb29 = at(2028, 2, 29, 12, 0, 0);
        assert_eq!(month(feb29).1 - feb29, 12 * 3_600);
        // 2026 is not: the 29th does not exist, 28 Feb 23:59:59 is the last second.
        let (s, e) = month(at(2026, 2, 28, 23, 59, 59));
        assert_eq!(e - s, 28 * DAY);
        assert_eq!(e, at(2026, 3, 1, 0, 0, 0));
        // 2100 is not a leap year (divisible by 100), 2000 was (divisible by 400).
        let (s, e) = month(at(2100, 2, 10, 0, 0, 0));
        assert_eq!(e - s, 28 * DAY);
        let (s, e) = month(at(2000, 2, 10, 0, 0, 0));
        assert_eq!(e - s, 29 * DAY);
    }

    #[test]
    fn december_to_january() {
        let dec31 = at(2026, 12, 31, 23, 59, 59);
        assert_eq!(month(dec31), (at(2026, 12, 1, 0, 0, 0), dec31 + 1));
        assert_eq!(month(dec31 + 1).0, at(2027, 1, 1, 0, 0, 0));
        let year = Calendar::UTC.window(YEAR_SECS, dec31);
        assert_eq!(year, (at(2026, 1, 1, 0, 0, 0), dec31 + 1));
        let leap = Calendar::UTC.window(YEAR_SECS, at(2028, 7, 1, 0, 0, 0));
        assert_eq!(leap.1 - leap.0, 366 * DAY);
    }

    #[test]
    fn every_boundary_of_a_year_is_the_first_of_a_month() {
        let mut t = at(2027, 12, 31, 0, 0, 0);
        let mut starts = Vec::new();
        for _ in 0..13 {
            let (s, e) = month(t);
            assert!(s <= t && t < e);
            starts.push(civil_from_days(i64::try_from(e / DAY).expect("days")));
            t = e;
        }
        let expected: Vec<(i64, u32, u32)> = (1..=12)
            .map(|m| (2028, m, 1))
            .chain([(2029, 1, 1)])
            .collect();
        assert_eq!(starts, expected);
    }

    #[test]
    fn offsets_move_midnight() {
        // +14:00: local midnight of 2 March is 10:00 UTC on 1 March.
        let midnight = at(2026, 3, 1, 10, 0, 0);
        assert_eq!(
            day_at("+14:00", midnight - 1),
            (midnight - DAY, midnight),
            "a second before local midnight"
        );
        assert_eq!(day_at("+14:00", midnight), (midnight, midnight + DAY));
        // -12:00: local midnight of 2 March is 12:00 UTC on 2 March.
        let midnight = at(2026, 3, 2, 12, 0, 0);
        assert_eq!(day_at("-12:00", midnight - 1).1, midnight);
        assert_eq!(day_at("-12:00", midnight).0, midnight);
        // +05:30: local midnight is 18:30 UTC the day before.
        let midnight = at(2026, 3, 1, 18, 30, 0);
        assert_eq!(day_at("+05:30", midnight - 1), (midnight - DAY, midnight));
        assert_eq!(day_at("+05:30", midnight), (midnight, midnight + DAY));
        // -05:30 and +00:00.
        assert_eq!(
            day_at("-05:30", at(2026, 3, 2, 5, 29, 59)).1,
            at(2026, 3, 2, 5, 30, 0)
        );
        let utc = at(2026, 3, 2, 0, 0, 0);
        assert_eq!(day_at("+00:00", utc), (utc, utc + DAY));
        assert_eq!(day_at("-00:00", utc), (utc, utc + DAY));
    }

    #[test]
    fn an_offset_month_starts_at_local_midnight_of_the_first() {
        let plus2 = Calendar::new(120).expect("in range");
        let first = at(2026, 1, 31, 22, 0, 0); // 1 Feb 00:00 at +02:00
        assert_eq!(plus2.window(MONTH_SECS, first - 1).1, first);
        assert_eq!(plus2.window(MONTH_SECS, first).0, first);
    }

    #[test]
    fn windows_near_the_epoch_start_at_zero() {
        let east = Calendar::new(MAX_OFFSET_MINUTES).expect("in range");
        assert_eq!(east.window(DAY, 0), (0, 36_000));
        let west = Calendar::new(-MAX_OFFSET_MINUTES).expect("in range");
        assert_eq!(west.window(DAY, 0), (0, 50_400));
        assert_eq!(Calendar::UTC.window(MONTH_SECS, 0), (0, 31 * DAY));
    }

    #[test]
    fn the_latest_time_stays_exact() {
        let last = crate::limiter::NOW_CAP_US / 1_000_000;
        for p in [DAY, MONTH_SECS, YEAR_SECS] {
            for off in [-MAX_OFFSET_MINUTES, 0, MAX_OFFSET_MINUTES] {
                let (s, e) = Calendar::new(off).expect("in range").window(p, last);
                assert!(s <= last && last < e && e < 1 << 53);
            }
        }
    }

    #[test]
    fn offsets_parse_strictly() {
        assert_eq!(
            Calendar::parse_offset("+02:00").map(|c| c.offset_minutes()),
            Ok(120)
        );
        assert_eq!(
            Calendar::parse_offset("-05:30").map(|c| c.offset_minutes()),
            Ok(-330)
        );
        assert_eq!(
            Calendar::parse_offset("+14:00").map(|c| c.offset_minutes()),
            Ok(840)
        );
        assert_eq!(
            Calendar::parse_offset("-14:00").map(|c| c.offset_minutes()),
            Ok(-840)
        );
        for bad in [
            "02:00", "+2:00", "+02", "+0200", "+02:60", "+02:00 ", "", "+ab:cd", "−02:00",
        ] {
            assert!(
                matches!(Calendar::parse_offset(bad), Err(OffsetError::Syntax(_))),
                "{bad}"
            );
        }
        for far in ["+14:01", "-14:30", "+99:00"] {
            assert!(
                matches!(Calendar::parse_offset(far), Err(OffsetError::Range(_))),
                "{far}"
            );
        }
        let long = format!("+{}", "9".repeat(10_000));
        let Err(e) = Calendar::parse_offset(&long) else {
            panic!("accepted");
        };
        assert!(e.to_string().len() < 120, "{e}");
        assert_eq!(Calendar::new(841), None);
        assert_eq!(Calendar::new(-330).expect("ok").to_string(), "-05:30");
        assert_eq!(Calendar::UTC.to_string(), "+00:00");
    }
}
