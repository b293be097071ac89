//! Mesos v1 `HealthCheck` ↔ [`HealthCheck`]: the `*_seconds` doubles become milliseconds
//! here, once; `type` must be given with its sub-message, as Mesos requires.

use tessera_types::{CommandInfo, HealthCheck, HealthProbe};

use super::convert::command_from_v1;
use super::v1;
use crate::convert::{Result, WireError};

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> WireError {
    tessera_types::Error::invalid(field, reason).into()
}

/// Largest duration accepted (about 31 years), so milliseconds never overflow.
const MAX_SECONDS: f64 = 1.0e9;

fn millis(field: String, seconds: Option<f64>, default_ms: u64) -> Result<u64> {
    match seconds {
        None => Ok(default_ms),
        Some(s) if !s.is_finite() || s < 0.0 => {
            Err(invalid(field, format!("{s} must be a non-negative number")))
        }
        Some(s) if s > MAX_SECONDS => Err(invalid(field, format!("{s} is too large"))),
        Some(s) => Ok((s * 1000.0).round() as u64),
    }
}

fn ipv4_only(field: String, protocol: Option<i32>) -> Result<()> {
    match protocol.map(v1::network_info::Protocol::try_from) {
        None | Some(Ok(v1::network_info::Protocol::IPv4)) => Ok(()),
        Some(Ok(v1::network_info::Protocol::IPv6)) => {
            Err(invalid(field, "IPv6 health checks are not supported"))
        }
        Some(Err(_)) => Err(invalid(field, "unknown protocol")),
    }
}

/// Validates a v1 health check (`field` is e.g. `…task_infos[0].health_check`).
pub fn health_check_from_v1(field: &str, h: &v1::HealthCheck) -> Result<HealthCheck> {
    use v1::health_check::Type;
    let kind = match h.r#type.map(Type::try_from) {
        None => return Err(WireError::Missing(format!("{field}.type"))),
        Some(Ok(t)) if t != Type::Unknown => t,
        Some(_) => {
            return Err(invalid(
                format!("{field}.type"),
                "must be COMMAND, HTTP or TCP",
            ));
        }
    };
    let probe = match kind {
        Type::Command => {
            let c = h
                .command
                .as_ref()
                .ok_or_else(|| WireError::Missing(format!("{field}.command")))?;
            HealthProbe::Command {
                command: command_from_v1(&format!("{field}.command"), c)?,
            }
        }
        Type::Http => {
            let x = h
                .http
                .as_ref()
                .ok_or_else(|| WireError::Missing(format!("{field}.http")))?;
            ipv4_only(format!("{field}.http.protocol"), x.protocol)?;
            HealthProbe::Http {
                port: x.port,
                path: x.path.clone(),
                scheme: x.scheme.clone(),
            }
        }
        Type::Tcp => {
            let x = h
                .tcp
                .as_ref()
                .ok_or_else(|| WireError::Missing(format!("{field}.tcp")))?;
            ipv4_only(format!("{field}.tcp.protocol"), x.protocol)?;
            HealthProbe::Tcp { port: x.port }
        }
        Type::Unknown => unreachable!("rejected above"),
    };
    let check = HealthCheck {
        probe,
        delay_ms: millis(
            format!("{field}.delay_seconds"),
            h.delay_seconds,
            HealthCheck::DEFAULT_DELAY_MS,
        )?,
        interval_ms: millis(
            format!("{field}.interval_seconds"),
            h.interval_seconds,
            HealthCheck::DEFAULT_INTERVAL_MS,
        )?,
        timeout_ms: millis(
            format!("{field}.timeout_seconds"),
            h.timeout_seconds,
            HealthCheck::DEFAULT_TIMEOUT_MS,
        )?,
        grace_period_ms: millis(
            format!("{field}.grace_period_seconds"),
            h.grace_period_seconds,
            HealthCheck::DEFAULT_GRACE_PERIOD_MS,
        )?,
        consecutive_failures: h
            .consecutive_failures
            .unwrap_or(HealthCheck::DEFAULT_CONSECUTIVE_FAILURES),
    };
    check.validate(field)?;
    Ok(check)
}

/// The v1 form of a command (value, shell, arguments, environment, user, URIs).
pub fn command_info_to_v1(c: &CommandInfo) -> v1::CommandInfo {
    let environment = (!c.environment.is_empty()).then(|| v1::Environment {
        variables: c
            .environment
            .iter()
            .map(|(k, v)| v1::environment::Variable {
                name: k.clone(),
                value: Some(v.clone()),
                ..Default::default()
            })
            .collect(),
    });
    v1::CommandInfo {
        value: (!c.value.is_empty()).then(|| c.value.clone()),
        shell: Some(c.shell),
        arguments: c.arguments.clone(),
        environment,
        user: c.user.clone(),
        uris: c
            .uris
            .iter()
            .map(|u| v1::command_info::Uri {
                value: u.value.clone(),
                executable: Some(u.executable),
                extract: Some(u.extract),
                cache: Some(u.cache),
                output_file: u.output_file.clone(),
            })
            .collect(),
    }
}

/// The v1 form of a health check, for frameworks and operator views.
pub fn health_check_to_v1(h: &HealthCheck) -> v1::HealthCheck {
    use v1::health_check::Type;
    let secs = |ms: u64| Some(ms as f64 / 1000.0);
    let mut out = v1::HealthCheck {
        delay_seconds: secs(h.delay_ms),
        interval_seconds: secs(h.interval_ms),
        timeout_seconds: secs(h.timeout_ms),
        grace_period_seconds: secs(h.grace_period_ms),
        consecutive_failures: Some(h.consecutive_failures),
        ..Default::default()
    };
    match &h.probe {
        HealthProbe::Command { command } => {
            out.r#type = Some(Type::Command as i32);
            out.command = Some(command_info_to_v1(command));
        }
        HealthProbe::Http { port, path, scheme } => {
            out.r#type = Some(Type::Http as i32);
            out.http = Some(v1::health_check::HttpCheckInfo {
                port: *port,
                path: path.clone(),
                scheme: scheme.clone(),
                ..Default::default()
            });
        }
        HealthProbe::Tcp { port } => {
            out.r#type = Some(Type::Tcp as i32);
            out.tcp = Some(v1::health_check::TcpCheckInfo {
                port: *port,
                ..Default::default()
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(port: u32) -> v1::HealthCheck {
        v1::HealthCheck {
            r#type: Some(v1::health_check::Type::Http as i32),
            http: Some(v1::health_check::HttpCheckInfo {
                port,
                path: Some("/health".into()),
                ..Default::default()
            }),
            interval_seconds: Some(0.2),
            ..Default::default()
        }
    }

    #[test]
    fn round_trips_with_mesos_defaults() {
        let h = health_check_from_v1("hc", &http(8080)).unwrap();
        assert_eq!(h.interval_ms, 200);
        assert_eq!(h.delay_ms, HealthCheck::DEFAULT_DELAY_MS);
        assert_eq!(h.consecutive_failures, 3);
        assert_eq!(
            health_check_from_v1("hc", &health_check_to_v1(&h)).unwrap(),
            h
        );
        let c = HealthCheck::new(HealthProbe::Command {
            command: CommandInfo::shell("true"),
        });
        assert_eq!(
            health_check_from_v1("hc", &health_check_to_v1(&c)).unwrap(),
            c
        );
    }

    #[test]
    fn bad_checks_name_the_field() {
        let err = |h: &v1::HealthCheck| health_check_from_v1("task.health_check", h).unwrap_err();
        assert!(
            err(&http(0))
                .to_string()
                .contains("task.health_check.http.port")
        );
        assert!(
            err(&http(70_000))
                .to_string()
                .contains("task.health_check.http.port")
        );
        let mut h = http(80);
        h.http = None;
        assert!(err(&h).to_string().contains("task.health_check.http"));
        let mut h = http(80);
        h.r#type = Some(v1::health_check::Type::Tcp as i32);
        assert!(err(&h).to_string().contains("task.health_check.tcp"));
        let mut h = http(80);
        h.r#type = None;
        assert!(err(&h).to_string().contains("task.health_check.type"));
        let mut h = http(80);
        h.timeout_seconds = Some(-1.0);
        assert!(
            err(&h)
                .to_string()
                .contains("task.health_check.timeout_seconds")
        );
        let mut h = http(80);
        h.grace_period_seconds = Some(f64::NAN);
        assert!(err(&h).to_string().contains("grace_period_seconds"));
        let mut h = http(80);
        h.http.as_mut().unwrap().path = Some("health".into());
        assert!(err(&h).to_string().contains("task.health_check.http.path"));
        let mut h = http(80);
        h.r#type = Some(v1::health_check::Type::Command as i32);
        assert!(err(&h).to_string().contains("task.health_check.command"));
    }
}
