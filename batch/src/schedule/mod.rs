//! Schedules: when a periodic batch job fires. Pure logic — no I/O and no clock reads;
//! every instant is an argument, so the scheduler's loop (or a test) supplies `now`.
//!
//! A [`ScheduleSpec`] (what a user writes) is compiled once into a [`Schedule`], which
//! answers two questions: [`Schedule::next_after`] (when is the next fire?) and
//! [`Schedule::due`] (what must run now, after the scheduler was away from `last` to
//! `now`?). All instants are UTC at whole-second resolution; wall-clock rules are applied
//! in the schedule's IANA time zone (default `UTC`).
//!
//! # Syntaxes
//!
//! * **Cron** (Vixie): `minute hour day-of-month month day-of-week`, optionally preceded by
//!   a seconds field. `*`, `a,b`, `a-b`, `*/n`, `a-b/n`, `a/n` (= `a-max/n`), month names
//!   `JAN`-`DEC`, day names `SUN`-`SAT` (any case), day-of-week 0-7 (0 and 7 are Sunday),
//!   `?` as `*` in the day fields, and `@yearly @annually @monthly @weekly @daily
//!   @midnight @hourly`. If both day fields are restricted (neither begins with `*`), a day
//!   matches when *either* matches; otherwise both must (so `*/2` counts as unrestricted,
//!   as in Vixie cron).
//! * **ISO 8601 repeating interval** (Chronos): `R[n]/<start>/<period>`, e.g.
//!   `R/2026-01-01T00:00:00Z/PT1H`. `Rn` is n fires in total, the first at the start; `R`
//!   repeats forever. Years, months, weeks and days are calendar steps in the schedule's
//!   zone (a daily job keeps its wall time across DST); hours, minutes and seconds are
//!   absolute time. Fire k is computed from the start (no month-end drift). A start
//!   without an offset is a wall time in the zone. A start in the past is fine.
//!
//! # Daylight saving time (cron)
//!
//! Following Vixie cron (and Kubernetes CronJob, which runs in a zone the same way), the
//! rule depends on whether the hour field is a wildcard (begins with `*`):
//!
//! * **Specific hour** (`30 2 * * *`): each matching *wall time* fires exactly once.
//!   A wall time skipped by a spring-forward gap (02:30 on 2026-03-08 in New York) fires
//!   once at the first instant after the gap (03:00 EDT); several skipped matches collapse
//!   into that one fire. A wall time repeated by a fall-back (01:30 on 2026-11-01 in New
//!   York) fires once, at its first occurrence (EDT), never twice.
//! * **Wildcard hour** (`0 * * * *`, `*/5 * * * *`): the job follows *real* hours. Both
//!   occurrences of a repeated hour fire (01:00 EDT and 01:00 EST are different hours);
//!   wall times inside a gap are not run at all, because no real hour is lost: every hour
//!   that exists still fires.
//!
//! # Missed runs
//!
//! [`Schedule::due`] looks at the fire times in `(last, now]`. Exactly one is the normal
//! case (the scheduler woke up after a fire time) and is returned whatever the policy.
//! Two or more mean the scheduler missed at least one, and the [`MissedPolicy`] decides:
//! `Skip` returns none (resume at the next fire), `RunOnce` the latest, `RunAll` all of
//! them, oldest first — but at most the latest [`MAX_MISSED_RUNS`]; older ones are dropped,
//! so a caller may always advance its `last` to `now` (or to the last time returned).
//! A caller that wants its own notion of "on time" can call `due(.., RunAll)` and sort the
//! result itself.
//!
//! [`Schedule::next_after`] searches at most [`SEARCH_HORIZON_DAYS`] ahead; `compile`
//! rejects a cron expression with no match in five years (e.g. `0 0 30 2 *`), which is
//! enough to accept Feb 29 (`0 0 29 2 *`).

mod cron;
mod iso;

use std::collections::VecDeque;

use chrono::offset::LocalResult;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Offset, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use self::cron::CronExpr;
use self::iso::IsoInterval;

/// Most fire times [`Schedule::due`] returns at once.
pub const MAX_MISSED_RUNS: usize = 1000;
/// How far ahead [`Schedule::next_after`] looks (11 years: Feb 29 can be 8 years apart).
pub const SEARCH_HORIZON_DAYS: i64 = 11 * 366;
/// How far ahead `compile` looks for a first match of a cron expression.
const NEVER_FIRES_YEARS: i32 = 5;
/// Step when probing a zone's UTC offset for transitions. Two transitions closer than this
/// that cancel out would be missed; the tz database has none in modern times.
const OFFSET_PROBE_SECS: i64 = 6 * 3600;

/// A schedule the user wrote that cannot be compiled. Always the user's fault; retrying
/// the same input cannot help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("invalid {field}: {message}")]
    Invalid { field: String, message: String },
}

/// What a user writes: exactly one of `cron` and `iso`, a zone and the policies.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ScheduleSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iso: Option<String>,
    /// IANA zone name such as `Europe/Berlin`; `None` means `UTC`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    #[serde(default)]
    pub concurrency: ConcurrencyPolicy,
    #[serde(default)]
    pub missed: MissedPolicy,
}

/// What to do when a fire time comes while the previous run is still going.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConcurrencyPolicy {
    /// Start another run alongside.
    #[default]
    Allow,
    /// Skip this fire.
    Forbid,
    /// Kill the running one and start the new one.
    Replace,
}

/// What to do with fire times that passed while the scheduler was not running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MissedPolicy {
    /// Run none of the missed ones; resume at the next fire time.
    Skip,
    /// Run the latest missed one once.
    #[default]
    RunOnce,
    /// Run every missed fire time; past [`MAX_MISSED_RUNS`], only the latest that many.
    RunAll,
}

/// A compiled [`ScheduleSpec`].
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    kind: Kind,
    tz: Tz,
    concurrency: ConcurrencyPolicy,
    missed: MissedPolicy,
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Cron(CronExpr),
    Iso(IsoInterval),
}

impl ScheduleSpec {
    /// Validates and compiles. `field` prefixes the field names in errors: with
    /// `"schedule"`, a bad expression is reported as `schedule.cron`.
    pub fn compile(&self, field: &str) -> Result<Schedule, ScheduleError> {
        let name = |f: &str| {
            if field.is_empty() {
                f.to_string()
            } else {
                format!("{field}.{f}")
            }
        };
        let invalid = |f: &str, message: String| ScheduleError::Invalid {
            field: name(f),
            message,
        };
        let zone = self.timezone.as_deref().unwrap_or("UTC");
        let tz: Tz = zone.parse().map_err(|_| {
            invalid(
                "timezone",
                format!(
                    "unknown time zone '{zone}'; expected an IANA name such as UTC or Europe/Berlin"
                ),
            )
        })?;
        let kind = match (&self.cron, &self.iso) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "iso",
                    "cron and iso are both set; set exactly one".into(),
                ));
            }
            (None, None) => {
                return Err(invalid(
                    "cron",
                    "neither cron nor iso is set; set exactly one".into(),
                ));
            }
            (Some(text), None) => {
                let expr = CronExpr::parse(text).map_err(|m| invalid("cron", m))?;
                let from = NaiveDate::from_ymd_opt(2000, 1, 1).and_then(|d| d.and_hms_opt(0, 0, 0));
                let to = NaiveDate::from_ymd_opt(2000 + NEVER_FIRES_YEARS, 1, 2)
                    .and_then(|d| d.and_hms_opt(0, 0, 0));
                if from
                    .zip(to)
                    .and_then(|(from, to)| expr.next_wall(from, to))
                    .is_none()
                {
                    return Err(invalid(
                        "cron",
                        format!(
                            "'{text}' never fires (no matching date in {NEVER_FIRES_YEARS} years)"
                        ),
                    ));
                }
                Kind::Cron(expr)
            }
            (None, Some(text)) => {
                Kind::Iso(IsoInterval::parse(text, tz).map_err(|m| invalid("iso", m))?)
            }
        };
        Ok(Schedule {
            kind,
            tz,
            concurrency: self.concurrency,
            missed: self.missed,
        })
    }
}

impl Schedule {
    /// First fire time strictly after `after` (UTC), or None if it never fires again.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &self.kind {
            Kind::Cron(expr) => expr.next_after(self.tz, after),
            Kind::Iso(interval) => interval.next_after(self.tz, after),
        }
    }

    /// Fire times in (last, now], according to the missed policy given how many there are:
    /// what a scheduler that was down from `last` to `now` must run now. Returns at most
    /// [`MAX_MISSED_RUNS`], oldest first. See the module doc for the policies.
    pub fn due(
        &self,
        last: DateTime<Utc>,
        now: DateTime<Utc>,
        missed: MissedPolicy,
    ) -> Vec<DateTime<Utc>> {
        let next = |t: DateTime<Utc>| self.next_after(t).filter(|n| *n <= now);
        let Some(first) = next(last) else {
            return Vec::new();
        };
        if next(first).is_none() {
            return vec![first];
        }
        match missed {
            MissedPolicy::Skip => Vec::new(),
            MissedPolicy::RunOnce => self.latest_fires(last, now, 1),
            MissedPolicy::RunAll => self.latest_fires(last, now, MAX_MISSED_RUNS),
        }
    }

    /// The concurrency policy from the spec.
    pub fn concurrency(&self) -> ConcurrencyPolicy {
        self.concurrency
    }

    /// The missed-run policy from the spec (the usual argument to [`Schedule::due`]).
    pub fn missed(&self) -> MissedPolicy {
        self.missed
    }

    /// The zone wall-clock rules are applied in.
    pub fn timezone(&self) -> Tz {
        self.tz
    }

    /// The latest `cap` fire times in `(last, now]`, oldest first. Scans windows growing
    /// back from `now`, so a dense schedule after a long outage is not walked from `last`.
    fn latest_fires(
        &self,
        last: DateTime<Utc>,
        now: DateTime<Utc>,
        cap: usize,
    ) -> Vec<DateTime<Utc>> {
        let collect = |from: DateTime<Utc>| {
            let mut out = VecDeque::with_capacity(cap.min(MAX_MISSED_RUNS) + 1);
            let mut t = from;
            while let Some(n) = self.next_after(t).filter(|n| *n <= now) {
                out.push_back(n);
                if out.len() > cap {
                    out.pop_front();
                }
                t = n;
            }
            Vec::from(out)
        };
        let mut window = TimeDelta::seconds(1);
        loop {
            let Some(lo) = now.checked_sub_signed(window).filter(|lo| *lo > last) else {
                return collect(last);
            };
            let found = collect(lo);
            if found.len() >= cap {
                return found;
            }
            match window.checked_mul(4) {
                Some(w) => window = w,
                None => return collect(last),
            }
        }
    }
}

/// UTC offset of `tz` at Unix second `t`, in seconds.
fn offset_at(tz: Tz, t: i64) -> i64 {
    DateTime::from_timestamp(t, 0)
        .map(|u| {
            i64::from(
                tz.offset_from_utc_datetime(&u.naive_utc())
                    .fix()
                    .local_minus_utc(),
            )
        })
        .unwrap_or(0)
}

/// First second in `(lo, hi]` whose offset differs from `base`.
fn first_change(tz: Tz, lo: i64, hi: i64, base: i64) -> Option<i64> {
    let mut a = lo;
    while a < hi {
        let b = a.saturating_add(OFFSET_PROBE_SECS).min(hi);
        if offset_at(tz, b) != base {
            let (mut same, mut changed) = (a, b);
            while changed - same > 1 {
                let mid = same + (changed - same) / 2;
                if offset_at(tz, mid) == base {
                    same = mid
                } else {
                    changed = mid
                }
            }
            return Some(changed);
        }
        a = b;
    }
    None
}

fn wall_at(t: i64) -> Option<NaiveDateTime> {
    DateTime::from_timestamp(t, 0).map(|u| u.naive_utc())
}

/// The instant of a wall time in `tz`: the first occurrence if it is repeated, the first
/// instant after the gap if it was skipped.
fn resolve_wall(tz: Tz, wall: NaiveDateTime) -> Option<DateTime<Utc>> {
    match tz.from_local_datetime(&wall) {
        LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => Some(t.with_timezone(&Utc)),
        LocalResult::None => {
            // The transition lies within a day of the wall time read as UTC.
            let w = wall.and_utc().timestamp();
            let lo = w.checked_sub(86_400)?;
            let t = first_change(tz, lo, w.checked_add(86_400)?, offset_at(tz, lo))?;
            DateTime::from_timestamp(t, 0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("test literal")
            .with_timezone(&Utc)
    }

    fn cron(expr: &str, zone: &str) -> Schedule {
        let spec = ScheduleSpec {
            cron: Some(expr.into()),
            timezone: Some(zone.into()),
            ..Default::default()
        };
        spec.compile("schedule").expect("valid test schedule")
    }

    /// The first `n` fires after `after`, as RFC 3339 UTC strings.
    fn fires(s: &Schedule, after: &str, n: usize) -> Vec<String> {
        let mut out = Vec::new();
        let mut t = utc(after);
        while out.len() < n {
            let Some(next) = s.next_after(t) else { break };
            out.push(next.format("%Y-%m-%dT%H:%M:%SZ").to_string());
            t = next;
        }
        out
    }

    fn compile_err(spec: ScheduleSpec) -> (String, String) {
        match spec.compile("schedule") {
            Err(ScheduleError::Invalid { field, message }) => (field, message),
            Ok(s) => panic!("expected an error, compiled {s:?}"),
        }
    }

    #[test]
    fn compile_errors_name_the_field() {
        let cron = |c: &str| ScheduleSpec {
            cron: Some(c.into()),
            ..Default::default()
        };
        let (field, message) = compile_err(cron("61 * * * *"));
        assert_eq!(field, "schedule.cron");
        assert!(
            message.contains("minute field '61' out of range 0-59"),
            "{message}"
        );
        let (field, message) = compile_err(cron("0 0 30 2 *"));
        assert_eq!(field, "schedule.cron");
        assert!(message.contains("never fires"), "{message}");
        let (field, message) = compile_err(ScheduleSpec {
            iso: Some("R0/2026-01-01T00:00:00Z/PT1H".into()),
            ..Default::default()
        });
        assert_eq!(field, "schedule.iso");
        assert!(message.contains("never fires"), "{message}");
        let (field, message) = compile_err(ScheduleSpec {
            iso: Some("R/2026-01-01T00:00:00Z/P0D".into()),
            ..Default::default()
        });
        assert_eq!(field, "schedule.iso");
        assert!(message.contains("zero-length"), "{message}");
        let (field, _) = compile_err(ScheduleSpec {
            timezone: Some("Mars/Olympus".into()),
            ..cron("@daily")
        });
        assert_eq!(field, "schedule.timezone");
        let (field, _) = compile_err(ScheduleSpec::default());
        assert_eq!(field, "schedule.cron");
        let (field, message) = compile_err(ScheduleSpec {
            iso: Some("R/2026-01-01T00:00:00Z/PT1H".into()),
            ..cron("@daily")
        });
        assert_eq!(field, "schedule.iso");
        assert!(message.contains("exactly one"), "{message}");
        let err = cron("bad").compile("").expect_err("invalid");
        assert_eq!(err.to_string().split(':').next(), Some("invalid cron"));
        assert!(
            cron("0 0 29 2 *").compile("s").is_ok(),
            "Feb 29 fires in leap years"
        );
    }

    #[test]
    fn spec_serde_round_trip() {
        let spec: ScheduleSpec =
            serde_json::from_str(r#"{"cron":"@hourly","timezone":"Europe/Berlin","concurrency":"forbid","missed":"runall"}"#)
                .expect("valid json");
        assert_eq!(spec.concurrency, ConcurrencyPolicy::Forbid);
        assert_eq!(spec.missed, MissedPolicy::RunAll);
        let back: ScheduleSpec =
            serde_json::from_str(&serde_json::to_string(&spec).expect("ser")).expect("de");
        assert_eq!(back, spec);
        let minimal: ScheduleSpec =
            serde_json::from_str(r#"{"iso":"R/2026-01-01T00:00:00Z/PT1H"}"#).expect("de");
        assert_eq!(
            (minimal.concurrency, minimal.missed),
            (ConcurrencyPolicy::Allow, MissedPolicy::RunOnce)
        );
        let s = minimal.compile("s").expect("valid");
        assert_eq!(
            (s.timezone(), s.missed(), s.concurrency()),
            (Tz::UTC, MissedPolicy::RunOnce, ConcurrencyPolicy::Allow)
        );
    }

    #[test]
    fn next_after_simple() {
        let s = cron("*/15 * * * *", "UTC");
        assert_eq!(
            fires(&s, "2026-01-01T10:07:30Z", 2),
            ["2026-01-01T10:15:00Z", "2026-01-01T10:30:00Z"]
        );
        assert_eq!(
            fires(&s, "2026-01-01T10:15:00Z", 1),
            ["2026-01-01T10:30:00Z"],
            "strictly after"
        );
        let s = cron("30 0 0 * * MON", "UTC");
        assert_eq!(
            fires(&s, "2026-01-01T00:00:00Z", 1),
            ["2026-01-05T00:00:30Z"]
        );
        let s = cron("0 0 29 2 *", "UTC");
        assert_eq!(
            fires(&s, "2096-03-01T00:00:00Z", 1),
            ["2104-02-29T00:00:00Z"]
        );
        let s = cron("0 9 * * *", "Asia/Tokyo");
        assert_eq!(
            fires(&s, "2026-01-01T00:00:00Z", 1),
            ["2026-01-02T00:00:00Z"]
        );
    }

    #[test]
    fn due_by_policy() {
        let s = cron("0 * * * *", "UTC");
        let (last, t) = (utc("2026-01-01T00:00:00Z"), utc);
        for policy in [
            MissedPolicy::Skip,
            MissedPolicy::RunOnce,
            MissedPolicy::RunAll,
        ] {
            assert!(s.due(last, t("2026-01-01T00:59:59Z"), policy).is_empty());
            // One fire in (last, now] is on time, whatever the policy.
            assert_eq!(
                s.due(last, t("2026-01-01T01:00:00Z"), policy),
                [t("2026-01-01T01:00:00Z")]
            );
            assert_eq!(
                s.due(last, t("2026-01-01T01:59:00Z"), policy),
                [t("2026-01-01T01:00:00Z")]
            );
        }
        let now = t("2026-01-01T03:30:00Z");
        assert!(s.due(last, now, MissedPolicy::Skip).is_empty());
        assert_eq!(
            s.due(last, now, MissedPolicy::RunOnce),
            [t("2026-01-01T03:00:00Z")]
        );
        assert_eq!(
            s.due(last, now, MissedPolicy::RunAll),
            [
                t("2026-01-01T01:00:00Z"),
                t("2026-01-01T02:00:00Z"),
                t("2026-01-01T03:00:00Z")
            ]
        );
        // The fire at `last` itself is not due again.
        assert!(
            s.due(
                t("2026-01-01T01:00:00Z"),
                t("2026-01-01T01:00:00Z"),
                MissedPolicy::RunAll
            )
            .is_empty()
        );
    }

    #[test]
    fn due_caps_and_scales() {
        let s = cron("* * * * * *", "UTC");
        let last = utc("2026-01-01T00:00:00Z");
        let now = utc("2026-01-08T00:00:00Z");
        let all = s.due(last, now, MissedPolicy::RunAll);
        assert_eq!(all.len(), MAX_MISSED_RUNS);
        assert_eq!(
            all[0],
            now - TimeDelta::seconds(999),
            "the latest 1000 are kept"
        );
        assert_eq!(all[999], now);
        assert!(all.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(s.due(last, now, MissedPolicy::RunOnce), [now]);
        // A sparse schedule after a long outage: the latest one is found.
        let s = cron("0 0 1 1 *", "Europe/Berlin");
        let got = s.due(
            utc("2000-06-01T00:00:00Z"),
            utc("2026-06-01T00:00:00Z"),
            MissedPolicy::RunOnce,
        );
        assert_eq!(got, [utc("2025-12-31T23:00:00Z")]);
        let iso = ScheduleSpec {
            iso: Some("R3/2026-01-01T00:00:00Z/PT1H".into()),
            ..Default::default()
        };
        let iso = iso.compile("s").expect("valid");
        assert_eq!(
            iso.due(
                utc("2025-01-01T00:00:00Z"),
                utc("2027-01-01T00:00:00Z"),
                MissedPolicy::RunAll
            )
            .len(),
            3
        );
        assert_eq!(
            iso.due(
                utc("2025-01-01T00:00:00Z"),
                utc("2027-01-01T00:00:00Z"),
                MissedPolicy::RunOnce
            ),
            [utc("2026-01-01T02:00:00Z")]
        );
    }

    const EXPRS: [&str; 10] = [
        "* * * * *",
        "0 * * * *",
        "30 2 * * *",
        "*/15 1-3 * * *",
        "0 0 29 2 *",
        "0 12 13 * FRI",
        "15 30 */2 * * *",
        "@weekly",
        "R/2026-01-01T00:30:00Z/PT1H",
        "R/2020-01-31T02:30:00/P1M",
    ];
    const ZONES: [&str; 5] = [
        "UTC",
        "America/New_York",
        "Europe/Berlin",
        "Australia/Lord_Howe",
        "Asia/Kolkata",
    ];

    fn schedule_of(expr: usize, zone: usize) -> Schedule {
        let text = EXPRS[expr].to_string();
        let spec = if text.starts_with('R') {
            ScheduleSpec {
                iso: Some(text),
                ..Default::default()
            }
        } else {
            ScheduleSpec {
                cron: Some(text),
                ..Default::default()
            }
        };
        ScheduleSpec {
            timezone: Some(ZONES[zone].into()),
            ..spec
        }
        .compile("p")
        .expect("valid")
    }

    fn instant() -> impl Strategy<Value = DateTime<Utc>> {
        (946_684_800i64..2_208_988_800)
            .prop_map(|s| DateTime::from_timestamp(s, 0).expect("in range"))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Never at or before the asked instant; never different for equal inputs; never
        /// out of order for ordered inputs; nothing ever fires between `t` and `next(t)`.
        #[test]
        fn next_after_is_strict_monotone_and_deterministic(
            e in 0..EXPRS.len(), z in 0..ZONES.len(), t1 in instant(), t2 in instant(), frac in 0.0f64..1.0,
        ) {
            let s = schedule_of(e, z);
            let (lo, hi) = if t1 <= t2 { (t1, t2) } else { (t2, t1) };
            let (a, b) = (s.next_after(lo), s.next_after(hi));
            prop_assert_eq!(a, s.clone().next_after(lo));
            if let Some(a) = a {
                prop_assert!(a > lo);
                let inside = lo + TimeDelta::seconds(((a - lo).num_seconds() as f64 * frac) as i64);
                prop_assert_eq!(s.next_after(inside), Some(a));
            }
            if let (Some(a), Some(b)) = (a, b) {
                prop_assert!(a <= b);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(12))]

        /// A thousand consecutive fires never repeat an instant.
        #[test]
        fn next_after_never_repeats(e in 0..EXPRS.len(), z in 0..ZONES.len(), t in instant()) {
            let s = schedule_of(e, z);
            let mut prev = t;
            for _ in 0..1000 {
                let Some(next) = s.next_after(prev) else { break };
                prop_assert!(next > prev, "{} then {}", prev, next);
                prev = next;
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// `due` never returns a time outside (last, now], out of order or over the cap,
        /// and never leaves out the latest fire for `RunOnce`.
        #[test]
        fn due_stays_in_the_window(
            e in 0..EXPRS.len(), z in 0..ZONES.len(), last in instant(), span in 0i64..40 * 86_400,
        ) {
            let s = schedule_of(e, z);
            let now = last + TimeDelta::seconds(span);
            let all = s.due(last, now, MissedPolicy::RunAll);
            let once = s.due(last, now, MissedPolicy::RunOnce);
            let skip = s.due(last, now, MissedPolicy::Skip);
            prop_assert!(all.len() <= MAX_MISSED_RUNS);
            prop_assert!(all.iter().all(|t| *t > last && *t <= now));
            prop_assert!(all.windows(2).all(|w| w[0] < w[1]));
            if all.len() < MAX_MISSED_RUNS {
                let mut walked = Vec::new();
                let mut t = last;
                while let Some(n) = s.next_after(t).filter(|n| *n <= now) {
                    walked.push(n);
                    t = n;
                }
                prop_assert_eq!(&walked, &all);
            }
            if all.len() <= 1 {
                prop_assert_eq!(&once, &all);
                prop_assert_eq!(&skip, &all);
            } else {
                prop_assert!(skip.is_empty());
                prop_assert_eq!(once.len(), 1);
                prop_assert_eq!(once[0], all[all.len() - 1]);
                prop_assert!(s.next_after(once[0]).is_none_or(|n| n > now));
            }
        }

        /// Whatever the input, compile returns a value or an error; it never panics.
        #[test]
        fn compile_never_panics(
            cron in "[0-9*/,A-Za-z?@ -]{0,30}",
            iso in "[Rr]?[0-9]{0,3}/[0-9T:Z+-]{0,25}/P[0-9YMWDTHS]{0,10}",
            after in instant(),
        ) {
            for spec in [
                ScheduleSpec { cron: Some(cron.clone()), ..Default::default() },
                ScheduleSpec { iso: Some(iso.clone()), ..Default::default() },
            ] {
                if let Ok(s) = spec.compile("p") {
                    let _ = s.next_after(after);
                }
            }
        }
    }
}
