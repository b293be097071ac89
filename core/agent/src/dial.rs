//! How the agent reaches its master: TCP to `config.master` by default, or a
//! caller-supplied in-memory byte stream ([`Dialer`], used by [`crate::run_with_dialer`]).
//!
//! The in-memory path exists for tests under a paused tokio clock. There, a runtime whose
//! tasks all wait on socket readiness counts as idle: it polls the I/O driver once without
//! blocking and then advances virtual time to the next timer in the same park, so every
//! message hop over a real socket can let the clock leap (to a heartbeat, a keepalive, a
//! retry) before the bytes are read. A [`tokio::io::DuplexStream`] wakes its reader
//! directly from the writer's task, so no hop goes through the I/O driver and virtual
//! time moves only when nothing at all is left to do.

use std::io;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use tokio::io::DuplexStream;
use tonic::codegen::Service;
use tonic::codegen::http::Uri;
use tonic::transport::{Channel, Endpoint};

use crate::launcher::BoxFuture;

/// Opens one new byte stream to the master per call; the agent speaks HTTP/2 (gRPC) over
/// it exactly as over TCP.
#[derive(Clone)]
pub struct Dialer(Arc<dyn Fn() -> BoxFuture<'static, io::Result<DuplexStream>> + Send + Sync>);

impl Dialer {
    pub fn new(
        dial: impl Fn() -> BoxFuture<'static, io::Result<DuplexStream>> + Send + Sync + 'static,
    ) -> Self {
        Dialer(Arc::new(dial))
    }
}

impl std::fmt::Debug for Dialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Dialer")
    }
}

/// The [`Dialer`] as the connector tonic wants; the URI is ignored.
#[derive(Clone)]
struct DialService(Dialer);

impl Service<Uri> for DialService {
    type Response = TokioIo<DuplexStream>;
    type Error = io::Error;
    type Future = BoxFuture<'static, io::Result<TokioIo<DuplexStream>>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let dial = (self.0.0)();
        Box::pin(async move { dial.await.map(TokioIo::new) })
    }
}

/// A channel to the master: through `dialer` when given, else TCP to the endpoint's address.
/// Either way the endpoint's timeouts and HTTP/2 settings apply.
pub(crate) async fn connect(
    endpoint: &Endpoint,
    dialer: Option<&Dialer>,
) -> Result<Channel, tonic::transport::Error> {
    match dialer {
        None => endpoint.connect().await,
        Some(d) => {
            endpoint
                .connect_with_connector(DialService(d.clone()))
                .await
        }
    }
}
