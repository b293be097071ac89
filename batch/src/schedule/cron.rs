//! Cron expressions: parsing and the wall-clock search.
//!
//! This module knows nothing about time zones: it answers "which wall-clock times match"
//! over naive local date-times. Mapping wall times to instants (and the DST rules) lives in
//! the parent module.

use chrono::offset::LocalResult;
use chrono::{
    DateTime, Datelike, Days, NaiveDate, NaiveDateTime, TimeDelta, TimeZone, Timelike, Utc,
};
use chrono_tz::Tz;

use super::{SEARCH_HORIZON_DAYS, first_change, offset_at, wall_at};

/// A compiled cron expression: one bit per allowed value of each field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CronExpr {
    seconds: u64,
    minutes: u64,
    hours: u32,
    /// Bits 1..=31.
    days_of_month: u32,
    /// Bits 1..=12.
    months: u16,
    /// Bits 0..=6, 0 = Sunday.
    days_of_week: u8,
    /// Day-of-month field began with `*` or `?` (Vixie's DOM_STAR).
    dom_star: bool,
    /// Day-of-week field began with `*` or `?` (Vixie's DOW_STAR).
    dow_star: bool,
    /// Hour field began with `*`: the job follows real hours across DST changes.
    pub(crate) hour_wild: bool,
}

const MONTH_NAMES: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAY_NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// One field's grammar: its name in messages, its range and its optional names.
struct FieldKind {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
    /// Value of the first name (1 for months, 0 for days).
    names_base: u32,
}

const SECOND: FieldKind = FieldKind {
    name: "second",
    min: 0,
    max: 59,
    names: &[],
    names_base: 0,
};
const MINUTE: FieldKind = FieldKind {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
    names_base: 0,
};
const HOUR: FieldKind = FieldKind {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
    names_base: 0,
};
const DOM: FieldKind = FieldKind {
    name: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
    names_base: 0,
};
const MONTH: FieldKind = FieldKind {
    name: "month",
    min: 1,
    max: 12,
    names: &MONTH_NAMES,
    names_base: 1,
};
const DOW: FieldKind = FieldKind {
    name: "day-of-week",
    min: 0,
    max: 7,
    names: &DAY_NAMES,
    names_base: 0,
};

impl CronExpr {
    /// Parses a 5-field (`min hour dom month dow`) or 6-field (leading seconds) expression,
    /// or one of the `@` macros. The error is a message for the user.
    pub(crate) fn parse(expr: &str) -> Result<CronExpr, String> {
        let expr = expr.trim();
        if let Some(name) = expr.strip_prefix('@') {
            let expanded = match name.to_ascii_lowercase().as_str() {
                "yearly" | "annually" => "0 0 1 1 *",
                "monthly" => "0 0 1 * *",
                "weekly" => "0 0 * * 0",
                "daily" | "midnight" => "0 0 * * *",
                "hourly" => "0 * * * *",
                _ => {
                    return Err(format!(
                        "unknown macro '@{name}'; accepted: @yearly, @annually, @monthly, \
                         @weekly, @daily, @midnight, @hourly"
                    ));
                }
            };
            return CronExpr::parse(expanded);
        }
        let fields: Vec<&str> = expr.split_whitespace().collect();
        let (sec, rest) = match fields.len() {
            5 => ("0", &fields[..]),
            6 => (fields[0], &fields[1..]),
            n => {
                return Err(format!(
                    "expected 5 fields (minute hour day-of-month month day-of-week) or 6 with \
                     a leading seconds field, got {n} in '{expr}'"
                ));
            }
        };
        let (min, hour, dom, month, dow) = (rest[0], rest[1], rest[2], rest[3], rest[4]);
        let dow_bits = parse_field(dow, &DOW)?;
        // 7 is Sunday too.
        let dow_bits = (dow_bits | (dow_bits >> 7)) & 0x7f;
        Ok(CronExpr {
            seconds: parse_field(sec, &SECOND)?,
            minutes: parse_field(min, &MINUTE)?,
            hours: parse_field(hour, &HOUR)? as u32,
            days_of_month: parse_field(dom, &DOM)? as u32,
            months: parse_field(month, &MONTH)? as u16,
            days_of_week: dow_bits as u8,
            dom_star: dom.starts_with(['*', '?']),
            dow_star: dow.starts_with(['*', '?']),
            hour_wild: hour.starts_with('*'),
        })
    }

    /// Cron search in a zone. Walks segments of constant UTC offset: inside one, wall time is
    /// `instant + offset`, so the next matching wall time gives the next instant, unless a
    /// transition comes first, in which case the search restarts at the transition.
    pub(crate) fn next_after(&self, tz: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut seg = after.timestamp().checked_add(1)?;
        let horizon = seg.checked_add(SEARCH_HORIZON_DAYS * 86_400)?;
        let wall_limit = wall_at(horizon.checked_add(86_400)?)?;
        'segments: while seg <= horizon {
            let off = offset_at(tz, seg);
            let before = offset_at(tz, seg - 1);
            if before < off && !self.hour_wild {
                // Spring forward at `seg`: walls in [seg + before, seg + off) never happened.
                if self
                    .next_wall(wall_at(seg + before)?, wall_at(seg + off)?)
                    .is_some()
                {
                    return DateTime::from_timestamp(seg, 0);
                }
            }
            let mut from = wall_at(seg + off)?;
            let mut checked = seg; // the offset is `off` throughout [seg, checked]
            loop {
                let wall = self.next_wall(from, wall_limit)?;
                let t = wall.and_utc().timestamp() - off;
                if t > horizon {
                    return None;
                }
                if t > checked {
                    if let Some(change) = first_change(tz, checked, t, off) {
                        seg = change;
                        continue 'segments;
                    }
                    checked = t;
                }
                if !self.hour_wild
                    && let LocalResult::Ambiguous(first, _) = tz.from_local_datetime(&wall)
                    && first.timestamp() != t
                {
                    // Second occurrence of a repeated wall time: it already fired.
                    from = wall.checked_add_signed(TimeDelta::seconds(1))?;
                    continue;
                }
                return DateTime::from_timestamp(t, 0);
            }
        }
        None
    }

    fn day_matches(&self, date: NaiveDate) -> bool {
        let dom = self.days_of_month & (1 << date.day()) != 0;
        let dow = self.days_of_week & (1 << date.weekday().num_days_from_sunday()) != 0;
        // Vixie: if either day field is unrestricted, both must match (the `*` one always
        // does); if both are restricted, either may match.
        if self.dom_star || self.dow_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// First matching wall time in `[from, limit)`, at whole seconds.
    pub(crate) fn next_wall(
        &self,
        from: NaiveDateTime,
        limit: NaiveDateTime,
    ) -> Option<NaiveDateTime> {
        // Round a fractional `from` up to the next whole second.
        let from = if from.nanosecond() > 0 {
            from.with_nanosecond(0)?
                .checked_add_signed(TimeDelta::seconds(1))?
        } else {
            from
        };
        let mut date = from.date();
        let mut start = (from.hour(), from.minute(), from.second());
        while date <= limit.date() {
            if self.months & (1 << date.month()) == 0 {
                date = first_of_next_month(date)?;
                start = (0, 0, 0);
                continue;
            }
            if self.day_matches(date)
                && let Some((h, m, s)) = self.time_in_day(start)
            {
                let t = date.and_hms_opt(h, m, s)?;
                return (t < limit).then_some(t);
            }
            date = date.checked_add_days(Days::new(1))?;
            start = (0, 0, 0);
        }
        None
    }

    /// First matching (hour, minute, second) at or after `start` within one day.
    fn time_in_day(&self, (h0, m0, s0): (u32, u32, u32)) -> Option<(u32, u32, u32)> {
        let mut h = next_bit(u64::from(self.hours), h0)?;
        loop {
            let m_from = if h == h0 { m0 } else { 0 };
            let mut m = next_bit(self.minutes, m_from);
            while let Some(min) = m {
                let s_from = if h == h0 && min == m0 { s0 } else { 0 };
                if let Some(s) = next_bit(self.seconds, s_from) {
                    return Some((h, min, s));
                }
                m = next_bit(self.minutes, min + 1);
            }
            h = next_bit(u64::from(self.hours), h + 1)?;
        }
    }
}

/// Lowest set bit at position `>= from`.
fn next_bit(mask: u64, from: u32) -> Option<u32> {
    if from >= 64 {
        return None;
    }
    let rest = mask >> from;
    (rest != 0).then(|| from + rest.trailing_zeros())
}

fn first_of_next_month(date: NaiveDate) -> Option<NaiveDate> {
    if date.month() == 12 {
        NaiveDate::from_ymd_opt(date.year().checked_add(1)?, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(date.year(), date.month() + 1, 1)
    }
}

/// Parses one comma-separated field into a bit mask.
fn parse_field(text: &str, kind: &FieldKind) -> Result<u64, String> {
    let mut mask = 0u64;
    for item in text.split(',') {
        mask |= parse_item(item, text, kind)?;
    }
    Ok(mask)
}

/// One list item: `*`, `?`, `a`, `a-b`, each optionally followed by `/step`.
fn parse_item(item: &str, field: &str, kind: &FieldKind) -> Result<u64, String> {
    let name = kind.name;
    if item.is_empty() {
        return Err(format!("{name} field '{field}' has an empty list item"));
    }
    let (range, step) = match item.split_once('/') {
        Some((range, step)) => {
            let step: u32 = step.parse().map_err(|_| {
                format!("{name} field '{field}': step '{step}' is not a positive number")
            })?;
            if step == 0 {
                return Err(format!("{name} field '{field}': step must be at least 1"));
            }
            (range, Some(step))
        }
        None => (item, None),
    };
    let day_field = kind.name == DOM.name || kind.name == DOW.name;
    let (lo, hi) = if range == "*" || (range == "?" && day_field) {
        (kind.min, kind.max)
    } else if range == "?" {
        return Err(format!(
            "{name} field '{field}': '?' is only accepted in the day fields"
        ));
    } else if let Some((a, b)) = range.split_once('-') {
        let (a, b) = (parse_value(a, field, kind)?, parse_value(b, field, kind)?);
        if a > b {
            return Err(format!(
                "{name} field '{field}': range {a}-{b} is backwards; write a-b with a <= b"
            ));
        }
        (a, b)
    } else {
        let a = parse_value(range, field, kind)?;
        // `a/n` means `a-max/n`, as in most crons.
        (a, if step.is_some() { kind.max } else { a })
    };
    let step = step.unwrap_or(1);
    let mut mask = 0u64;
    let mut v = lo;
    while v <= hi {
        mask |= 1 << v;
        match v.checked_add(step) {
            Some(next) => v = next,
            None => break,
        }
    }
    Ok(mask)
}

fn parse_value(text: &str, field: &str, kind: &FieldKind) -> Result<u32, String> {
    let name = kind.name;
    if let Ok(v) = text.parse::<u32>() {
        if v < kind.min || v > kind.max {
            return Err(format!(
                "{name} field '{text}' out of range {}-{}",
                kind.min, kind.max
            ));
        }
        return Ok(v);
    }
    if let Some(i) = kind.names.iter().position(|n| n.eq_ignore_ascii_case(text)) {
        return Ok(i as u32 + kind.names_base);
    }
    let accepted = match kind.names.first().zip(kind.names.last()) {
        Some((first, last)) => {
            format!(
                "a number {}-{} or a name {first}-{last}",
                kind.min, kind.max
            )
        }
        None => format!("a number {}-{}", kind.min, kind.max),
    };
    Err(format!(
        "{name} field '{field}': '{text}' is not {accepted}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wall(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").expect("test literal")
    }

    fn next(expr: &str, from: &str) -> Option<NaiveDateTime> {
        let c = CronExpr::parse(expr).expect("valid test expression");
        c.next_wall(wall(from), wall("2040-01-01 00:00:00"))
    }

    fn fires_in(expr: &str, zone: &str, after: &str, n: usize) -> Vec<String> {
        let c = CronExpr::parse(expr).expect("valid test expression");
        let tz: Tz = zone.parse().expect("test zone");
        let mut t = DateTime::parse_from_rfc3339(after)
            .expect("test literal")
            .with_timezone(&Utc);
        let mut out = Vec::new();
        while out.len() < n {
            let Some(next) = c.next_after(tz, t) else {
                break;
            };
            out.push(next.format("%Y-%m-%dT%H:%M:%SZ").to_string());
            t = next;
        }
        out
    }

    #[test]
    fn dst_new_york_daily() {
        // 2026-03-08 02:30 does not exist: fires once at 03:00 EDT.
        assert_eq!(
            fires_in("30 2 * * *", "America/New_York", "2026-03-07T00:00:00Z", 3),
            [
                "2026-03-07T07:30:00Z",
                "2026-03-08T07:00:00Z",
                "2026-03-09T06:30:00Z"
            ]
        );
        // 2026-11-01 02:30 exists once (EST).
        assert_eq!(
            fires_in("30 2 * * *", "America/New_York", "2026-10-31T12:00:00Z", 2),
            ["2026-11-01T07:30:00Z", "2026-11-02T07:30:00Z"]
        );
        // 01:30 occurs twice on 2026-11-01: fires at the first (EDT) only.
        assert_eq!(
            fires_in("30 1 * * *", "America/New_York", "2026-10-31T12:00:00Z", 2),
            ["2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"]
        );
        // Asked from inside the repeated hour, it does not fire the second time either.
        assert_eq!(
            fires_in("30 1 * * *", "America/New_York", "2026-11-01T06:10:00Z", 1),
            ["2026-11-02T06:30:00Z"]
        );
        // Several skipped matches collapse into one fire; repeated ones fire once.
        assert_eq!(
            fires_in(
                "*/15 2 * * *",
                "America/New_York",
                "2026-03-08T05:00:00Z",
                2
            ),
            ["2026-03-08T07:00:00Z", "2026-03-09T06:00:00Z"]
        );
        assert_eq!(
            fires_in(
                "*/30 1 * * *",
                "America/New_York",
                "2026-11-01T04:00:00Z",
                3
            ),
            [
                "2026-11-01T05:00:00Z",
                "2026-11-01T05:30:00Z",
                "2026-11-02T06:00:00Z"
            ]
        );
        // From the last second before the gap.
        assert_eq!(
            fires_in("30 2 * * *", "America/New_York", "2026-03-08T06:59:59Z", 1),
            ["2026-03-08T07:00:00Z"]
        );
    }

    #[test]
    fn dst_new_york_hourly() {
        // Spring: 01:00 EST, then 03:00 EDT (02:00 does not exist).
        assert_eq!(
            fires_in("0 * * * *", "America/New_York", "2026-03-08T05:30:00Z", 3),
            [
                "2026-03-08T06:00:00Z",
                "2026-03-08T07:00:00Z",
                "2026-03-08T08:00:00Z"
            ]
        );
        // Fall: 01:00 EDT and 01:00 EST are both real hours.
        assert_eq!(
            fires_in("0 * * * *", "America/New_York", "2026-11-01T04:30:00Z", 3),
            [
                "2026-11-01T05:00:00Z",
                "2026-11-01T06:00:00Z",
                "2026-11-01T07:00:00Z"
            ]
        );
        // Wildcard hour: a wall time inside the gap is not run (every real hour still is).
        assert_eq!(
            fires_in("30 * * * *", "America/New_York", "2026-03-08T06:00:00Z", 2),
            ["2026-03-08T06:30:00Z", "2026-03-08T07:30:00Z"]
        );
    }

    #[test]
    fn dst_berlin() {
        assert_eq!(
            fires_in("30 2 * * *", "Europe/Berlin", "2026-03-28T00:00:00Z", 3),
            [
                "2026-03-28T01:30:00Z",
                "2026-03-29T01:00:00Z",
                "2026-03-30T00:30:00Z"
            ]
        );
        // 02:30 occurs twice on 2026-10-25: once, at 02:30 CEST.
        assert_eq!(
            fires_in("30 2 * * *", "Europe/Berlin", "2026-10-24T12:00:00Z", 2),
            ["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"]
        );
        assert_eq!(
            fires_in("0 * * * *", "Europe/Berlin", "2026-03-28T23:30:00Z", 3),
            [
                "2026-03-29T00:00:00Z",
                "2026-03-29T01:00:00Z",
                "2026-03-29T02:00:00Z"
            ]
        );
        assert_eq!(
            fires_in("0 * * * *", "Europe/Berlin", "2026-10-24T23:30:00Z", 3),
            [
                "2026-10-25T00:00:00Z",
                "2026-10-25T01:00:00Z",
                "2026-10-25T02:00:00Z"
            ]
        );
    }

    #[test]
    fn fixed_time_fires_once_per_local_day_for_a_decade() {
        let cases = ["America/New_York", "Europe/Berlin", "Australia/Lord_Howe"]
            .into_iter()
            .flat_map(|zone| {
                ["30 2 * * *", "30 1 * * *", "0 2 * * *", "45 1 * * *"].map(|e| (zone, e))
            });
        for (zone, expr) in cases {
            let c = CronExpr::parse(expr).expect("valid test expression");
            let tz: Tz = zone.parse().expect("zone");
            let mut t = DateTime::from_timestamp(1_577_836_800, 0).expect("2020-01-01");
            let mut last_day: Option<NaiveDate> = None;
            for _ in 0..3653 {
                t = c.next_after(tz, t).expect("fires daily");
                let day = t.with_timezone(&tz).date_naive();
                if let Some(prev) = last_day {
                    assert_eq!(
                        day,
                        prev.succ_opt().expect("date"),
                        "{zone} {expr}: fire at {t}"
                    );
                }
                last_day = Some(day);
            }
        }
    }

    #[test]
    fn parses_every_syntax() {
        let c = CronExpr::parse("*/15 9-17 1,15 JAN-mar mon-FRI").expect("valid");
        assert_eq!(c.minutes, 1 | 1 << 15 | 1 << 30 | 1 << 45);
        assert_eq!(c.hours, (9..=17).fold(0, |m, h| m | 1 << h));
        assert_eq!(c.days_of_month, 1 << 1 | 1 << 15);
        assert_eq!(c.months, 0b1110);
        assert_eq!(c.days_of_week, 0b0111110);
        assert!(!c.dom_star && !c.dow_star && !c.hour_wild);
        let c = CronExpr::parse("0 10-20/5 * * 7").expect("valid");
        assert_eq!(c.hours, 1 << 10 | 1 << 15 | 1 << 20);
        assert_eq!(c.days_of_week, 1, "7 is Sunday");
        let c = CronExpr::parse("30 0 0 * * 5-7").expect("6 fields");
        assert_eq!(c.seconds, 1 << 30);
        assert_eq!(c.days_of_week, 1 | 1 << 5 | 1 << 6);
        assert_eq!(
            CronExpr::parse("0 5/6 * * *").expect("a/n").hours,
            1 << 5 | 1 << 11 | 1 << 17 | 1 << 23
        );
    }

    #[test]
    fn macros_expand() {
        for (m, e) in [
            ("@yearly", "0 0 1 1 *"),
            ("@ANNUALLY", "0 0 1 1 *"),
            ("@monthly", "0 0 1 * *"),
            ("@weekly", "0 0 * * 0"),
            ("@daily", "0 0 * * *"),
            ("@midnight", "0 0 * * *"),
            ("@hourly", "0 * * * *"),
        ] {
            assert_eq!(CronExpr::parse(m), CronExpr::parse(e), "{m}");
        }
    }

    #[test]
    fn rejects_bad_fields_with_a_reason() {
        for (expr, needle) in [
            ("61 * * * *", "minute field '61' out of range 0-59"),
            ("* 24 * * *", "hour field '24' out of range 0-23"),
            ("* * 0 * *", "day-of-month field '0' out of range 1-31"),
            ("* * * 13 *", "month field '13' out of range 1-12"),
            ("* * * * 8", "day-of-week field '8' out of range 0-7"),
            ("* * * FOO *", "not a number 1-12 or a name JAN-DEC"),
            ("* * * * 5-2", "backwards"),
            ("*/0 * * * *", "step must be at least 1"),
            ("1,,2 * * * *", "empty list item"),
            ("* * * *", "expected 5 fields"),
            ("@reboot", "unknown macro"),
            ("? * * * *", "only accepted in the day fields"),
        ] {
            let err = CronExpr::parse(expr).expect_err(expr);
            assert!(err.contains(needle), "{expr}: {err}");
        }
    }

    #[test]
    fn searches_wall_times() {
        assert_eq!(
            next("30 2 * * *", "2026-01-01 02:30:00"),
            Some(wall("2026-01-01 02:30:00"))
        );
        assert_eq!(
            next("30 2 * * *", "2026-01-01 02:30:01"),
            Some(wall("2026-01-02 02:30:00"))
        );
        assert_eq!(
            next("0 0 29 2 *", "2026-01-01 00:00:00"),
            Some(wall("2028-02-29 00:00:00"))
        );
        assert_eq!(next("0 0 30 2 *", "2026-01-01 00:00:00"), None);
        assert_eq!(
            next("@yearly", "2026-12-31 23:59:59"),
            Some(wall("2027-01-01 00:00:00"))
        );
        assert_eq!(
            next("*/20 * * * * *", "2026-01-01 10:59:41"),
            Some(wall("2026-01-01 11:00:00"))
        );
    }

    #[test]
    fn vixie_day_rule() {
        // Both restricted: the 13th OR any Friday. 2026-02-06 is a Friday.
        assert_eq!(
            next("0 0 13 * 5", "2026-02-01 00:00:00"),
            Some(wall("2026-02-06 00:00:00"))
        );
        // Day-of-week unrestricted: only the 13th.
        assert_eq!(
            next("0 0 13 * *", "2026-02-01 00:00:00"),
            Some(wall("2026-02-13 00:00:00"))
        );
        // `*/2` counts as unrestricted (Vixie's DOM_STAR), so both must match: an odd day
        // that is a Monday. 2026-02-09 is a Monday.
        assert_eq!(
            next("0 0 */2 * 1", "2026-02-01 00:00:00"),
            Some(wall("2026-02-09 00:00:00"))
        );
    }
}
