//! HTTPS for the API: a listener that hands axum finished TLS connections.
//!
//! A background task accepts TCP connections and runs each handshake in a
//! task of its own (bounded in number and time), so a client that stalls
//! its handshake delays nobody else; finished streams queue for
//! [`axum::serve`], which then serves them exactly as plain TCP ones. One
//! source address (an IPv6 /64) holds at most [`MAX_HANDSHAKES_PER_SOURCE`]
//! of the slots, so a client that opens connections and stalls them cannot
//! take every slot and lock the others out.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// Handshakes in progress at once; more connections wait in the backlog.
const MAX_HANDSHAKES: usize = 256;
/// Handshakes one source may have in progress; its further connections are
/// closed at once.
const MAX_HANDSHAKES_PER_SOURCE: usize = 32;
/// A client that has not finished its handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpsError {
    #[error("cannot read the HTTPS certificate: {0}")]
    Certificate(rustls::pki_types::pem::Error),
    #[error("cannot read the HTTPS key: {0}")]
    Key(rustls::pki_types::pem::Error),
    #[error("the HTTPS certificate and key do not fit together: {0}")]
    Config(rustls::Error),
}

/// The rustls server configuration for a PEM chain and key (HTTP/1.1 only).
pub fn server_config(
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<Arc<rustls::ServerConfig>, HttpsError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(HttpsError::Certificate)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(HttpsError::Key)?;
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(HttpsError::Config)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// TLS connections ready for axum; see the module doc.
pub struct TlsListener {
    local_addr: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
}

impl TlsListener {
    /// Starts accepting on `listener`; stops when this value is dropped.
    pub fn new(listener: TcpListener, config: Arc<rustls::ServerConfig>) -> std::io::Result<Self> {
        let local_addr = listener.local_addr()?;
        let (sender, ready) = mpsc::channel(64);
        tokio::spawn(accept_loop(listener, TlsAcceptor::from(config), sender));
        Ok(Self { local_addr, ready })
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    let per_source = Arc::new(Mutex::new(HashMap::new()));
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&handshakes).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            () = ready.closed() => return,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = ready.closed() => return,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // EMFILE and the like: back off instead of spinning.
                tracing::warn!(message = "Cannot accept an HTTPS connection.", %error);
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(source_slot) = SourceSlot::take(&per_source, peer.ip()) else {
            tracing::debug!(message = "Closed an HTTPS connection: its source has too many handshakes in progress.", %peer);
            continue;
        };
        let (acceptor, ready) = (acceptor.clone(), ready.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let _source_slot = source_slot;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => {
                    let _ = ready.send((stream, peer)).await;
                }
                Ok(Err(error)) => {
                    tracing::debug!(message = "HTTPS handshake failed.", %peer, %error);
                }
                Err(_) => tracing::debug!(message = "HTTPS handshake timed out.", %peer),
            }
        });
    }
}

/// One handshake of one source in progress; given back on drop.
struct SourceSlot {
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
    source: IpAddr,
}

impl SourceSlot {
    fn take(counts: &Arc<Mutex<HashMap<IpAddr, usize>>>, address: IpAddr) -> Option<Self> {
        let source = crate::ratelimit::bucket_key(address);
        let mut map = counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = map.entry(source).or_insert(0);
        if *count >= MAX_HANDSHAKES_PER_SOURCE {
            return None;
        }
        *count += 1;
        Some(Self {
            counts: Arc::clone(counts),
            source,
        })
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut map = self
            .counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = map.get_mut(&self.source) {
            *count -= 1;
            if *count == 0 {
                map.remove(&self.source);
            }
        }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The accept loop ends only when this listener is dropped; until
            // then, nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::serve::Listener;
    use tokio::io::AsyncReadExt;

    async fn connect_from(source: &str, to: SocketAddr) -> TcpStream {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
        socket.connect(to).await.unwrap()
    }

    #[tokio::test]
    async fn one_source_stalling_handshakes_cannot_take_every_slot() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let config = server_config(
            certified.cert.pem().as_bytes(),
            certified.signing_key.serialize_pem().as_bytes(),
        )
        .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let mut tls_listener = TlsListener::new(listener, config).unwrap();

        // One source opens its share of handshakes and never speaks.
        let mut stalled = Vec::new();
        for _ in 0..MAX_HANDSHAKES_PER_SOURCE {
            stalled.push(connect_from("127.0.0.1", address).await);
        }
        // Its next connection is closed at once (once the accept loop has
        // taken the stalled ones, which it does in order).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let mut extra = connect_from("127.0.0.1", address).await;
            let mut byte = [0u8; 1];
            match tokio::time::timeout(Duration::from_millis(500), extra.read(&mut byte)).await {
                Ok(Ok(0) | Err(_)) => break,
                _ => assert!(
                    tokio::time::Instant::now() < deadline,
                    "a connection past the source's share was not closed"
                ),
            }
        }

        // Another source still completes its handshake.
        let mut roots = rustls::RootCertStore::empty();
        roots.add(certified.cert.der().clone()).unwrap();
        let client = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let stream = connect_from("127.0.0.2", address).await;
        let handshake = connector.connect(
            rustls::pki_types::ServerName::try_from("localhost").unwrap(),
            stream,
        );
        let (client, (_, peer)) = tokio::time::timeout(Duration::from_secs(10), async {
            tokio::join!(handshake, tls_listener.accept())
        })
        .await
        .expect("the other source's handshake finished");
        client.expect("the handshake succeeded");
        assert_eq!(peer.ip().to_string(), "127.0.0.2");
        drop(stalled);
    }
}
