//! When the next allocation run is due: a periodic tick every `interval`, or sooner,
//! `event_delay` after an event. Events coalesce: however many arrive before the run,
//! there is one run, at the earliest time any of them asked for.

use std::time::Duration;
use tessera_types::Time;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    interval: Duration,
    event_delay: Duration,
    last_run: Option<Time>,
    pending: Option<Time>,
}

impl Batch {
    pub fn new(interval: Duration, event_delay: Duration) -> Self {
        Batch {
            interval,
            event_delay,
            last_run: None,
            pending: None,
        }
    }

    /// Something happened at `now` that new offers may follow from.
    pub fn event(&mut self, now: Time) {
        let at = now.plus(self.event_delay);
        self.pending = Some(self.pending.map_or(at, |p| p.min(at)));
    }

    /// A run happened at `now`.
    pub fn ran(&mut self, now: Time) {
        self.last_run = Some(now);
        self.pending = None;
    }

    /// The earlier of the pending event run and the next periodic tick; `None` before the
    /// first run when nothing happened yet.
    pub fn next_run(&self) -> Option<Time> {
        let tick = self.last_run.map(|t| t.plus(self.interval));
        match (self.pending, tick) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coalesces_and_ticks() {
        let mut b = Batch::new(Duration::from_secs(1), Duration::from_millis(20));
        assert_eq!(b.next_run(), None);
        b.event(Time::from_millis(100));
        b.event(Time::from_millis(105));
        b.event(Time::from_millis(110));
        assert_eq!(b.next_run(), Some(Time::from_millis(120)));
        b.ran(Time::from_millis(120));
        assert_eq!(b.next_run(), Some(Time::from_millis(1120)));
        b.event(Time::from_millis(1110));
        assert_eq!(b.next_run(), Some(Time::from_millis(1120)));
        b.event(Time::from_millis(500));
        assert_eq!(b.next_run(), Some(Time::from_millis(520)));
    }
}
