//! Registry recovery at start-up, as seen from outside the actor. The listener serves from
//! the moment it is bound, while the registry is still being read; until it has been, the
//! v1 APIs (`/api/v1/scheduler`, `/api/v1`) answer 503 "Master has not finished recovery"
//! (Mesos, `Master::Http::scheduler` check 3). Agents admitted before a restart that have not
//! re-registered yet do not hold recovery up: as in Mesos, recovery ends when the registry is
//! loaded, and those agents stay "recovered" until they come back or time out.

use tokio::sync::watch;

use crate::error::{MasterError, Result};

/// Where recovery stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecoveryState {
    /// The registry is being read; the v1 APIs answer 503.
    Recovering,
    /// The registry is loaded and the actor runs.
    Recovered,
    /// The registry could not be read; the master will not serve (the reason says why).
    Failed(String),
}

/// A cheap, cloneable view of the recovery state.
#[derive(Debug, Clone)]
pub struct Recovery(watch::Receiver<RecoveryState>);

impl Recovery {
    /// A recovery in progress, and the sender that reports how it ends.
    pub fn start() -> (watch::Sender<RecoveryState>, Recovery) {
        let (tx, rx) = watch::channel(RecoveryState::Recovering);
        (tx, Recovery(rx))
    }

    /// A master whose registry is already loaded.
    pub fn done() -> Recovery {
        let (_tx, rx) = watch::channel(RecoveryState::Recovered);
        Recovery(rx)
    }

    pub fn state(&self) -> RecoveryState {
        self.0.borrow().clone()
    }

    pub fn is_recovered(&self) -> bool {
        matches!(*self.0.borrow(), RecoveryState::Recovered)
    }

    /// Waits until recovery ends: `Ok` once recovered, the registry error if it failed,
    /// [`MasterError::Stopped`] if the recovering task went away without saying.
    pub async fn wait(&self) -> Result<()> {
        let mut rx = self.0.clone();
        loop {
            match &*rx.borrow_and_update() {
                RecoveryState::Recovered => return Ok(()),
                RecoveryState::Failed(why) => return Err(MasterError::Registry(why.clone())),
                RecoveryState::Recovering => {}
            }
            if rx.changed().await.is_err() {
                // The sender is gone; its last word may still be news.
                return match &*rx.borrow() {
                    RecoveryState::Recovered => Ok(()),
                    RecoveryState::Failed(why) => Err(MasterError::Registry(why.clone())),
                    RecoveryState::Recovering => Err(MasterError::Stopped),
                };
            }
        }
    }
}
