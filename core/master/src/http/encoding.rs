//! Content negotiation for the v1 APIs (Mesos rules, made lenient where that only widens
//! compatibility: parameters and case in `Content-Type` are ignored).

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Json,
    Protobuf,
}

pub const JSON: &str = "application/json";
pub const PROTOBUF: &str = "application/x-protobuf";

impl Encoding {
    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Json => JSON,
            Encoding::Protobuf => PROTOBUF,
        }
    }
}

pub fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    let mut m = msg.into();
    if !m.ends_with('\n') {
        m.push('\n');
    }
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        m,
    )
        .into_response()
}

/// The body's encoding from `Content-Type`: missing → 400, unsupported → 415.
pub fn request_encoding(headers: &HeaderMap) -> Result<Encoding, Response> {
    let Some(v) = headers.get(header::CONTENT_TYPE) else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "Expecting 'Content-Type' to be present",
        ));
    };
    let t = v
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match t.as_str() {
        JSON => Ok(Encoding::Json),
        PROTOBUF => Ok(Encoding::Protobuf),
        _ => Err(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Expecting 'Content-Type' of {JSON} or {PROTOBUF}, got '{t}'"),
        )),
    }
}

/// The response encoding from every `Accept` header: none → JSON; JSON preferred when
/// acceptable; protobuf when only it is; neither → 406.
pub fn response_encoding(headers: &HeaderMap) -> Result<Encoding, Response> {
    let mut any = false;
    let (mut json, mut proto) = (false, false);
    for v in headers.get_all(header::ACCEPT) {
        for part in v.to_str().unwrap_or("").split(',') {
            let t = part
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if t.is_empty() {
                continue;
            }
            any = true;
            match t.as_str() {
                JSON | "application/*" | "*/*" => json = true,
                PROTOBUF => proto = true,
                _ => {}
            }
        }
    }
    if !any || json {
        Ok(Encoding::Json)
    } else if proto {
        Ok(Encoding::Protobuf)
    } else {
        Err(error(
            StatusCode::NOT_ACCEPTABLE,
            format!("Expecting 'Accept' to allow {JSON} or {PROTOBUF}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, HeaderValue::from_static(v));
        }
        m
    }

    #[test]
    fn content_type_rules() {
        assert_eq!(
            request_encoding(&h(&[("content-type", "application/json")])).ok(),
            Some(Encoding::Json)
        );
        assert_eq!(
            request_encoding(&h(&[("content-type", "Application/JSON; charset=utf-8")])).ok(),
            Some(Encoding::Json)
        );
        assert_eq!(
            request_encoding(&h(&[("content-type", "application/x-protobuf")])).ok(),
            Some(Encoding::Protobuf)
        );
        assert_eq!(
            request_encoding(&h(&[])).unwrap_err().status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            request_encoding(&h(&[("content-type", "text/plain")]))
                .unwrap_err()
                .status(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
    }

    #[test]
    fn accept_rules() {
        assert_eq!(response_encoding(&h(&[])).ok(), Some(Encoding::Json));
        assert_eq!(
            response_encoding(&h(&[
                ("accept", "application/json"),
                ("accept", "application/json")
            ]))
            .ok(),
            Some(Encoding::Json)
        );
        assert_eq!(
            response_encoding(&h(&[("accept", "application/x-protobuf")])).ok(),
            Some(Encoding::Protobuf)
        );
        assert_eq!(
            response_encoding(&h(&[("accept", "*/*")])).ok(),
            Some(Encoding::Json)
        );
        assert_eq!(
            response_encoding(&h(&[("accept", "text/html")]))
                .unwrap_err()
                .status(),
            StatusCode::NOT_ACCEPTABLE
        );
    }
}
