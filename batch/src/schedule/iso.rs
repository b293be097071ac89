//! ISO 8601 repeating intervals, Chronos style: `R[n]/<start>/<period>`.
//!
//! Fire `k` (counting from 0) is computed from the start, never from fire `k - 1`, so a
//! monthly schedule starting on the 31st fires on the 31st, the 28th/29th, the 31st, ...
//! without drifting: `wall(start) + k·(years, months) + k·(weeks, days)` in the schedule's
//! time zone, resolved to an instant, plus `k·(hours, minutes, seconds)` of absolute time.

use chrono::{DateTime, Days, Months, NaiveDateTime, TimeDelta, Utc};
use chrono_tz::Tz;

use super::resolve_wall;

/// A compiled repeating interval.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct IsoInterval {
    /// Total number of fires (`Rn`), or `None` for `R` (unbounded). Never `Some(0)`.
    repetitions: Option<u64>,
    /// The first fire.
    start: DateTime<Utc>,
    /// The start's wall time in the schedule's zone: calendar steps are added to it.
    start_wall: NaiveDateTime,
    period: Period,
}

/// A period split into its calendar part and its absolute part. Never all zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Period {
    months: u32,
    days: u32,
    seconds: i64,
}

const FORMAT_HINT: &str = "expected R[n]/<start>/<period>, e.g. R/2026-01-01T00:00:00Z/PT1H \
                           or R5/2026-03-01T09:00:00+01:00/P1W";

impl IsoInterval {
    /// Parses `R[n]/<start>/<period>`; a start without an offset is a wall time in `tz`.
    pub(crate) fn parse(text: &str, tz: Tz) -> Result<IsoInterval, String> {
        let parts: Vec<&str> = text.trim().split('/').collect();
        let [reps, start, period] = parts[..] else {
            return Err(format!(
                "'{text}' has {} '/'-separated parts; {FORMAT_HINT}",
                parts.len()
            ));
        };
        let repetitions = match reps.strip_prefix(['R', 'r']) {
            Some("") => None,
            Some(n) => Some(n.parse::<u64>().map_err(|_| {
                format!("repetitions '{reps}' must be R or R<n> with n a whole number")
            })?),
            None => return Err(format!("'{reps}' must start with R; {FORMAT_HINT}")),
        };
        if repetitions == Some(0) {
            return Err(format!("'{text}' never fires: R0 means zero repetitions"));
        }
        let (start, start_wall) = parse_start(start, tz)?;
        let period = parse_period(period)?;
        Ok(IsoInterval {
            repetitions,
            start,
            start_wall,
            period,
        })
    }

    /// Fire number `k` (0-based), or `None` past the last repetition or out of range.
    fn fire(&self, k: u64, tz: Tz) -> Option<DateTime<Utc>> {
        if self.repetitions.is_some_and(|n| k >= n) {
            return None;
        }
        let months = u32::try_from(k.checked_mul(u64::from(self.period.months))?).ok()?;
        let days = k.checked_mul(u64::from(self.period.days))?;
        let base = if months == 0 && days == 0 {
            self.start
        } else {
            let wall = self
                .start_wall
                .checked_add_months(Months::new(months))?
                .checked_add_days(Days::new(days))?;
            resolve_wall(tz, wall)?
        };
        let seconds = i64::try_from(k).ok()?.checked_mul(self.period.seconds)?;
        base.checked_add_signed(TimeDelta::try_seconds(seconds)?)
    }

    /// First fire strictly after `after`.
    pub(crate) fn next_after(&self, tz: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.start > after {
            return Some(self.start);
        }
        // Estimate k from an average period length, then correct: the estimate is off by
        // at most a step or two (month lengths, DST).
        let average = i128::from(self.period.months) * 2_629_746
            + i128::from(self.period.days) * 86_400
            + i128::from(self.period.seconds);
        let elapsed = i128::from((after - self.start).num_seconds());
        let mut k = u64::try_from(elapsed / average.max(1)).unwrap_or(u64::MAX);
        if let Some(n) = self.repetitions {
            k = k.min(n - 1);
        }
        while k > 0 && self.fire(k, tz).is_none_or(|t| t > after) {
            k -= 1;
        }
        loop {
            k = k.checked_add(1)?;
            let t = self.fire(k, tz)?;
            if t > after {
                return Some(t);
            }
        }
    }
}

/// Returns the start instant and its wall time in `tz`.
fn parse_start(text: &str, tz: Tz) -> Result<(DateTime<Utc>, NaiveDateTime), String> {
    let with_offset = DateTime::parse_from_rfc3339(text)
        .or_else(|_| DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%z"));
    if let Ok(t) = with_offset {
        let t = t.with_timezone(&Utc);
        return Ok((t, t.with_timezone(&tz).naive_local()));
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(wall) = NaiveDateTime::parse_from_str(text, format) {
            let t =
                resolve_wall(tz, wall).ok_or_else(|| format!("start '{text}' is out of range"))?;
            return Ok((t, wall));
        }
    }
    Err(format!(
        "start '{text}' is not an ISO 8601 date-time; expected e.g. 2026-01-01T00:00:00Z, \
         2026-03-01T09:00:00+01:00, or 2026-01-01T00:00:00 (local to the timezone)"
    ))
}

/// Parses `PnYnMnWnDTnHnMnS` (each part optional, in that order, whole numbers).
fn parse_period(text: &str) -> Result<Period, String> {
    let hint = "expected an ISO 8601 duration PnYnMnWnDTnHnMnS with whole numbers, e.g. PT1H, \
                P1D, P1W, P1M";
    let body = text
        .strip_prefix('P')
        .ok_or_else(|| format!("period '{text}' must start with P; {hint}"))?;
    let (date, time) = match body.split_once('T') {
        Some((date, time)) => (date, Some(time)),
        None => (body, None),
    };
    if body.is_empty() || time == Some("") {
        return Err(format!("period '{text}' has no components; {hint}"));
    }
    let [years, months, weeks, days] = parse_units(date, ['Y', 'M', 'W', 'D'], text, hint)?;
    let [hours, minutes, seconds, _] =
        parse_units(time.unwrap_or(""), ['H', 'M', 'S', '\0'], text, hint)?;
    let too_long = || format!("period '{text}' is too long");
    let months = years
        .checked_mul(12)
        .and_then(|y| y.checked_add(months))
        .and_then(|m| u32::try_from(m).ok())
        .ok_or_else(too_long)?;
    let days = weeks
        .checked_mul(7)
        .and_then(|w| w.checked_add(days))
        .and_then(|d| u32::try_from(d).ok())
        .ok_or_else(too_long)?;
    let seconds = hours
        .checked_mul(3600)
        .and_then(|h| minutes.checked_mul(60).and_then(|m| h.checked_add(m)))
        .and_then(|s| s.checked_add(seconds))
        .and_then(|s| i64::try_from(s).ok())
        .filter(|s| TimeDelta::try_seconds(*s).is_some())
        .ok_or_else(too_long)?;
    if months == 0 && days == 0 && seconds == 0 {
        return Err(format!(
            "period '{text}' is zero-length; it must be longer than zero"
        ));
    }
    Ok(Period {
        months,
        days,
        seconds,
    })
}

/// Parses `n<unit>` pairs whose units appear in the order given, each at most once.
fn parse_units(part: &str, units: [char; 4], text: &str, hint: &str) -> Result<[u64; 4], String> {
    let mut values = [0u64; 4];
    let mut next_unit = 0;
    let mut rest = part;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let Some(unit) = rest[digits..].chars().next() else {
            return Err(format!(
                "period '{text}': number '{rest}' has no unit; {hint}"
            ));
        };
        if digits == 0 {
            return Err(format!(
                "period '{text}': expected a number before '{unit}'; {hint}"
            ));
        }
        let value = rest[..digits]
            .parse::<u64>()
            .map_err(|_| format!("period '{text}': '{}' is too large", &rest[..digits]))?;
        let Some(index) = units[next_unit..].iter().position(|u| *u == unit) else {
            return Err(format!("period '{text}': unexpected '{unit}'; {hint}"));
        };
        values[next_unit + index] = value;
        next_unit += index + 1;
        rest = &rest[digits + unit.len_utf8()..];
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("test literal")
            .with_timezone(&Utc)
    }

    fn fires(text: &str, tz: Tz, after: &str, n: usize) -> Vec<DateTime<Utc>> {
        let iso = IsoInterval::parse(text, tz).expect("valid test interval");
        let mut out = Vec::new();
        let mut t = utc(after);
        while out.len() < n {
            let Some(next) = iso.next_after(tz, t) else {
                break;
            };
            out.push(next);
            t = next;
        }
        out
    }

    #[test]
    fn parses_periods() {
        let p = |s| parse_period(s).expect(s);
        assert_eq!(
            p("PT1H"),
            Period {
                months: 0,
                days: 0,
                seconds: 3600
            }
        );
        assert_eq!(
            p("P1Y2M3W4DT5H6M7S"),
            Period {
                months: 14,
                days: 25,
                seconds: 18367
            }
        );
        assert_eq!(
            p("P1W"),
            Period {
                months: 0,
                days: 7,
                seconds: 0
            }
        );
        for (bad, needle) in [
            ("PT0S", "zero-length"),
            ("P", "no components"),
            ("P1DT", "no components"),
            ("1D", "must start with P"),
            ("PT1D", "unexpected 'D'"),
            ("P1H", "unexpected 'H'"),
            ("P1D1Y", "unexpected 'Y'"),
            ("PT1.5S", "unexpected '.'"),
            ("P5", "has no unit"),
            ("PD", "expected a number"),
        ] {
            let err = parse_period(bad).expect_err(bad);
            assert!(err.contains(needle), "{bad}: {err}");
        }
    }

    #[test]
    fn rejects_bad_intervals() {
        for (bad, needle) in [
            ("R0/2026-01-01T00:00:00Z/PT1H", "never fires"),
            ("R/2026-01-01T00:00:00Z", "parts"),
            ("X/2026-01-01T00:00:00Z/PT1H", "must start with R"),
            ("R-1/2026-01-01T00:00:00Z/PT1H", "whole number"),
            ("R/yesterday/PT1H", "not an ISO 8601 date-time"),
        ] {
            let err = IsoInterval::parse(bad, Tz::UTC).expect_err(bad);
            assert!(err.contains(needle), "{bad}: {err}");
        }
    }

    #[test]
    fn hourly_unbounded_from_the_past() {
        let got = fires(
            "R/2026-01-01T00:00:00Z/PT1H",
            Tz::UTC,
            "2026-06-01T10:30:00Z",
            2,
        );
        assert_eq!(
            got,
            vec![utc("2026-06-01T11:00:00Z"), utc("2026-06-01T12:00:00Z")]
        );
        // Before the start the first fire is the start itself.
        let got = fires(
            "R/2026-01-01T00:00:00Z/PT1H",
            Tz::UTC,
            "2025-01-01T00:00:00Z",
            1,
        );
        assert_eq!(got, vec![utc("2026-01-01T00:00:00Z")]);
    }

    #[test]
    fn bounded_repetitions_stop() {
        let got = fires(
            "R5/2026-01-01T00:00:00Z/P1D",
            Tz::UTC,
            "2025-12-31T00:00:00Z",
            10,
        );
        assert_eq!(got.len(), 5);
        assert_eq!(got[4], utc("2026-01-05T00:00:00Z"));
        assert!(
            fires(
                "R5/2026-01-01T00:00:00Z/P1D",
                Tz::UTC,
                "2026-01-05T00:00:00Z",
                1
            )
            .is_empty()
        );
    }

    #[test]
    fn weekly_with_offset_keeps_wall_time_in_zone() {
        let berlin: Tz = "Europe/Berlin".parse().expect("zone");
        // 09:00 CET; after the 2026-03-29 change it stays 09:00 local (07:00Z).
        let got = fires(
            "R/2026-03-01T09:00:00+01:00/P1W",
            berlin,
            "2026-03-20T00:00:00Z",
            2,
        );
        assert_eq!(
            got,
            vec![utc("2026-03-22T08:00:00Z"), utc("2026-03-29T07:00:00Z")]
        );
        // In UTC, a week is 168 absolute hours.
        let got = fires(
            "R/2026-03-01T09:00:00+01:00/P1W",
            Tz::UTC,
            "2026-03-28T00:00:00Z",
            1,
        );
        assert_eq!(got, vec![utc("2026-03-29T08:00:00Z")]);
    }

    #[test]
    fn months_do_not_drift() {
        let got = fires(
            "R/2026-01-31T12:00:00Z/P1M",
            Tz::UTC,
            "2026-01-31T12:00:00Z",
            3,
        );
        assert_eq!(
            got,
            vec![
                utc("2026-02-28T12:00:00Z"),
                utc("2026-03-31T12:00:00Z"),
                utc("2026-04-30T12:00:00Z")
            ]
        );
    }

    #[test]
    fn local_start_resolves_in_zone() {
        let ny: Tz = "America/New_York".parse().expect("zone");
        // 02:30 does not exist on 2026-03-08: the first fire is 03:00 EDT.
        let got = fires("R3/2026-03-08T02:30:00/P1D", ny, "2026-01-01T00:00:00Z", 3);
        assert_eq!(
            got,
            vec![
                utc("2026-03-08T07:00:00Z"),
                utc("2026-03-09T06:30:00Z"),
                utc("2026-03-10T06:30:00Z")
            ]
        );
    }
}
