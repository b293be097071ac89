//! Job specifications: the submission form (JSON body or TOML job file, everything the CLI
//! flags can say) and its validated, normalised form that the scheduler stores and runs.
//!
//! Validation names the offending field (`mem`, `array`, `dependency[1]`…) and says what is
//! accepted, so `tessera batch submit` can print an error a user can act on.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::schedule::ScheduleSpec;

/// Largest number of tasks one array job may have.
pub const MAX_ARRAY_TASKS: usize = 100_000;

/// A job id: a positive integer, as in Slurm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub u64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A number or a string with a unit (`2G`, `10m`), as users write quantities.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Quantity {
    Number(f64),
    Text(String),
}

/// What a user submits. Unknown fields are rejected (a misspelt `memory =` in a job file
/// must not be silently ignored).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobRequest {
    /// `--job-name`; defaults to the program's name.
    pub name: Option<String>,
    /// A shell command line, run with `sh -c`.
    pub command: Option<String>,
    /// A program and its arguments, run without a shell (`-- CMD ARGS…`).
    #[serde(default)]
    pub args: Vec<String>,
    /// A script's text, run with `sh -c` (what `sbatch script.sh` submits).
    pub script: Option<String>,
    pub cpus: Option<f64>,
    /// Megabytes, or with a unit: `512M`, `2G`.
    pub mem: Option<Quantity>,
    pub disk: Option<Quantity>,
    pub gpus: Option<f64>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// URIs the agent fetches into the sandbox before the command starts.
    #[serde(default)]
    pub uris: Vec<String>,
    /// A Docker image to run the command in.
    pub image: Option<String>,
    /// How many times a failed task is retried.
    pub retries: Option<u32>,
    /// First retry delay (doubles per retry): seconds or `30s`, `2m`.
    pub backoff: Option<Quantity>,
    /// Cap on the retry delay.
    pub backoff_max: Option<Quantity>,
    /// Time limit (Slurm forms `MM`, `MM:SS`, `HH:MM:SS`, `D-HH[:MM[:SS]]`, or `10m`, `1h30m`).
    pub time: Option<Quantity>,
    /// `0-999%50`, `1,3,5-7`, `0-15:4`.
    pub array: Option<String>,
    /// `afterok:12:13,afterany:14,afternotok:15`.
    pub dependency: Option<String>,
    pub priority: Option<i32>,
    /// The queue, mapped to a Mesos role.
    pub queue: Option<String>,
    /// The submitting user (the CLI fills in `$USER`).
    pub user: Option<String>,
    /// Submit held (`sbatch -H`): it waits for `release`.
    #[serde(default)]
    pub hold: bool,
    /// Run on a schedule instead of once.
    pub schedule: Option<ScheduleSpec>,
}

/// How the task's command runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Command {
    Shell(String),
    Exec(Vec<String>),
}

/// Dependency kinds, with Slurm's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DepKind {
    /// Start after the job completed successfully (every array task).
    AfterOk,
    /// Start after the job ended, whatever its state.
    AfterAny,
    /// Start after the job failed (or timed out or was cancelled).
    AfterNotOk,
}

impl DepKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DepKind::AfterOk => "afterok",
            DepKind::AfterAny => "afterany",
            DepKind::AfterNotOk => "afternotok",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dependency {
    pub kind: DepKind,
    pub job: JobId,
}

/// An array's indices (sorted, distinct) and how many may run at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArraySpec {
    /// The normalised text form, e.g. `0-999%50`.
    pub text: String,
    pub indices: Vec<u32>,
    pub cap: Option<u32>,
}

/// A validated job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    pub name: String,
    pub command: Command,
    pub cpus: f64,
    pub mem_mb: f64,
    pub disk_mb: f64,
    pub gpus: f64,
    pub env: BTreeMap<String, String>,
    pub uris: Vec<String>,
    pub image: Option<String>,
    pub retries: u32,
    pub backoff_ms: u64,
    pub backoff_max_ms: u64,
    pub time_limit_ms: Option<u64>,
    pub array: Option<ArraySpec>,
    pub dependencies: Vec<Dependency>,
    pub priority: i32,
    pub queue: String,
    pub user: String,
    pub schedule: Option<ScheduleSpec>,
}

/// Defaults and limits a job is validated against.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Queues this scheduler serves; the first is the default.
    pub queues: Vec<String>,
    pub default_cpus: f64,
    pub default_mem_mb: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            queues: vec!["batch".into()],
            default_cpus: 1.0,
            default_mem_mb: 128.0,
        }
    }
}

fn bad(field: &str, message: impl Into<String>) -> Error {
    Error::Invalid {
        field: field.to_string(),
        message: message.into(),
    }
}

impl JobRequest {
    /// Validates and normalises. Dependencies are checked for syntax only; whether the jobs
    /// exist is the scheduler's check.
    pub fn validate(&self, limits: &Limits) -> Result<JobSpec> {
        let given = [
            self.command.is_some(),
            !self.args.is_empty(),
            self.script.is_some(),
        ];
        let command = match (&self.command, self.args.is_empty(), &self.script) {
            _ if given.iter().filter(|g| **g).count() > 1 => {
                return Err(bad(
                    "command",
                    "give exactly one of `command` (a shell line), `args` (a program and its arguments) or `script`",
                ));
            }
            (Some(c), true, None) if !c.trim().is_empty() => Command::Shell(c.clone()),
            (None, false, None) if !self.args[0].is_empty() => Command::Exec(self.args.clone()),
            (None, true, Some(s)) if !s.trim().is_empty() => Command::Shell(s.clone()),
            _ => {
                return Err(bad(
                    "command",
                    "is empty: give a command (`-- CMD ARGS…`, `--wrap 'shell line'` or a script)",
                ));
            }
        };
        let name = match &self.name {
            Some(n) if n.trim().is_empty() => return Err(bad("name", "is empty")),
            Some(n) if n.len() > 256 => return Err(bad("name", "is longer than 256 bytes")),
            Some(n) if n.chars().any(char::is_control) => {
                return Err(bad("name", "contains control characters"));
            }
            Some(n) => n.clone(),
            None => default_name(&command),
        };
        let cpus = positive("cpus", self.cpus.unwrap_or(limits.default_cpus), false)?;
        let mem_mb = match &self.mem {
            Some(q) => positive("mem", parse_megabytes("mem", q)?, false)?,
            None => limits.default_mem_mb,
        };
        let disk_mb = match &self.disk {
            Some(q) => positive("disk", parse_megabytes("disk", q)?, true)?,
            None => 0.0,
        };
        let gpus = positive("gpus", self.gpus.unwrap_or(0.0), true)?;
        if gpus.fract() != 0.0 {
            return Err(bad("gpus", "must be a whole number"));
        }
        for k in self.env.keys() {
            if k.is_empty() || k.contains('=') || k.contains('\0') {
                return Err(bad(
                    &format!("env.{k}"),
                    "is not a valid variable name (empty, or contains '=' or NUL)",
                ));
            }
        }
        for (i, u) in self.uris.iter().enumerate() {
            if u.trim().is_empty() {
                return Err(bad(&format!("uris[{i}]"), "is empty"));
            }
        }
        if let Some(img) = &self.image
            && (img.trim().is_empty() || img.chars().any(char::is_whitespace))
        {
            return Err(bad(
                "image",
                "must be an image reference such as `busybox:1.36`",
            ));
        }
        let retries = self.retries.unwrap_or(0);
        if retries > 100 {
            return Err(bad("retries", "at most 100"));
        }
        let backoff_ms = match &self.backoff {
            Some(q) => parse_duration_ms("backoff", q)?,
            None => 1_000,
        };
        let backoff_max_ms = match &self.backoff_max {
            Some(q) => parse_duration_ms("backoff_max", q)?,
            None => 300_000,
        };
        if backoff_max_ms < backoff_ms {
            return Err(bad("backoff_max", "must not be smaller than `backoff`"));
        }
        let time_limit_ms = match &self.time {
            Some(q) => {
                let ms = parse_duration_ms("time", q)?;
                if ms == 0 {
                    return Err(bad("time", "must be longer than zero"));
                }
                Some(ms)
            }
            None => None,
        };
        let array = match &self.array {
            Some(a) => Some(parse_array("array", a)?),
            None => None,
        };
        let dependencies = match &self.dependency {
            Some(d) if !d.trim().is_empty() => parse_dependency("dependency", d)?,
            _ => vec![],
        };
        let queue = match &self.queue {
            Some(q) if limits.queues.iter().any(|x| x == q) => q.clone(),
            Some(q) => {
                return Err(bad(
                    "queue",
                    format!(
                        "unknown queue '{q}'; this scheduler serves: {}",
                        limits.queues.join(", ")
                    ),
                ));
            }
            None => limits
                .queues
                .first()
                .cloned()
                .ok_or_else(|| bad("queue", "no queue is configured"))?,
        };
        let user = match &self.user {
            Some(u)
                if u.is_empty()
                    || u.len() > 64
                    || u.chars().any(|c| c.is_whitespace() || c.is_control()) =>
            {
                return Err(bad(
                    "user",
                    "must be a user name (no spaces, at most 64 bytes)",
                ));
            }
            Some(u) => u.clone(),
            None => "nobody".into(),
        };
        if let Some(s) = &self.schedule {
            s.compile("schedule").map_err(|e| match e {
                crate::schedule::ScheduleError::Invalid { field, message } => {
                    Error::Invalid { field, message }
                }
            })?;
            if array.is_some() {
                return Err(bad("schedule", "an array job cannot also have a schedule"));
            }
        }
        Ok(JobSpec {
            name,
            command,
            cpus,
            mem_mb,
            disk_mb,
            gpus,
            env: self.env.clone(),
            uris: self.uris.clone(),
            image: self.image.clone(),
            retries,
            backoff_ms,
            backoff_max_ms,
            time_limit_ms,
            array,
            dependencies,
            priority: self.priority.unwrap_or(0),
            queue,
            user,
            schedule: self.schedule.clone(),
        })
    }
}

fn default_name(c: &Command) -> String {
    let first = match c {
        Command::Shell(s) => s.split_whitespace().next().unwrap_or("job").to_string(),
        Command::Exec(a) => a.first().cloned().unwrap_or_else(|| "job".into()),
    };
    let base = first.rsplit('/').next().unwrap_or("job");
    let base: String = base.chars().take(64).collect();
    if base.is_empty() { "job".into() } else { base }
}

fn positive(field: &str, v: f64, zero_ok: bool) -> Result<f64> {
    if !v.is_finite() || v < 0.0 || (!zero_ok && v == 0.0) {
        let what = if zero_ok {
            "zero or more"
        } else {
            "more than zero"
        };
        return Err(bad(
            field,
            format!("must be a finite number, {what} (got {v})"),
        ));
    }
    if v > 1e12 {
        return Err(bad(field, format!("{v} is too large")));
    }
    Ok(v)
}

/// `512`, `512M`, `2G`, `1.5G`, `1T`, `100K` (Slurm's units; a bare number is megabytes).
pub fn parse_megabytes(field: &str, q: &Quantity) -> Result<f64> {
    let text = match q {
        Quantity::Number(n) => return Ok(*n),
        Quantity::Text(t) => t.trim(),
    };
    let (num, mult) = match text.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m = match c.to_ascii_uppercase() {
                'K' => 1.0 / 1024.0,
                'M' => 1.0,
                'G' => 1024.0,
                'T' => 1024.0 * 1024.0,
                _ => {
                    return Err(bad(
                        field,
                        format!("unknown unit in '{text}'; use K, M, G or T (e.g. 512M, 2G)"),
                    ));
                }
            };
            (&text[..i], m)
        }
        _ => (text, 1.0),
    };
    let n: f64 = num.trim().parse().map_err(|_| {
        bad(
            field,
            format!("'{text}' is not a size; use megabytes or a unit (512M, 2G)"),
        )
    })?;
    Ok(n * mult)
}

/// Slurm time forms (`MM`, `MM:SS`, `HH:MM:SS`, `D-HH`, `D-HH:MM`, `D-HH:MM:SS`) or unit
/// forms (`90s`, `10m`, `1h30m`, `2d`); a bare number is minutes (Slurm) unless given as a
/// JSON number, which is seconds.
pub fn parse_duration_ms(field: &str, q: &Quantity) -> Result<u64> {
    let text = match q {
        Quantity::Number(n) if n.is_finite() && *n >= 0.0 && *n < 1e10 => {
            return Ok((n * 1000.0).round() as u64);
        }
        Quantity::Number(n) => return Err(bad(field, format!("{n} is not a duration"))),
        Quantity::Text(t) => t.trim(),
    };
    let err = || {
        bad(
            field,
            format!(
                "'{text}' is not a duration; use 10m, 1h30m, 90s, MM:SS, HH:MM:SS or D-HH:MM:SS"
            ),
        )
    };
    if text.is_empty() {
        return Err(err());
    }
    let secs: u64 = if text.chars().any(|c| c.is_ascii_alphabetic()) {
        let mut total = 0u64;
        let mut num = String::new();
        for c in text.chars() {
            if c.is_ascii_digit() {
                num.push(c);
                continue;
            }
            let n: u64 = num.parse().map_err(|_| err())?;
            num.clear();
            let unit = match c {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                'd' => 86_400,
                _ => return Err(err()),
            };
            total = total
                .checked_add(n.checked_mul(unit).ok_or_else(err)?)
                .ok_or_else(err)?;
        }
        if !num.is_empty() {
            return Err(err());
        }
        total
    } else {
        let (days, rest) = match text.split_once('-') {
            Some((d, r)) => (Some(d.parse::<u64>().map_err(|_| err())?), r),
            None => (None, text),
        };
        let parts: Vec<u64> = rest
            .split(':')
            .map(|p| p.parse::<u64>().map_err(|_| err()))
            .collect::<Result<_>>()?;
        let (h, m, s) = match (days, parts.as_slice()) {
            (None, [m]) => (0, *m, 0),
            (None, [m, s]) => (0, *m, *s),
            (None, [h, m, s]) => (*h, *m, *s),
            (Some(_), [h]) => (*h, 0, 0),
            (Some(_), [h, m]) => (*h, *m, 0),
            (Some(_), [h, m, s]) => (*h, *m, *s),
            _ => return Err(err()),
        };
        days.unwrap_or(0) * 86_400 + h * 3600 + m * 60 + s
    };
    secs.checked_mul(1000).ok_or_else(err)
}

/// `0-999%50`, `1,3,5-7`, `0-15:4`, `7`.
pub fn parse_array(field: &str, text: &str) -> Result<ArraySpec> {
    let text = text.trim();
    let (list, cap) = match text.split_once('%') {
        Some((l, c)) => {
            let cap: u32 = c.parse().map_err(|_| {
                bad(
                    field,
                    format!("'%{c}' is not a concurrency cap; use e.g. 0-99%10"),
                )
            })?;
            if cap == 0 {
                return Err(bad(
                    field,
                    "the concurrency cap after '%' must be at least 1",
                ));
            }
            (l, Some(cap))
        }
        None => (text, None),
    };
    let err = |part: &str| {
        bad(
            field,
            format!("'{part}' is not an index, a range (0-99) or a stepped range (0-99:2)"),
        )
    };
    let mut indices = Vec::new();
    for part in list.split(',') {
        let part = part.trim();
        let (range, step) = match part.split_once(':') {
            Some((r, s)) => (r, s.parse::<u32>().map_err(|_| err(part))?),
            None => (part, 1),
        };
        if step == 0 {
            return Err(err(part));
        }
        let (lo, hi) = match range.split_once('-') {
            Some((a, b)) => (
                a.trim().parse::<u32>().map_err(|_| err(part))?,
                b.trim().parse::<u32>().map_err(|_| err(part))?,
            ),
            None => {
                let v = range.trim().parse::<u32>().map_err(|_| err(part))?;
                (v, v)
            }
        };
        if lo > hi {
            return Err(bad(field, format!("range '{part}' runs backwards")));
        }
        let mut i = lo;
        loop {
            indices.push(i);
            if indices.len() > MAX_ARRAY_TASKS {
                return Err(bad(
                    field,
                    format!("more than {MAX_ARRAY_TASKS} tasks; split the array"),
                ));
            }
            match i.checked_add(step) {
                Some(n) if n <= hi => i = n,
                _ => break,
            }
        }
    }
    indices.sort_unstable();
    indices.dedup();
    Ok(ArraySpec {
        text: text.to_string(),
        indices,
        cap,
    })
}

/// `afterok:12:13,afterany:14`. Slurm's `?` (any of) is not supported.
pub fn parse_dependency(field: &str, text: &str) -> Result<Vec<Dependency>> {
    if text.contains('?') {
        return Err(bad(
            field,
            "'?' (any of) is not supported; list dependencies separated by ',' (all of)",
        ));
    }
    let mut out = Vec::new();
    for part in text.split(',') {
        let part = part.trim();
        let mut it = part.split(':');
        let kind = match it.next().unwrap_or("") {
            "afterok" => DepKind::AfterOk,
            "afterany" => DepKind::AfterAny,
            "afternotok" => DepKind::AfterNotOk,
            other => {
                return Err(bad(
                    field,
                    format!(
                        "unknown dependency type '{other}'; use afterok, afterany or afternotok"
                    ),
                ));
            }
        };
        let mut any = false;
        for id in it {
            let id: u64 = id
                .trim()
                .parse()
                .map_err(|_| bad(field, format!("'{id}' in '{part}' is not a job id")))?;
            any = true;
            out.push(Dependency {
                kind,
                job: JobId(id),
            });
        }
        if !any {
            return Err(bad(
                field,
                format!(
                    "'{part}' names no job; write {}:JOBID[:JOBID…]",
                    kind.as_str()
                ),
            ));
        }
    }
    Ok(out)
}

/// Renders dependencies back to Slurm's text form.
pub fn dependency_text(deps: &[Dependency]) -> String {
    deps.iter()
        .map(|d| format!("{}:{}", d.kind.as_str(), d.job))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(cmd: &str) -> JobRequest {
        JobRequest {
            command: Some(cmd.into()),
            ..Default::default()
        }
    }

    #[test]
    fn defaults_and_names() {
        let s = req("/bin/echo hi").validate(&Limits::default()).unwrap();
        assert_eq!(s.name, "echo");
        assert_eq!(s.cpus, 1.0);
        assert_eq!(s.queue, "batch");
        assert_eq!(s.command, Command::Shell("/bin/echo hi".into()));
    }

    #[test]
    fn quantities() {
        let q = |s: &str| Quantity::Text(s.into());
        assert_eq!(parse_megabytes("mem", &q("2G")).unwrap(), 2048.0);
        assert_eq!(parse_megabytes("mem", &q("512")).unwrap(), 512.0);
        assert!(
            parse_megabytes("mem", &q("2X"))
                .unwrap_err()
                .to_string()
                .contains("unit")
        );
        assert_eq!(parse_duration_ms("time", &q("10m")).unwrap(), 600_000);
        assert_eq!(parse_duration_ms("time", &q("1h30m")).unwrap(), 5_400_000);
        assert_eq!(parse_duration_ms("time", &q("10")).unwrap(), 600_000);
        assert_eq!(parse_duration_ms("time", &q("1:30")).unwrap(), 90_000);
        assert_eq!(
            parse_duration_ms("time", &q("1-02:00:00")).unwrap(),
            93_600_000
        );
        assert_eq!(
            parse_duration_ms("time", &Quantity::Number(2.5)).unwrap(),
            2_500
        );
        assert!(parse_duration_ms("time", &q("ten")).is_err());
    }

    #[test]
    fn arrays() {
        let a = parse_array("array", "0-999%50").unwrap();
        assert_eq!(a.indices.len(), 1000);
        assert_eq!(a.cap, Some(50));
        assert_eq!(
            parse_array("array", "1,3,5-7").unwrap().indices,
            vec![1, 3, 5, 6, 7]
        );
        assert_eq!(
            parse_array("array", "0-15:4").unwrap().indices,
            vec![0, 4, 8, 12]
        );
        assert!(parse_array("array", "5-1").is_err());
        assert!(parse_array("array", "0-9%0").is_err());
        assert!(parse_array("array", "0-4000000000").is_err());
    }

    #[test]
    fn dependencies() {
        let d = parse_dependency("dependency", "afterok:12:13,afterany:14").unwrap();
        assert_eq!(d.len(), 3);
        assert_eq!(dependency_text(&d), "afterok:12,afterok:13,afterany:14");
        assert!(parse_dependency("dependency", "after:1").is_err());
        assert!(parse_dependency("dependency", "afterok").is_err());
        assert!(parse_dependency("dependency", "afterok:1?afterok:2").is_err());
    }

    #[test]
    fn bad_input_names_the_field() {
        let l = Limits::default();
        let field = |r: JobRequest| match r.validate(&l) {
            Err(Error::Invalid { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(field(JobRequest::default()), "command");
        assert_eq!(
            field(JobRequest {
                cpus: Some(-1.0),
                ..req("x")
            }),
            "cpus"
        );
        assert_eq!(
            field(JobRequest {
                cpus: Some(f64::NAN),
                ..req("x")
            }),
            "cpus"
        );
        assert_eq!(
            field(JobRequest {
                queue: Some("nope".into()),
                ..req("x")
            }),
            "queue"
        );
        assert_eq!(
            field(JobRequest {
                gpus: Some(0.5),
                ..req("x")
            }),
            "gpus"
        );
        let mut two = req("x");
        two.args = vec!["y".into()];
        assert_eq!(field(two), "command");
    }

    #[test]
    fn toml_job_files_reject_unknown_fields() {
        let ok: JobRequest = toml::from_str("command = 'echo'\nmem = '2G'\ncpus = 0.5\n").unwrap();
        assert_eq!(ok.validate(&Limits::default()).unwrap().mem_mb, 2048.0);
        let e = toml::from_str::<JobRequest>("command = 'echo'\nmemory = '2G'\n").unwrap_err();
        assert!(e.to_string().contains("memory"), "{e}");
    }
}
