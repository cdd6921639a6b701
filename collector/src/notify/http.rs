//! A small HTTP/1.1 POST client for webhook deliveries (http and https),
//! built on hyper's connection API and the process's rustls provider.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// What the receiver answered.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpOutcome {
    pub status: u16,
    /// `Retry-After` in seconds, when given as a number.
    pub retry_after: Option<Duration>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    #[error("invalid URL {0:?}")]
    Url(String),
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

struct Target {
    tls: bool,
    host: String,
    port: u16,
    path: String,
}

fn parse(url: &str) -> Result<Target, HttpError> {
    let bad = || HttpError::Url(url.to_string());
    let (tls, rest) = match url.split_once("://") {
        Some(("http", rest)) => (false, rest),
        Some(("https", rest)) => (true, rest),
        _ => return Err(bad()),
    };
    let (authority, path) = match rest.find('/') {
        Some(index) => (&rest[..index], &rest[index..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => {
            (host, port.parse().map_err(|_| bad())?)
        }
        _ => (authority, if tls { 443 } else { 80 }),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(bad());
    }
    Ok(Target {
        tls,
        host: host.to_string(),
        port,
        path: path.to_string(),
    })
}

/// POSTs `body` to `url` and returns the status; the whole exchange is bounded by `timeout`.
pub async fn post(
    url: &str,
    content_type: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
    timeout: Duration,
) -> Result<HttpOutcome, HttpError> {
    tokio::time::timeout(timeout, post_inner(url, content_type, headers, body))
        .await
        .map_err(|_| HttpError::Timeout(timeout))?
}

async fn post_inner(
    url: &str,
    content_type: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
) -> Result<HttpOutcome, HttpError> {
    let target = parse(url)?;
    let stream = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(HttpError::Connect)?;
    let host_header = if (target.tls && target.port == 443) || (!target.tls && target.port == 80) {
        target.host.clone()
    } else {
        format!("{}:{}", target.host, target.port)
    };
    let mut request = Request::post(&target.path)
        .header("host", host_header)
        .header("content-type", content_type)
        .header(
            "user-agent",
            concat!("steward-collector/", env!("CARGO_PKG_VERSION")),
        );
    for (name, value) in headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let request = request
        .body(Full::new(Bytes::from(body)))
        .map_err(|error| HttpError::Url(error.to_string()))?;
    if target.tls {
        let roots =
            steward_core::tls::system_roots().map_err(|error| HttpError::Tls(error.to_string()))?;
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(roots.as_ref().clone())
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from(target.host.clone())
            .map_err(|error| HttpError::Tls(error.to_string()))?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, stream)
            .await
            .map_err(|error| HttpError::Tls(error.to_string()))?;
        send(TokioIo::new(tls), request).await
    } else {
        send(TokioIo::new(stream), request).await
    }
}

async fn send<T>(io: T, request: Request<Full<Bytes>>) -> Result<HttpOutcome, HttpError>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
    let driver = tokio::spawn(connection);
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    // Drain the body so the receiver sees a clean exchange; its content is not needed.
    let _ = response.into_body().collect().await;
    driver.abort();
    Ok(HttpOutcome {
        status,
        retry_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls_with_and_without_ports() {
        let target = parse("http://127.0.0.1:8080/hooks/a?x=1").unwrap();
        assert_eq!(
            (
                target.tls,
                target.host.as_str(),
                target.port,
                target.path.as_str()
            ),
            (false, "127.0.0.1", 8080, "/hooks/a?x=1")
        );
        let target = parse("https://events.pagerduty.com/v2/enqueue").unwrap();
        assert_eq!(
            (target.tls, target.port, target.path.as_str()),
            (true, 443, "/v2/enqueue")
        );
        let target = parse("http://[::1]:9000").unwrap();
        assert_eq!(
            (target.host.as_str(), target.port, target.path.as_str()),
            ("::1", 9000, "/")
        );
        assert!(parse("ftp://x").is_err());
        assert!(parse("http://:80/").is_err());
    }
}
