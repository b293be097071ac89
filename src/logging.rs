//! Installs the tracing subscriber (only the binary does this): stderr in text or JSON, and
//! optionally a copy in a log file.

use std::path::Path;

use anyhow::{Context, Result};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::cli::LogFormat;

pub struct Guard;

pub fn init(filter: &str, format: LogFormat, file: Option<&Path>) -> Result<Guard> {
    let filter = EnvFilter::try_new(filter).with_context(|| {
        format!("log: '{filter}' is not a valid filter (try `info` or `debug`)")
    })?;
    let stderr = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .boxed_layer(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .boxed_layer(),
    };
    let file_layer = match file {
        Some(path) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("log file: cannot open {}", path.display()))?;
            Some(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::sync::Mutex::new(f)),
            )
        }
        None => None,
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(stderr)
        .with(file_layer)
        .try_init()
        .context("logging: a subscriber is already installed")?;
    Ok(Guard)
}

trait BoxedLayer<S> {
    fn boxed_layer(self) -> Box<dyn tracing_subscriber::Layer<S> + Send + Sync>;
}

impl<S, L> BoxedLayer<S> for L
where
    L: tracing_subscriber::Layer<S> + Send + Sync + 'static,
    S: tracing::Subscriber,
{
    fn boxed_layer(self) -> Box<dyn tracing_subscriber::Layer<S> + Send + Sync> {
        Box::new(self)
    }
}
