//! `why`: the scheduler's own reasons a job is not (fully) running, with Slurm's reason
//! codes where one exists. The CLI adds the master allocator's reasons for the job's queue.

use serde_json::{Value, json};

use crate::core::{Core, DepStatus, task_resources};
use crate::error::{Error, Result};
use crate::model::{JobState, Millis, TaskState};
use crate::spec::JobId;

fn reason(code: &str, message: String) -> Value {
    json!({ "code": code, "message": message })
}

/// Reasons for job `id`, as `{id, state, queue, reasons: [{code, message}]}`.
pub fn explain(core: &Core, id: JobId, now: Millis) -> Result<Value> {
    let j = core.get(id).ok_or(Error::UnknownJob(id))?;
    let mut reasons = Vec::new();
    match j.state {
        s if s.is_terminal() => reasons.push(reason(
            "Ended",
            format!(
                "it ended {}{}",
                s.as_str(),
                j.reason
                    .as_ref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            ),
        )),
        JobState::Scheduled => {
            let next = j
                .spec
                .schedule
                .as_ref()
                .and_then(|s| s.compile("schedule").ok())
                .and_then(|c| {
                    let after = chrono::DateTime::from_timestamp_millis(now)?;
                    c.next_after(after)
                });
            reasons.push(reason(
                if j.held { "JobHeldUser" } else { "Schedule" },
                match next {
                    Some(t) if !j.held => {
                        format!("a schedule; it next starts a job at {}", t.to_rfc3339())
                    }
                    Some(t) => format!(
                        "a held schedule; released, it would next fire at {}",
                        t.to_rfc3339()
                    ),
                    None => "a schedule that will not fire again".into(),
                },
            ));
        }
        _ => {
            if j.held {
                reasons.push(reason(
                    "JobHeldUser",
                    format!("held; `tessera batch release {id}` lets it start"),
                ));
            }
            if j.cancel_requested {
                reasons.push(reason(
                    "Cancelling",
                    "being cancelled; its tasks are being killed".into(),
                ));
            }
            match core.dep_status(j) {
                DepStatus::Satisfied => {}
                DepStatus::Waiting(on) => {
                    let st = core.get(on).map(|d| d.state.as_str()).unwrap_or("UNKNOWN");
                    reasons.push(reason(
                        "Dependency",
                        format!("waiting for job {on} to end (it is {st})"),
                    ));
                }
                DepStatus::Never(on) => reasons.push(reason(
                    "DependencyNeverSatisfied",
                    format!("job {on} ended in a state the dependency excludes"),
                )),
            }
            let waiting = j.tasks.iter().filter(|t| t.state.is_waiting()).count();
            let active = j.tasks.iter().filter(|t| t.state.is_active()).count();
            if let Some(cap) = j.spec.array.as_ref().and_then(|a| a.cap)
                && waiting > 0
                && active >= cap as usize
            {
                reasons.push(reason(
                    "JobArrayTaskLimit",
                    format!("{active} tasks running, the array's limit (%{cap}); {waiting} wait their turn"),
                ));
            }
            if let Some(t) = j
                .tasks
                .iter()
                .filter(|t| t.state == TaskState::Backoff)
                .filter_map(|t| t.not_before.map(|nb| (t, nb)))
                .filter(|(_, nb)| *nb > now)
                .min_by_key(|(_, nb)| *nb)
            {
                reasons.push(reason(
                    "BeginTime",
                    format!(
                        "task {} failed ({} of {} retries used); it retries in {:.1} s",
                        t.0.index,
                        t.0.failures,
                        j.spec.retries,
                        (t.1 - now) as f64 / 1000.0
                    ),
                ));
            }
            let blocked =
                j.held || j.cancel_requested || core.dep_status(j) != DepStatus::Satisfied;
            if waiting > 0 && !blocked && reasons.is_empty() {
                let need = task_resources(&j.spec)
                    .map(|r| r.to_string())
                    .unwrap_or_default();
                let ahead = core
                    .live_jobs()
                    .filter(|o| {
                        o.id != id && matches!(o.state, JobState::Pending | JobState::Running)
                    })
                    .filter(|o| o.spec.priority > j.spec.priority && o.spec.queue == j.spec.queue)
                    .filter(|o| o.tasks.iter().any(|t| t.state.is_waiting()))
                    .count();
                if ahead > 0 {
                    reasons.push(reason(
                        "Priority",
                        format!(
                            "{ahead} job(s) of higher priority in queue {} go first",
                            j.spec.queue
                        ),
                    ));
                }
                reasons.push(match core.largest_recent_offer(now) {
                    Some((cpus, mem)) if cpus < j.spec.cpus || mem < j.spec.mem_mb => reason(
                        "Resources",
                        format!(
                            "each task needs {need}; the largest offer in the last minute had cpus {cpus}, mem {mem} MB — no agent has had that much free"
                        ),
                    ),
                    Some(_) => reason(
                        "Resources",
                        format!("each task needs {need}; waiting for the next offer with room"),
                    ),
                    None => reason(
                        "Resources",
                        format!(
                            "each task needs {need}; no offer in the last minute (the cluster is busy or queue '{}' gets no share; see the allocator reasons)",
                            j.spec.queue
                        ),
                    ),
                });
            }
        }
    }
    Ok(json!({
        "id": id.0,
        "state": j.state.as_str(),
        "queue": j.spec.queue,
        "reasons": reasons,
    }))
}
