//! Firing schedules: at each fire time a schedule starts a new job from its template, under
//! its concurrency policy. The schedule's `last_fire` moves in the same transaction as the
//! jobs it starts, so a restart neither misses nor repeats a fire.
//!
//! Fires within [`ON_TIME_MS`] of `now` are on time; older ones were missed (the scheduler
//! was down) and the missed policy decides: `skip` runs none of them, `runonce` runs the
//! latest once, `runall` runs each (at most 1000).

use chrono::{DateTime, Utc};

use crate::core::Core;
use crate::model::{JobState, Millis};
use crate::schedule::{ConcurrencyPolicy, MissedPolicy};
use crate::spec::JobId;

/// A fire this close to `now` is on time rather than missed.
pub const ON_TIME_MS: Millis = 60_000;

fn to_dt(ms: Millis) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or(DateTime::UNIX_EPOCH)
}

/// Which of the due fire times to run, given the missed policy.
pub fn select_fires(due: &[Millis], now: Millis, missed: MissedPolicy) -> Vec<Millis> {
    let (old, on_time): (Vec<Millis>, Vec<Millis>) =
        due.iter().partition(|t| now - **t > ON_TIME_MS);
    let mut out = match missed {
        MissedPolicy::Skip => vec![],
        MissedPolicy::RunOnce if on_time.is_empty() => old.last().copied().into_iter().collect(),
        MissedPolicy::RunOnce => vec![],
        MissedPolicy::RunAll => old,
    };
    out.extend(on_time);
    out
}

impl Core {
    pub(crate) fn fire_schedules(&mut self, now: Millis) {
        let schedules: Vec<JobId> = self
            .live_jobs()
            .filter(|j| j.state == JobState::Scheduled && !j.held && !j.cancel_requested)
            .map(|j| j.id)
            .collect();
        for id in schedules {
            let Some(job) = self.get(id) else { continue };
            let Some(spec) = job.spec.schedule.clone() else {
                continue;
            };
            let Ok(compiled) = spec.compile("schedule") else {
                continue;
            };
            let last = job.last_fire.unwrap_or(job.submitted_at);
            let due: Vec<Millis> = compiled
                .due(to_dt(last), to_dt(now), MissedPolicy::RunAll)
                .iter()
                .map(|t| t.timestamp_millis())
                .collect();
            let Some(&latest) = due.last() else { continue };
            let template = {
                let mut t = job.spec.clone();
                t.schedule = None;
                t
            };
            for fire in select_fires(&due, now, spec.missed) {
                let active: Vec<JobId> = self
                    .live_jobs()
                    .filter(|j| j.parent == Some(id))
                    .map(|j| j.id)
                    .collect();
                match spec.concurrency {
                    ConcurrencyPolicy::Forbid if !active.is_empty() => {
                        tracing::info!(schedule = %id, "skipping a fire: the previous run is still active (forbid)");
                        continue;
                    }
                    ConcurrencyPolicy::Replace => {
                        for a in active {
                            self.kill_for_replace(a, now);
                        }
                    }
                    _ => {}
                }
                let mut child = template.clone();
                child.env.insert(
                    "TESSERA_SCHEDULED_AT".into(),
                    to_dt(fire).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                );
                let child_id = self.add_child(id, child, now);
                tracing::info!(schedule = %id, job = %child_id, "schedule fired");
            }
            if let Some(j) = self.jobs_mut().get_mut(&id) {
                j.last_fire = Some(latest);
            }
            self.mark_job(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missed_policies() {
        let now = 1_000_000;
        let due = [now - 300_000, now - 200_000, now - 1_000];
        assert_eq!(
            select_fires(&due, now, MissedPolicy::Skip),
            vec![now - 1_000]
        );
        assert_eq!(
            select_fires(&due, now, MissedPolicy::RunOnce),
            vec![now - 1_000]
        );
        assert_eq!(select_fires(&due, now, MissedPolicy::RunAll), due.to_vec());
        let missed_only = [now - 300_000, now - 200_000];
        assert_eq!(
            select_fires(&missed_only, now, MissedPolicy::RunOnce),
            vec![now - 200_000]
        );
        assert!(select_fires(&missed_only, now, MissedPolicy::Skip).is_empty());
    }
}
