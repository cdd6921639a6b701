//! The collector's HTTP API as `stewardctl` uses it: bearer token, JSON in
//! and out, lists followed page by page (`limit` and `X-Next-Cursor`).
//!
//! rustls on ring (the one provider of the workspace) with the system roots,
//! or only `ca_file`'s certificates when one is set. Redirects are not
//! followed, so the token is never handed to another host.

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use serde_json::Value;

use crate::config::{Settings, Token};
use crate::error::{CtlError, refusal};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const NEXT_CURSOR: &str = "x-next-cursor";
/// A list that has not ended after this many pages is a server bug, not data.
const MAX_PAGES: usize = 100_000;

#[derive(Debug)]
pub struct ApiClient {
    http: reqwest::Client,
    base: Url,
    token: Token,
    /// `limit` asked for on every page of a list.
    page_size: u32,
}

impl ApiClient {
    pub fn new(settings: &Settings, page_size: u32) -> Result<Self, CtlError> {
        // Plain http:// needs no roots: a machine without a trust store still works.
        let roots = if settings.url.scheme() == "https" {
            steward_core::tls::trust_roots(settings.ca_file.as_deref())
                .map_err(|error| CtlError::Usage(error.to_string()))?
        } else {
            Arc::new(rustls::RootCertStore::empty())
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| CtlError::Usage(format!("TLS set-up: {error}")))?
            .with_root_certificates(roots.as_ref().clone())
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let mut builder = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .user_agent(concat!("stewardctl/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT);
        // A proxy cannot reach this machine's loopback.
        if is_loopback(&settings.url) {
            builder = builder.no_proxy();
        }
        let http = builder
            .build()
            .map_err(|error| CtlError::Usage(steward_core::text::error_chain(&error)))?;
        Ok(Self {
            http,
            base: settings.url.clone(),
            token: settings.token.clone(),
            page_size: page_size.max(1),
        })
    }

    /// `base` + `/api/v1/` + the segments, each percent-encoded.
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(["api", "v1"]).extend(segments);
        }
        url
    }

    async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<(reqwest::header::HeaderMap, Value), CtlError> {
        let shown = self.base.to_string();
        let mut request = self
            .http
            .request(method, url)
            .bearer_auth(self.token.secret())
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        let response = request
            .send()
            .await
            .map_err(|error| CtlError::Unreachable {
                url: shown.clone(),
                detail: steward_core::text::error_chain(&error),
            })?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = response
            .text()
            .await
            .map_err(|error| CtlError::Unreachable {
                url: shown,
                detail: steward_core::text::error_chain(&error),
            })?;
        if !status.is_success() {
            return Err(refusal(status.as_u16(), &text));
        }
        if status == StatusCode::NO_CONTENT || text.trim().is_empty() {
            return Ok((headers, Value::Null));
        }
        let value = serde_json::from_str(&text)
            .map_err(|error| CtlError::Protocol(format!("the body is not JSON ({error})")))?;
        Ok((headers, value))
    }

    /// One JSON document: `GET /api/v1/{segments}`.
    pub async fn get(&self, segments: &[&str]) -> Result<Value, CtlError> {
        Ok(self.send(Method::GET, self.url(segments), None).await?.1)
    }

    /// `POST /api/v1/{segments}` with a JSON body.
    pub async fn post(&self, segments: &[&str], body: &Value) -> Result<Value, CtlError> {
        Ok(self
            .send(Method::POST, self.url(segments), Some(body))
            .await?
            .1)
    }

    /// Every item of a paged list, following `X-Next-Cursor` to the end.
    pub async fn get_all(
        &self,
        segments: &[&str],
        filters: &[(&str, &str)],
    ) -> Result<Vec<Value>, CtlError> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut url = self.url(segments);
            {
                let mut query = url.query_pairs_mut();
                for (name, value) in filters {
                    query.append_pair(name, value);
                }
                query.append_pair("limit", &self.page_size.to_string());
                if let Some(cursor) = &cursor {
                    query.append_pair("cursor", cursor);
                }
            }
            let (headers, page) = self.send(Method::GET, url, None).await?;
            match page {
                Value::Array(page) => items.extend(page),
                other => {
                    return Err(CtlError::Protocol(format!(
                        "expected a JSON array, got {}",
                        kind(&other)
                    )));
                }
            }
            let next = headers
                .get(NEXT_CURSOR)
                .and_then(|value| value.to_str().ok())
                .map(str::to_string);
            match next {
                Some(next) if cursor.as_ref() != Some(&next) => cursor = Some(next),
                Some(_) => {
                    return Err(CtlError::Protocol(
                        "the list repeats its cursor; stopped paging".into(),
                    ));
                }
                None => return Ok(items),
            }
        }
        Err(CtlError::Protocol(format!(
            "the list did not end after {MAX_PAGES} pages"
        )))
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host_str() {
        Some(host) if host.eq_ignore_ascii_case("localhost") => true,
        Some(host) => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| address.is_loopback()),
        None => false,
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
