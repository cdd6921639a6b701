//! Ingest at the store boundary, SQLite vs PostgreSQL: samples/s committed by
//! many concurrent agent streams through `Store::commit_batch` (one SQLite
//! file) and `PgStore::commit_batch` (one and two collectors on one
//! PostgreSQL database, group commit). Printed as markdown.
//!
//! `cargo bench -p steward-collector --no-default-features --bench postgres_ingest`
//! (`-- --quick` for a smoke run). The server: `STEWARD_BENCH_POSTGRES` (an
//! admin URL) or `postgres://postgres@127.0.0.1:5432/postgres`; a database is
//! created for the run and dropped after it. Without a server, only the SQLite
//! figure is printed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use steward_collector::store::postgres::{PgSettings, PgStore};
use steward_collector::store::{SampleBatch, SampleRecord, Store};

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

const SERIES: usize = 100;

fn agent_batches(agent: usize, count: usize) -> Vec<SampleBatch> {
    (0..count)
        .map(|seq| SampleBatch {
            agent_id: format!("agent-{agent:04}"),
            epoch: 1,
            seq: seq as u64 + 1,
            received_ms: 1_764_000_000_000 + seq as i64 * 10_000,
            samples: (0..SERIES)
                .map(|series| SampleRecord {
                    metric: format!("bench.metric{}", series % 10),
                    labels: BTreeMap::from([("index".to_string(), series.to_string())]),
                    value: (agent * 31 + series * 7 + seq) as f64 / 10.0,
                    timestamp_ms: 1_764_000_000_000 + seq as i64 * 10_000,
                })
                .collect(),
        })
        .collect()
}

/// Runs every agent's batches as its own sequential stream; returns samples/s.
async fn drive<F, Fut>(agents: usize, batches: usize, commit: F) -> BenchResult<f64>
where
    F: Fn(usize, SampleBatch) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    let all: Vec<Vec<SampleBatch>> = (0..agents)
        .map(|agent| agent_batches(agent, batches))
        .collect();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (agent, batches) in all.into_iter().enumerate() {
        let commit = commit.clone();
        tasks.push(tokio::spawn(async move {
            for batch in batches {
                commit(agent, batch).await?;
            }
            Ok::<(), String>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok((agents * batches * SERIES) as f64 / seconds)
}

async fn admin(url: &str) -> BenchResult<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

#[tokio::main]
async fn main() -> BenchResult<()> {
    let quick = std::env::args().any(|arg| arg == "--quick");
    let (agents, batches) = if quick { (10, 5) } else { (100, 30) };
    println!("| store | agents × batches × series | samples/s |");
    println!("|---|---|---|");

    let dir = tempfile::tempdir()?;
    let sqlite = Arc::new(Store::open(&dir.path().join("bench.sqlite"))?);
    let store = sqlite.clone();
    let rate = drive(agents, batches, move |_, batch| {
        let store = store.clone();
        async move {
            store
                .commit_batch(batch)
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        }
    })
    .await?;
    println!("| SQLite, one collector | {agents} × {batches} × {SERIES} | {rate:.0} |");
    sqlite.close().await;

    let server = std::env::var("STEWARD_BENCH_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string());
    let Ok(admin) = admin(&server).await else {
        println!("\n(no PostgreSQL server at {server}: PostgreSQL rows skipped)");
        return Ok(());
    };
    for collectors in [1usize, 2] {
        let name = format!("steward_bench_{:08x}", rand::random::<u32>());
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await?;
        let base = server
            .rsplit_once('/')
            .map_or(server.as_str(), |(base, _)| base);
        let settings = PgSettings {
            url: format!("{base}/{name}?sslmode=disable"),
            pool_size: 8,
            ca_file: None,
        };
        let mut stores = Vec::new();
        for index in 0..collectors {
            stores.push(PgStore::open(&settings, &format!("bench-{index}")).await?);
        }
        let stores = Arc::new(stores);
        let shared = stores.clone();
        let rate = drive(agents, batches, move |agent, batch| {
            let stores = shared.clone();
            async move {
                stores[agent % stores.len()]
                    .commit_batch(batch)
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            }
        })
        .await?;
        println!(
            "| PostgreSQL, {collectors} collector(s) | {agents} × {batches} × {SERIES} | {rate:.0} |"
        );
        drop(stores);
        admin
            .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
            .await?;
    }
    Ok(())
}
