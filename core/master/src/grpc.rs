//! The agent-facing gRPC service: each `Attach` stream becomes a connection id whose
//! messages are fed to the actor in order; the actor answers through a [`GrpcLink`].

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};

use tessera_api::pb;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::actor::Command;
use crate::link::GrpcLink;

/// Messages queued towards one agent before the link counts as broken.
pub const AGENT_LINK_QUEUE: usize = 8192;

pub struct AgentService {
    tx: mpsc::Sender<Command>,
    next_conn: AtomicU64,
}

impl AgentService {
    pub fn new(tx: mpsc::Sender<Command>) -> Self {
        AgentService {
            tx,
            next_conn: AtomicU64::new(1),
        }
    }
}

type OutStream = Pin<Box<dyn Stream<Item = Result<pb::MasterMessage, Status>> + Send>>;

#[tonic::async_trait]
impl pb::agent_service_server::AgentService for AgentService {
    type AttachStream = OutStream;

    async fn attach(
        &self,
        request: Request<Streaming<pb::AgentMessage>>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        let conn = self.next_conn.fetch_add(1, Ordering::Relaxed);
        // Served through axum, tonic's own remote_addr is empty: the address comes from
        // axum's connection info.
        let peer = request.remote_addr().or_else(|| {
            request
                .extensions()
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0)
        });
        let mut inbound = request.into_inner();
        let (out_tx, out_rx) = mpsc::channel(AGENT_LINK_QUEUE);
        self.tx
            .send(Command::AgentAttached {
                conn,
                link: Box::new(GrpcLink(out_tx)),
                peer: peer.map(|p| p.ip()),
            })
            .await
            .map_err(|_| Status::unavailable("the master is shutting down"))?;
        let tx = self.tx.clone();
        tokio::spawn(async move {
            tracing::debug!(conn, ?peer, "agent stream attached");
            loop {
                match inbound.message().await {
                    Ok(Some(msg)) => {
                        if tx.send(Command::AgentMessage { conn, msg }).await.is_err() {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::debug!(conn, error = %e, "agent stream error");
                        break;
                    }
                }
            }
            let _ = tx.send(Command::AgentDetached { conn }).await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(out_rx))))
    }
}
