//! Outgoing HTTP for webhook deliveries: one shared `reqwest` client per
//! process (connections are kept and reused), HTTP/1.1 over rustls on ring
//! with the system trust roots, and the proxy named by `HTTP_PROXY`,
//! `HTTPS_PROXY` and `NO_PROXY`.
//!
//! This module only sends and reports what came back: whether an answer is
//! worth retrying is decided by the caller (`service`) from [`HttpOutcome`]
//! and [`HttpError`]. It never follows redirects: a 3xx is returned as is.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use reqwest::{NoProxy, Proxy, Url};

/// Establishing a connection must finish within this, whatever the
/// request's own timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle kept-alive connections are closed after this.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// At most this much of a receiver's answer is read, so the connection can be
/// reused; a longer body is dropped with its connection.
const MAX_DRAINED_BODY: usize = 64 * 1024;
/// Destinations never sent through a proxy: a proxy cannot reach this
/// machine's loopback, so a local receiver would fail if proxied.
const ALWAYS_DIRECT: &str = "localhost,127.0.0.0/8,::1";

/// What the receiver answered.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpOutcome {
    pub status: u16,
    /// `Retry-After` in seconds, when given as a number.
    pub retry_after: Option<Duration>,
}

/// Why no answer came back. Every variant is worth retrying from the
/// caller's point of view: a network, proxy or receiver problem can clear
/// up, and the caller bounds the attempts. Messages never include the URL,
/// which may carry a secret (Slack and similar webhook URLs do).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    #[error("invalid URL: {0}")]
    Url(String),
    /// The HTTP client could not be set up (e.g. a malformed proxy variable).
    #[error("HTTP client: {0}")]
    Client(String),
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("HTTP: {0}")]
    Http(String),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

/// Which proxy, if any, a request goes through. Read from the conventional
/// environment variables; `NO_PROXY` entries follow curl's rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxySettings {
    /// Proxy URL for `http://` destinations (`HTTP_PROXY`/`http_proxy`).
    pub http: Option<String>,
    /// Proxy URL for `https://` destinations, tunnelled with CONNECT
    /// (`HTTPS_PROXY`/`https_proxy`).
    pub https: Option<String>,
    /// Comma-separated hosts, domains (with their subdomains), addresses and
    /// networks reached directly (`NO_PROXY`/`no_proxy`); `*` means all.
    /// Loopback is always reached directly, whatever this says.
    pub no_proxy: String,
}

impl ProxySettings {
    /// From the process environment; the upper-case name wins.
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let first = |names: [&str; 2]| {
            names
                .into_iter()
                .filter_map(&lookup)
                .map(|value| value.trim().to_string())
                .find(|value| !value.is_empty())
        };
        Self {
            http: first(["HTTP_PROXY", "http_proxy"]),
            https: first(["HTTPS_PROXY", "https_proxy"]),
            no_proxy: first(["NO_PROXY", "no_proxy"]).unwrap_or_default(),
        }
    }

    /// The `NO_PROXY` list in force: the operator's plus loopback.
    fn direct(&self) -> String {
        if self.no_proxy.trim().is_empty() {
            ALWAYS_DIRECT.to_string()
        } else {
            format!("{},{ALWAYS_DIRECT}", self.no_proxy)
        }
    }

    fn apply(&self, builder: reqwest::ClientBuilder) -> Result<reqwest::ClientBuilder, HttpError> {
        // Nothing implicit: only the proxies named here are used.
        let mut builder = builder.no_proxy();
        let direct = self.direct();
        let bad = |name: &str, error: reqwest::Error| {
            HttpError::Client(format!(
                "invalid {name} proxy: {}",
                steward_core::text::error_chain(&error)
            ))
        };
        if let Some(url) = &self.http {
            let proxy = Proxy::http(url.as_str()).map_err(|error| bad("HTTP", error))?;
            builder = builder.proxy(proxy.no_proxy(NoProxy::from_string(&direct)));
        }
        if let Some(url) = &self.https {
            let proxy = Proxy::https(url.as_str()).map_err(|error| bad("HTTPS", error))?;
            builder = builder.proxy(proxy.no_proxy(NoProxy::from_string(&direct)));
        }
        Ok(builder)
    }
}

/// A webhook sender: one connection pool, reused across deliveries.
#[derive(Debug, Clone)]
pub struct WebhookClient {
    client: reqwest::Client,
    /// Why the system trust store could not be read, if it could not:
    /// `https://` deliveries then fail with this rather than an unknown-issuer
    /// error, and `http://` ones still work.
    roots_error: Option<String>,
}

impl WebhookClient {
    pub fn new(proxy: &ProxySettings) -> Result<Self, HttpError> {
        Self::with_extra_roots(proxy, &[])
    }

    /// Like [`new`](Self::new), also trusting `extra_roots` (a private CA a
    /// receiver's certificate is signed by, e.g. remote_write's `tls_ca_file`).
    pub fn with_extra_roots(
        proxy: &ProxySettings,
        extra_roots: &[rustls::pki_types::CertificateDer<'static>],
    ) -> Result<Self, HttpError> {
        let (mut roots, mut roots_error) = match steward_core::tls::system_roots() {
            Ok(roots) => (roots.as_ref().clone(), None),
            Err(error) => (rustls::RootCertStore::empty(), Some(error.to_string())),
        };
        for root in extra_roots {
            roots
                .add(root.clone())
                .map_err(|error| HttpError::Tls(format!("extra trust root: {error}")))?;
            // A named CA is enough to reach its receivers.
            roots_error = None;
        }
        // Ring explicitly, not the process default, so the client works
        // whether or not main installed a provider.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| HttpError::Tls(error.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let builder = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .user_agent(concat!("steward-collector/", env!("CARGO_PKG_VERSION")))
            // A redirect is the receiver's configuration problem; following it
            // would also hand the signature and idempotency key to another host.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .pool_idle_timeout(POOL_IDLE_TIMEOUT);
        let client = proxy
            .apply(builder)?
            .build()
            .map_err(|error| HttpError::Client(steward_core::text::error_chain(&error)))?;
        Ok(Self {
            client,
            roots_error,
        })
    }

    /// POSTs `body` to `url` and returns the status; the whole exchange,
    /// connecting included, is bounded by `timeout`.
    pub async fn post(
        &self,
        url: &str,
        content_type: &str,
        headers: &[(String, String)],
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<HttpOutcome, HttpError> {
        let target = parse(url)?;
        if target.scheme() == "https"
            && let Some(error) = &self.roots_error
        {
            return Err(HttpError::Tls(error.clone()));
        }
        let mut request = self
            .client
            .post(target)
            .timeout(timeout)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let mut response = request
            .send()
            .await
            .map_err(|error| classify(error, timeout))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        // Drain a short answer so the connection goes back to the pool; its
        // content is not needed, and a failure here does not undo the status.
        let mut drained = 0;
        while drained <= MAX_DRAINED_BODY {
            match response.chunk().await {
                Ok(Some(chunk)) => drained += chunk.len(),
                _ => break,
            }
        }
        Ok(HttpOutcome {
            status,
            retry_after,
        })
    }
}

/// The process's client, built on first use with the environment's proxy
/// settings (read once: a changed variable needs a restart).
pub fn shared() -> Result<&'static WebhookClient, HttpError> {
    static SHARED: OnceLock<Result<WebhookClient, HttpError>> = OnceLock::new();
    SHARED
        .get_or_init(|| WebhookClient::new(&ProxySettings::from_env()))
        .as_ref()
        .map_err(Clone::clone)
}

/// POSTs through the [`shared`] client; see [`WebhookClient::post`].
pub async fn post(
    url: &str,
    content_type: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
    timeout: Duration,
) -> Result<HttpOutcome, HttpError> {
    shared()?
        .post(url, content_type, headers, body, timeout)
        .await
}

fn parse(url: &str) -> Result<Url, HttpError> {
    let parsed = Url::parse(url).map_err(|error| HttpError::Url(error.to_string()))?;
    match parsed.scheme() {
        "http" | "https" if parsed.host_str().is_some_and(|host| !host.is_empty()) => Ok(parsed),
        "http" | "https" => Err(HttpError::Url("no host".into())),
        other => Err(HttpError::Url(format!("unsupported scheme {other:?}"))),
    }
}

fn classify(error: reqwest::Error, timeout: Duration) -> HttpError {
    let error = error.without_url();
    if error.is_timeout() {
        HttpError::Timeout(timeout)
    } else if error.is_connect() {
        HttpError::Connect(steward_core::text::error_chain(&error))
    } else {
        HttpError::Http(steward_core::text::error_chain(&error))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    #[test]
    fn parses_urls_with_and_without_ports() {
        let target = parse("http://127.0.0.1:8080/hooks/a?x=1").unwrap();
        assert_eq!(
            (
                target.scheme(),
                target.host_str(),
                target.port_or_known_default(),
                target.path(),
                target.query()
            ),
            (
                "http",
                Some("127.0.0.1"),
                Some(8080),
                "/hooks/a",
                Some("x=1")
            )
        );
        let target = parse("https://events.pagerduty.com/v2/enqueue").unwrap();
        assert_eq!(
            (
                target.scheme(),
                target.port_or_known_default(),
                target.path()
            ),
            ("https", Some(443), "/v2/enqueue")
        );
        let target = parse("http://[::1]:9000").unwrap();
        assert_eq!(
            (target.host_str(), target.port(), target.path()),
            (Some("[::1]"), Some(9000), "/")
        );
        assert!(matches!(parse("ftp://x"), Err(HttpError::Url(_))));
        assert!(matches!(parse("http://:80/"), Err(HttpError::Url(_))));
        assert!(matches!(parse("not a url"), Err(HttpError::Url(_))));
    }

    #[test]
    fn proxy_settings_come_from_curl_variables_upper_case_first() {
        let env: HashMap<&str, &str> = [
            ("HTTP_PROXY", "http://proxy.example:3128"),
            ("http_proxy", "http://ignored.example:1"),
            ("https_proxy", " http://tls-proxy.example:3128 "),
            ("NO_PROXY", ""),
            ("no_proxy", ".internal,10.0.0.0/8"),
        ]
        .into();
        let settings = ProxySettings::from_lookup(|name| env.get(name).map(|v| v.to_string()));
        assert_eq!(
            settings,
            ProxySettings {
                http: Some("http://proxy.example:3128".into()),
                https: Some("http://tls-proxy.example:3128".into()),
                no_proxy: ".internal,10.0.0.0/8".into(),
            }
        );
        assert_eq!(
            ProxySettings::from_lookup(|_| None),
            ProxySettings::default()
        );
    }

    #[test]
    fn a_malformed_proxy_is_a_client_error() {
        let settings = ProxySettings {
            http: Some("http://[not-an-address".into()),
            ..ProxySettings::default()
        };
        assert!(matches!(
            WebhookClient::new(&settings),
            Err(HttpError::Client(_))
        ));
    }

    /// Reads one request from `stream` (head and `Content-Length` body) and
    /// returns its head: request line and headers.
    async fn read_request(stream: &mut tokio::net::TcpStream) -> String {
        let mut buffer = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            let read = stream.read(&mut chunk).await.unwrap();
            assert!(read > 0, "connection closed before the request head");
            buffer.extend_from_slice(&chunk[..read]);
            if let Some(end) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
                break end + 4;
            }
        };
        let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
        let length: usize = head
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .unwrap_or(0);
        while buffer.len() < head_end + length {
            let read = stream.read(&mut chunk).await.unwrap();
            if read == 0 {
                break;
            }
            buffer.extend_from_slice(&chunk[..read]);
        }
        head
    }

    /// A one-shot HTTP/1.1 server: returns its address and the head of the
    /// first request it reads, after answering with `answer`.
    async fn one_shot(answer: &'static str) -> (String, tokio::task::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let served = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let head = read_request(&mut stream).await;
            stream.write_all(answer.as_bytes()).await.unwrap();
            head
        });
        (address, served)
    }

    /// Deliveries to one receiver share a kept-alive connection: the server
    /// accepts a single connection and answers both requests on it.
    #[tokio::test]
    async fn consecutive_posts_reuse_the_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let served = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            for _ in 0..2 {
                read_request(&mut stream).await;
                stream
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .await
                    .unwrap();
            }
        });
        let client = WebhookClient::new(&ProxySettings::default()).unwrap();
        for _ in 0..2 {
            let outcome = client
                .post(
                    &format!("http://{address}/hook"),
                    "application/json",
                    &[],
                    b"{}".to_vec(),
                    Duration::from_secs(5),
                )
                .await
                .unwrap();
            assert_eq!(outcome.status, 200);
        }
        served.await.unwrap();
    }

    #[tokio::test]
    async fn posts_headers_and_reports_status_and_retry_after() {
        let (address, served) = one_shot(
            "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\nContent-Length: 2\r\n\r\nno",
        )
        .await;
        let client = WebhookClient::new(&ProxySettings::default()).unwrap();
        let outcome = client
            .post(
                &format!("http://{address}/hooks/a?x=1"),
                "application/json",
                &[("Idempotency-Key".into(), "7:opened:hook".into())],
                b"{}".to_vec(),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
        assert_eq!(
            outcome,
            HttpOutcome {
                status: 429,
                retry_after: Some(Duration::from_secs(7)),
            }
        );
        let head = served.await.unwrap().to_ascii_lowercase();
        assert!(head.starts_with("post /hooks/a?x=1 http/1.1\r\n"), "{head}");
        assert!(
            head.contains("\r\ncontent-type: application/json\r\n"),
            "{head}"
        );
        assert!(
            head.contains("\r\nidempotency-key: 7:opened:hook\r\n"),
            "{head}"
        );
        assert!(
            head.contains("\r\nuser-agent: steward-collector/"),
            "{head}"
        );
    }

    #[tokio::test]
    async fn redirects_are_reported_not_followed() {
        let (address, served) = one_shot(
            "HTTP/1.1 301 Moved\r\nLocation: http://127.0.0.1:9/\r\nContent-Length: 0\r\n\r\n",
        )
        .await;
        let client = WebhookClient::new(&ProxySettings::default()).unwrap();
        let outcome = client
            .post(
                &format!("http://{address}/"),
                "application/json",
                &[],
                Vec::new(),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
        assert_eq!(outcome.status, 301);
        served.await.unwrap();
    }

    #[tokio::test]
    async fn refused_connection_is_a_connect_error_without_the_url() {
        // Bind then drop, so nothing listens on the port.
        let port = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = WebhookClient::new(&ProxySettings::default()).unwrap();
        let error = client
            .post(
                &format!("http://127.0.0.1:{port}/secret-token"),
                "application/json",
                &[],
                Vec::new(),
                Duration::from_secs(10),
            )
            .await
            .unwrap_err();
        assert!(matches!(error, HttpError::Connect(_)), "{error:?}");
        assert!(!error.to_string().contains("secret-token"), "{error}");
    }

    #[tokio::test]
    async fn a_silent_receiver_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        // Accepts and never answers.
        let _held = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(stream);
        });
        let client = WebhookClient::new(&ProxySettings::default()).unwrap();
        let error = client
            .post(
                &format!("http://{address}/"),
                "application/json",
                &[],
                Vec::new(),
                Duration::from_millis(200),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(error, HttpError::Timeout(after) if after == Duration::from_millis(200)),
            "{error:?}"
        );
    }

    /// The proxy from the settings carries the request: it receives the
    /// absolute-form `POST http://target/...` and answers for the target,
    /// which is never contacted.
    #[tokio::test]
    async fn requests_go_through_the_configured_proxy() {
        let (proxy, served) = one_shot("HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n").await;
        let client = WebhookClient::new(&ProxySettings {
            http: Some(format!("http://{proxy}")),
            ..ProxySettings::default()
        })
        .unwrap();
        let outcome = client
            .post(
                "http://receiver.invalid:8080/hooks/a",
                "application/json",
                &[],
                b"{}".to_vec(),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
        assert_eq!(outcome.status, 202);
        let head = served.await.unwrap();
        assert!(
            head.starts_with("POST http://receiver.invalid:8080/hooks/a HTTP/1.1\r\n"),
            "{head}"
        );
    }

    /// Regression: loopback receivers are reached directly even when a proxy
    /// is configured and `NO_PROXY` does not name them, since the proxy
    /// cannot reach this machine's loopback.
    #[tokio::test]
    async fn loopback_destinations_bypass_the_proxy() {
        // A "proxy" that nothing listens on: any proxied request fails.
        let dead = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let client = WebhookClient::new(&ProxySettings {
            http: Some(format!("http://{dead}")),
            https: Some(format!("http://{dead}")),
            no_proxy: "example.internal".into(),
        })
        .unwrap();
        for host in ["127.0.0.1", "localhost"] {
            let (address, served) = one_shot("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").await;
            let port = address.rsplit_once(':').unwrap().1;
            let outcome = client
                .post(
                    &format!("http://{host}:{port}/direct"),
                    "application/json",
                    &[],
                    Vec::new(),
                    Duration::from_secs(10),
                )
                .await
                .unwrap();
            assert_eq!(outcome.status, 200, "{host}");
            let head = served.await.unwrap();
            assert!(head.starts_with("POST /direct HTTP/1.1\r\n"), "{head}");
        }
    }

    #[test]
    fn no_proxy_keeps_the_operator_list_and_adds_loopback() {
        let settings = |no_proxy: &str| ProxySettings {
            no_proxy: no_proxy.into(),
            ..ProxySettings::default()
        };
        assert_eq!(
            settings(".internal, 10.0.0.0/8").direct(),
            ".internal, 10.0.0.0/8,localhost,127.0.0.0/8,::1"
        );
        assert_eq!(settings(" ").direct(), "localhost,127.0.0.0/8,::1");
    }

    #[test]
    fn the_shared_client_is_built_once() {
        let first = shared().map(|client| client as *const WebhookClient);
        let second = shared().map(|client| client as *const WebhookClient);
        assert_eq!(first.ok(), second.ok());
    }
}
