//! A keep-alive HTTP/1.1 client just large enough for loopback benchmarks:
//! VictoriaMetrics' import API and the collector's incident list. No TLS, no
//! redirects, no pipelining.

use std::net::{IpAddr, SocketAddr};

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};

pub struct HttpConnection {
    stream: BufReader<TcpStream>,
    host: String,
}

impl HttpConnection {
    pub async fn connect(target: SocketAddr, source: Option<IpAddr>) -> anyhow::Result<Self> {
        let socket = if target.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if let Some(source) = source {
            socket
                .bind(SocketAddr::new(source, 0))
                .with_context(|| format!("bind {source}"))?;
        }
        let stream = socket
            .connect(target)
            .await
            .with_context(|| format!("connect to {target}"))?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream: BufReader::with_capacity(16 << 10, stream),
            host: target.to_string(),
        })
    }

    /// Sends one request and reads the whole response: (status, body).
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &[u8],
    ) -> anyhow::Result<(u16, Vec<u8>)> {
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n",
            self.host,
            body.len()
        );
        if let Some(token) = token {
            head.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        head.push_str("\r\n");
        let stream = self.stream.get_mut();
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body).await?;
        self.read_response().await
    }

    async fn read_response(&mut self) -> anyhow::Result<(u16, Vec<u8>)> {
        let mut line = String::new();
        if self.stream.read_line(&mut line).await? == 0 {
            bail!("connection closed before a response");
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .with_context(|| format!("bad status line {line:?}"))?;
        let mut length = 0usize;
        let mut chunked = false;
        loop {
            line.clear();
            if self.stream.read_line(&mut line).await? == 0 {
                bail!("connection closed inside the response head");
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':').unwrap_or((header, ""));
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
            if name == "content-length" {
                length = value.parse().context("bad Content-Length")?;
            } else if name == "transfer-encoding" && value.eq_ignore_ascii_case("chunked") {
                chunked = true;
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                line.clear();
                self.stream.read_line(&mut line).await?;
                let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                    .with_context(|| format!("bad chunk size {line:?}"))?;
                let start = body.len();
                body.resize(start + size + 2, 0);
                self.stream.read_exact(&mut body[start..]).await?;
                body.truncate(start + size);
                if size == 0 {
                    break;
                }
            }
        } else {
            body.resize(length, 0);
            self.stream.read_exact(&mut body).await?;
        }
        Ok((status, body))
    }
}

/// The Prometheus text line prefixes (`name{labels} `) of one agent's
/// series, so an import request only appends values and timestamps. Names
/// use `_` for `.` as Prometheus' grammar asks.
pub fn prometheus_prefixes(agent_id: &str, series: usize) -> Vec<String> {
    (0..series)
        .map(|index| {
            format!(
                "{}{{host=\"{agent_id}\",series=\"{index}\"}} ",
                crate::batch::metric_name(index).replace('.', "_")
            )
        })
        .collect()
}

/// One import request body: a line per series.
pub fn prometheus_body(prefixes: &[String], values: &[f64], timestamp_ms: i64, out: &mut Vec<u8>) {
    use std::io::Write as _;
    out.clear();
    for (prefix, value) in prefixes.iter().zip(values) {
        out.extend_from_slice(prefix.as_bytes());
        // Writing into a Vec cannot fail.
        let _ = writeln!(out, "{value} {timestamp_ms}");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn prometheus_lines_carry_labels_value_and_timestamp() {
        let prefixes = prometheus_prefixes("a-1", 2);
        let mut body = Vec::new();
        prometheus_body(&prefixes, &[0.5, 0.0], 1_700_000_000_000, &mut body);
        assert_eq!(
            String::from_utf8(body).unwrap(),
            "loadgen_m0{host=\"a-1\",series=\"0\"} 0.5 1700000000000\n\
             loadgen_m1{host=\"a-1\",series=\"1\"} 0 1700000000000\n"
        );
    }

    #[tokio::test]
    async fn reads_sized_and_chunked_responses_on_one_connection() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut stream = BufReader::new(stream);
            for reply in [
                "HTTP/1.1 204 No Content\r\n\r\n".to_string(),
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_string(),
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
                    .to_string(),
            ] {
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    stream.read_line(&mut line).await.unwrap();
                    if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = value.trim().parse().unwrap();
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0; length];
                stream.read_exact(&mut body).await.unwrap();
                stream.get_mut().write_all(reply.as_bytes()).await.unwrap();
            }
        });
        let mut connection = HttpConnection::connect(address, None).await.unwrap();
        let (status, body) = connection
            .request("POST", "/x", None, b"hello")
            .await
            .unwrap();
        assert_eq!((status, body.len()), (204, 0));
        let (status, body) = connection
            .request("GET", "/y", Some("t"), b"")
            .await
            .unwrap();
        assert_eq!((status, body.as_slice()), (200, b"ok".as_slice()));
        let (_, body) = connection.request("GET", "/z", None, b"").await.unwrap();
        assert_eq!(body, b"abcde");
    }
}
