//! The master's side of an agent connection, as a trait: the gRPC stream in production, a
//! recording fake in tests (and simulated agents later).

use std::sync::{Arc, Mutex};

use tessera_api::pb;

/// Sends messages to one connected agent. `send` never blocks; `false` means the link is
/// gone (or too far behind) and the master should treat the agent as disconnected.
pub trait AgentLink: Send {
    fn send(&self, msg: pb::MasterMessage) -> bool;
}

/// gRPC implementation: a bounded queue drained by the response stream.
pub struct GrpcLink(pub tokio::sync::mpsc::Sender<Result<pb::MasterMessage, tonic::Status>>);

impl AgentLink for GrpcLink {
    fn send(&self, msg: pb::MasterMessage) -> bool {
        self.0.try_send(Ok(msg)).is_ok()
    }
}

/// Records everything sent, for tests.
#[derive(Clone, Default)]
pub struct RecordingLink {
    pub sent: Arc<Mutex<Vec<pb::MasterMessage>>>,
    pub broken: Arc<std::sync::atomic::AtomicBool>,
}

impl RecordingLink {
    pub fn take(&self) -> Vec<pb::MasterMessage> {
        std::mem::take(&mut *self.sent.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl AgentLink for RecordingLink {
    fn send(&self, msg: pb::MasterMessage) -> bool {
        if self.broken.load(std::sync::atomic::Ordering::SeqCst) {
            return false;
        }
        self.sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(msg);
        true
    }
}
