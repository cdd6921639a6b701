//! A database of its own for each PostgreSQL test, so tests run in parallel.
//!
//! The server is, in order: the one `STEWARD_TEST_POSTGRES` names (an admin
//! URL; `throwaway` forces the next-but-one choice), one on 127.0.0.1:5432
//! (user `postgres`, trust auth), or a throwaway cluster started from the
//! installed `initdb`/`postgres` binaries on a free loopback port in a temp
//! dir (as `nobody` when the tests run as root), stopped when the test
//! process exits. With none of these the test is skipped with a printed
//! reason, unless `STEWARD_REQUIRE_POSTGRES=1` (set by `.ci/run`), which
//! turns the skip into a failure.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;

const LOCAL_SERVER: &str = "postgres://postgres@127.0.0.1:5432/postgres";

pub struct TestDb {
    /// URL of this test's own database.
    pub url: String,
    /// The server's TLS certificate (self-signed, for `localhost`) when it
    /// has TLS on and the file is readable here.
    pub tls_ca: Option<PathBuf>,
    server: String,
    name: String,
}

impl TestDb {
    /// Settings that reach this database (a small pool: tests are many).
    pub fn settings(&self) -> super::PgSettings {
        super::PgSettings {
            url: self.url.clone(),
            pool_size: 4,
            ca_file: None,
        }
    }

    /// A fresh empty database, or `None` (skip) when no server can be had.
    pub async fn create() -> Option<Self> {
        let server = match SERVER.get_or_init(find_server).await {
            Ok(server) => server.clone(),
            Err(reason) => {
                if std::env::var("STEWARD_REQUIRE_POSTGRES").as_deref() == Ok("1") {
                    panic!("STEWARD_REQUIRE_POSTGRES=1 but no PostgreSQL server: {reason}");
                }
                // Straight to stderr: libtest would swallow eprintln! of a passing test.
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIPPED: no PostgreSQL server for this test: {reason}"
                );
                return None;
            }
        };
        let name = format!("steward_{:016x}", rand::random::<u64>());
        let (client, connection) = tokio_postgres::connect(&server, tokio_postgres::NoTls)
            .await
            .expect("connect to the test PostgreSQL server");
        let driver = tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create the test database");
        let tls_ca = server_certificate(&client).await;
        drop(client);
        let _ = driver.await;
        let url = database_url(&server, &name);
        Some(Self {
            url,
            tls_ca,
            server,
            name,
        })
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let server = self.server.clone();
        let name = self.name.clone();
        // Drop runs inside the test's runtime: use a thread with its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let (client, connection) =
                    tokio_postgres::connect(&server, tokio_postgres::NoTls).await?;
                let driver = tokio::spawn(connection);
                let result = client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await;
                drop(client);
                let _ = driver.await;
                result
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test database {}", self.name);
        }
    }
}

/// The server's certificate file, if TLS is on and the file is readable here
/// and names `localhost` (a self-signed certificate is its own CA).
async fn server_certificate(client: &tokio_postgres::Client) -> Option<PathBuf> {
    let ssl = client.query_one("SHOW ssl", &[]).await.ok()?;
    if ssl.get::<_, &str>(0) != "on" {
        return None;
    }
    let file = client.query_one("SHOW ssl_cert_file", &[]).await.ok()?;
    let file: &str = file.get(0);
    let data_dir = client.query_one("SHOW data_directory", &[]).await.ok();
    let path = match data_dir {
        Some(dir) if !file.starts_with('/') => Path::new(dir.get::<_, &str>(0)).join(file),
        _ => PathBuf::from(file),
    };
    let pem = std::fs::read_to_string(&path).ok()?;
    pem.contains("BEGIN CERTIFICATE").then_some(path)
}

/// `server` with its database replaced by `name`.
fn database_url(server: &str, name: &str) -> String {
    let (base, query) = server
        .split_once('?')
        .map_or((server, None), |(b, q)| (b, Some(q)));
    let authority_start = base.find("://").map_or(0, |at| at + 3);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    // Loopback test servers: plain TCP unless the named server URL says otherwise.
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}?sslmode=disable"),
    }
}

static SERVER: OnceCell<Result<String, String>> = OnceCell::const_new();

async fn find_server() -> Result<String, String> {
    let named = std::env::var("STEWARD_TEST_POSTGRES").ok();
    match named.as_deref() {
        Some("throwaway") => {}
        Some(url) => {
            return reachable(url)
                .await
                .map(|()| url.to_string())
                .map_err(|error| format!("STEWARD_TEST_POSTGRES={url} is unreachable: {error}"));
        }
        None => {
            if reachable(LOCAL_SERVER).await.is_ok() {
                return Ok(LOCAL_SERVER.to_string());
            }
        }
    }
    tokio::task::spawn_blocking(start_throwaway_cluster)
        .await
        .map_err(|error| error.to_string())?
}

async fn reachable(url: &str) -> Result<(), tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    let driver = tokio::spawn(connection);
    client.simple_query("SELECT 1").await?;
    drop(client);
    let _ = driver.await;
    Ok(())
}

fn server_binary(name: &str) -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(name))
                .collect()
        })
        .unwrap_or_default();
    if let Ok(versions) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut dirs: Vec<PathBuf> = versions.flatten().map(|entry| entry.path()).collect();
        dirs.sort();
        candidates.extend(dirs.into_iter().rev().map(|dir| dir.join("bin").join(name)));
    }
    candidates.into_iter().find(|path| path.is_file())
}

/// `initdb` + `postgres` on a free loopback port in a temp dir; a shell
/// watchdog stops it and removes the dir when this process ends.
fn start_throwaway_cluster() -> Result<String, String> {
    let (Some(initdb), Some(postgres)) = (server_binary("initdb"), server_binary("postgres"))
    else {
        return Err(
            "no server reachable and no PostgreSQL server binaries (initdb, postgres) installed"
                .to_string(),
        );
    };
    let dir = std::env::temp_dir().join(format!("steward-pg-{:016x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).map_err(|error| error.to_string())?;
    // initdb refuses to run as root: hand the dir to `nobody` and run as it.
    use std::os::unix::fs::MetadataExt;
    let as_root = std::fs::metadata("/proc/self")
        .map(|meta| meta.uid() == 0)
        .unwrap_or(false);
    if as_root {
        std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).map_err(|e| e.to_string())?;
    }
    let run_as = |program: &Path| {
        if as_root {
            let mut command = Command::new("runuser");
            command.args(["-u", "nobody", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    };
    let data = dir.join("data");
    let status = run_as(&initdb)
        .arg("-D")
        .arg(&data)
        .args(["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"])
        .stdout(std::process::Stdio::null())
        .status()
        .map_err(|error| format!("initdb: {error}"))?;
    if !status.success() {
        return Err(format!("initdb failed: {status}"));
    }
    // TLS on, with a self-signed certificate for `localhost`, so the TLS test
    // runs here too.
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
        .map_err(|error| error.to_string())?;
    let (cert, key) = (data.join("server.crt"), data.join("server.key"));
    std::fs::write(&cert, certified.cert.pem()).map_err(|error| error.to_string())?;
    std::fs::write(&key, certified.signing_key.serialize_pem()).map_err(|e| e.to_string())?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
        .map_err(|error| error.to_string())?;
    if as_root {
        for file in [&cert, &key] {
            std::os::unix::fs::chown(file, Some(65534), Some(65534)).map_err(|e| e.to_string())?;
        }
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map_err(|error| error.to_string())?
        .port();
    let server = format!(
        "{} -D {} -k {} -h 127.0.0.1 -p {port} -F -c ssl=on",
        postgres.display(),
        data.display(),
        dir.display()
    );
    let server = if as_root {
        format!("runuser -u nobody -- {server}")
    } else {
        server
    };
    let watchdog = format!(
        "{server} >{log} 2>&1 & pg=$!; while kill -0 {me} 2>/dev/null; do sleep 1; done; \
         kill -INT $(head -n 1 {data}/postmaster.pid); wait $pg; rm -rf {dir}",
        log = dir.join("server.log").display(),
        me = std::process::id(),
        dir = dir.display(),
        data = data.display()
    );
    Command::new("sh")
        .args(["-c", &watchdog])
        .stdin(std::process::Stdio::null())
        // Not the test's pipes: a harness reading them would wait for the watchdog.
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|error| format!("start postgres: {error}"))?;
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    let deadline = Instant::now() + Duration::from_secs(60);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| error.to_string())?;
    loop {
        if runtime.block_on(reachable(&url)).is_ok() {
            eprintln!(
                "started a throwaway PostgreSQL cluster at {url} in {}",
                dir.display()
            );
            return Ok(url);
        }
        if Instant::now() > deadline {
            return Err(format!(
                "throwaway PostgreSQL in {} did not start",
                dir.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
