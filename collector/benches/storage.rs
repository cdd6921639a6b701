//! Storage engine figures, printed as markdown: writer throughput (samples/s
//! committed through `Store::commit_batch`, many concurrent committers),
//! bytes per sample on disk for the raw window (log + chunks) and for aged
//! data (chunks + rollups), RSS per series, and history query latency.
//!
//! `cargo bench -p steward-collector --no-default-features --bench storage`
//! (`-- --quick` for a seconds-long smoke run). The data set: AGENTS agents ×
//! SERIES series × POINTS points at 10 s intervals with a few ms of jitter,
//! a quarter each load averages (2 decimals), CPU percentages (f32 noise),
//! slowly moving percentages (2 decimals) and byte counters.

use std::sync::Arc;
use std::time::Instant;

use steward_collector::store::{
    ChunkEncoder, SampleBatch, SampleRecord, Store, chunk_blob, chunk_blob_columns,
};

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

struct Shape {
    agents: usize,
    series: usize,
    points: usize,
    /// Concurrent committers per agent (like pipelined streams).
    streams: usize,
    /// Time of the first point.
    base_ms: i64,
}

/// xorshift64*: deterministic values without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

const BASE_MS: i64 = 1_764_000_000_000;

/// Every agent's batches, oldest first; `values[series]` carries each walk.
fn batches(shape: &Shape, agent: usize) -> Vec<SampleBatch> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (agent as u64 + 1));
    let mut values: Vec<f64> = (0..shape.series)
        .map(|index| match index % 4 {
            0 => 0.5 + rng.unit(),
            1 => 20.0 * rng.unit(),
            2 => 40.0 + 20.0 * rng.unit(),
            _ => (rng.next() % 1_000_000_000) as f64,
        })
        .collect();
    let labels: Vec<_> = (0..shape.series)
        .map(|index| {
            steward_collector::store::Labels::from([("index".to_string(), index.to_string())])
        })
        .collect();
    (0..shape.points)
        .map(|step| {
            let timestamp_ms = shape.base_ms + step as i64 * 10_000 + (rng.next() % 15) as i64;
            let samples = (0..shape.series)
                .map(|index| {
                    let value = &mut values[index];
                    *value = match index % 4 {
                        0 => ((*value + (rng.unit() - 0.5) * 0.1).abs() * 100.0).round() / 100.0,
                        1 => f64::from(
                            ((*value + (rng.unit() - 0.5) * 4.0).clamp(0.0, 100.0)) as f32,
                        ),
                        2 => {
                            if rng.next().is_multiple_of(10) {
                                ((*value + 0.01) * 100.0).round() / 100.0
                            } else {
                                *value
                            }
                        }
                        _ => *value + (rng.next() % 5_000) as f64,
                    };
                    SampleRecord {
                        metric: [
                            "load.avg1",
                            "cpu.usage_percent",
                            "disk.used_percent",
                            "net.rx_bytes",
                        ][index % 4]
                            .to_string(),
                        labels: labels[index].clone(),
                        value: *value,
                        timestamp_ms,
                    }
                })
                .collect();
            SampleBatch {
                agent_id: format!("agent-{agent}"),
                epoch: (step % shape.streams) as u64 + 1,
                seq: (step / shape.streams) as u64 + 1,
                received_ms: timestamp_ms,
                samples,
            }
        })
        .collect()
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
        })
        .map_or(0, |kib| kib * 1024)
}

/// Bytes per table and index, as SQLite's `dbstat` counts pages.
fn table_bytes(path: &std::path::Path) -> BenchResult<Vec<(String, i64)>> {
    let connection = rusqlite::Connection::open(path)?;
    connection.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    let mut statement = connection.prepare(
        "SELECT name, sum(pgsize) FROM dbstat GROUP BY name HAVING sum(pgsize) > 8192 ORDER BY 2 DESC",
    )?;
    let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Chunk payload and row counts, to tell encoding from page overhead.
fn chunk_payload(path: &std::path::Path) -> BenchResult<String> {
    let connection = rusqlite::Connection::open(path)?;
    let (chunks, bytes, points): (i64, Option<i64>, Option<i64>) = connection.query_row(
        "SELECT count(*), sum(length(data)), sum(count) FROM chunks",
        [],
        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
    )?;
    let (bytes, points) = (bytes.unwrap_or(0), points.unwrap_or(0).max(1));
    Ok(format!(
        "{chunks} chunks holding {points} points in {bytes} bytes of blobs: {:.2} bytes/point encoded",
        bytes as f64 / points as f64
    ))
}

/// Encoded bytes per point of chunk blobs and rollup blobs, per metric
/// (each metric is one value kind of the generator).
fn payload_by_kind(path: &std::path::Path) -> BenchResult<()> {
    let connection = rusqlite::Connection::open(path)?;
    let mut statement = connection.prepare(
        "SELECT s.metric, count(*), sum(length(c.data)), sum(c.count),
                (SELECT sum(length(r.data)) FROM rollups r JOIN series t ON t.id = r.series_id
                 WHERE t.metric = s.metric)
         FROM chunks c JOIN series s ON s.id = c.series_id GROUP BY s.metric ORDER BY s.metric",
    )?;
    println!(
        "\n| kind (metric) | chunk rows | chunk blob bytes/point | rollup blob bytes/point |\n|---|---:|---:|---:|"
    );
    let rows = statement.query_map([], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, i64>(1)?,
            row.get::<_, i64>(2)?,
            row.get::<_, i64>(3)?,
            row.get::<_, Option<i64>>(4)?,
        ))
    })?;
    for row in rows {
        let (metric, chunks, bytes, points, rollups) = row?;
        let points = points.max(1) as f64;
        println!(
            "| {metric} | {chunks} | {:.2} | {:.2} |",
            bytes as f64 / points,
            rollups.unwrap_or(0) as f64 / points
        );
    }
    Ok(())
}

/// Empirical entropy in bits of the values' distribution.
fn entropy(values: impl Iterator<Item = i64>) -> f64 {
    let mut counts = std::collections::HashMap::new();
    let mut total = 0.0;
    for value in values {
        *counts.entry(value).or_insert(0.0) += 1.0;
        total += 1.0;
    }
    counts
        .values()
        .map(|&count: &f64| -(count / total) * (count / total).log2())
        .sum()
}

/// Bits of information in one step of the CPU generator from `previous`:
/// the new value is uniform in [previous − 2, previous + 2], clamped to
/// [0, 100] (point masses at the ends), then rounded to an f32, so each f32
/// cell of width `ulp(x)` has probability `ulp(x) / 4`.
fn f32_step_bits(previous: f64) -> f64 {
    let (low, high) = ((previous - 2.0).max(0.0), (previous + 2.0).min(100.0));
    let mut bits = 0.0;
    for mass in [
        (2.0 - previous).max(0.0) / 4.0,
        (previous - 98.0).max(0.0) / 4.0,
    ] {
        if mass > 0.0 {
            bits -= mass * mass.log2();
        }
    }
    let slices = 256;
    let width = (high - low) / slices as f64;
    for slice in 0..slices {
        let x = (low + (slice as f64 + 0.5) * width) as f32;
        let ulp = f64::from(f32::from_bits(x.to_bits() + 1)) - f64::from(x);
        bits += width / 4.0 * (4.0 / ulp).log2();
    }
    bits
}

type Points = [(i64, f64)];

/// Encoded bytes per point of each value kind, format 1 (the head's Gorilla
/// stream, as chunks are written) against format 2 (compaction), and the
/// information the generator puts in each point: the floor for any
/// lossless codec.
fn codec_by_kind() {
    let day = Shape {
        agents: 1,
        series: 4,
        points: 8640,
        streams: 1,
        base_ms: BASE_MS,
    };
    let mut kinds: Vec<Vec<(i64, f64)>> = vec![Vec::new(); 4];
    for batch in batches(&day, 7) {
        for (index, sample) in batch.samples.iter().enumerate() {
            kinds[index].push((sample.timestamp_ms, sample.value));
        }
    }
    let format1 = |points: &[(i64, f64)], size: usize| -> f64 {
        let bytes: usize = points
            .chunks(size)
            .map(|chunk| {
                let mut encoder = ChunkEncoder::default();
                for &(t, v) in chunk {
                    encoder.push(t, v);
                }
                chunk_blob(encoder.count(), encoder.bytes()).len()
            })
            .sum();
        bytes as f64 / points.len() as f64
    };
    let format2 = |points: &[(i64, f64)], size: usize| -> f64 {
        let bytes: usize = points
            .chunks(size)
            .map(|chunk| chunk_blob_columns(chunk).len())
            .sum();
        bytes as f64 / points.len() as f64
    };
    let timestamps_only: Vec<(i64, f64)> = kinds[0].iter().map(|&(t, _)| (t, 0.0)).collect();
    let jitter_bits = entropy(
        kinds[0]
            .iter()
            .enumerate()
            .map(|(i, &(t, _))| t - BASE_MS - i as i64 * 10_000),
    );
    let decimal_step_bits = |points: &[(i64, f64)]| {
        entropy(
            points
                .windows(2)
                .map(|w| (w[1].1 * 100.0).round() as i64 - (w[0].1 * 100.0).round() as i64),
        )
    };
    let cpu = &kinds[1];
    let cpu_bits =
        cpu.windows(2).map(|w| f32_step_bits(w[0].1)).sum::<f64>() / (cpu.len() - 1) as f64;
    let value_bits = [
        decimal_step_bits(&kinds[0]),
        cpu_bits,
        decimal_step_bits(&kinds[2]),
        5000f64.log2(),
    ];
    println!(
        "\n### Codec by value kind (one series of 8,640 points at 10 s, 0–14 ms jitter)\n\n\
         | kind | format 1, 360-point chunks | format 2, 360-point chunks | format 2, one 8,640-point day | information per point (bits: values + timestamp) = bytes |\n|---|---:|---:|---:|---:|"
    );
    println!(
        "| timestamps alone (constant value) | {:.3} | {:.3} | {:.3} | {jitter_bits:.2} bits = {:.3} |",
        format1(&timestamps_only, 360),
        format2(&timestamps_only, 360),
        format2(&timestamps_only, 8640),
        jitter_bits / 8.0
    );
    let names = [
        "load average (2 decimals, walk)",
        "CPU % (f32 walk)",
        "slow % (2 decimals, 10% change)",
        "byte counter (+0..4999)",
    ];
    let mut total_bits = 0.0;
    for (index, points) in kinds.iter().enumerate() {
        let bits = value_bits[index] + jitter_bits;
        total_bits += bits;
        println!(
            "| {} | {:.2} | {:.2} | {:.2} | {:.2} + {jitter_bits:.2} bits = {:.2} |",
            names[index],
            format1(points, 360),
            format2(points, 360),
            format2(points, 8640),
            value_bits[index],
            bits / 8.0
        );
    }
    let mean = |f: &dyn Fn(&Points) -> f64| kinds.iter().map(|k| f(k)).sum::<f64>() / 4.0;
    println!(
        "| **mean of the four** | {:.2} | {:.2} | {:.2} | {:.2} |",
        mean(&|k| format1(k, 360)),
        mean(&|k| format2(k, 360)),
        mean(&|k| format2(k, 8640)),
        total_bits / 4.0 / 8.0
    );
}

/// The "day" shape: `series` series of one agent × 8,640 points (one UTC
/// day at 10 s), ingested, written, then compacted into day rows.
async fn day_shape(dir: &std::path::Path, series: usize) -> BenchResult<()> {
    let shape = Shape {
        agents: 1,
        series,
        points: 8640,
        streams: 1,
        // Midnight UTC, so the day is one series-day.
        base_ms: BASE_MS - BASE_MS.rem_euclid(86_400_000),
    };
    let path = dir.join("day.db");
    let store = Arc::new(Store::open(&path)?);
    let (samples, seconds) = ingest(&store, &shape).await?;
    for _ in 0..(series / 1000 + 3) {
        store.close_head_chunks().await?;
    }
    println!(
        "\n## Day shape: {series} series × 8,640 points (one UTC day at 10 s, {samples} samples; ingest {seconds:.1} s)"
    );
    print_tables(
        "### Day shape, aged, before compaction (360-point format-1 chunks)",
        &table_bytes(&path)?,
        samples,
    );
    let started = Instant::now();
    let report = store.compact_aged(i64::MAX).await?;
    let took = started.elapsed().as_secs_f64();
    print_tables(
        "### Day shape after compaction (one format-2 chunk row and rollup row per series)",
        &table_bytes(&path)?,
        samples,
    );
    println!(
        "\nCompaction: {} chunk rows into {}, {} rollup rows into {}, {took:.2} s ({:.0} samples/s).\n\n{}",
        report.chunks_merged,
        report.chunks_written,
        report.rollups_merged,
        report.rollups_written,
        samples as f64 / took,
        chunk_payload(&path)?
    );
    payload_by_kind(&path)?;
    // The query from day rows: 24 h of one series at 1-minute step.
    let query = steward_collector::store::HistoryQuery {
        agent_id: "agent-0".into(),
        metric: "load.avg1".into(),
        labels: steward_collector::store::Labels::from([("index".to_string(), "0".to_string())]),
        from_ms: shape.base_ms,
        to_ms: shape.base_ms + 86_400_000,
        step_ms: Some(60_000),
    };
    let (median, max) = time_history(&store, &query, 1440).await?;
    let hourly = steward_collector::store::HistoryQuery {
        step_ms: Some(3_600_000),
        ..query
    };
    let started = Instant::now();
    store.history(hourly).await?;
    println!(
        "\n| history from the day row, 24 h at 1-minute step | median {:.2} ms, max {:.2} ms |\n|---|---:|\n| same at 1-hour step (day rollup row) | {:.2} ms |",
        median,
        max,
        started.elapsed().as_secs_f64() * 1000.0
    );
    store.close().await;
    Ok(())
}

fn print_tables(title: &str, tables: &[(String, i64)], samples: u64) {
    println!("\n{title}\n\n| table or index | bytes | bytes/sample |\n|---|---:|---:|");
    let mut total = 0;
    for (name, bytes) in tables {
        total += bytes;
        println!(
            "| {name} | {bytes} | {:.2} |",
            *bytes as f64 / samples as f64
        );
    }
    println!(
        "| **total** | {total} | {:.2} |",
        total as f64 / samples as f64
    );
}

async fn ingest(store: &Arc<Store>, shape: &Shape) -> BenchResult<(u64, f64)> {
    let mut all = Vec::new();
    for agent in 0..shape.agents {
        let mut per_stream: Vec<Vec<SampleBatch>> = vec![Vec::new(); shape.streams];
        for batch in batches(shape, agent) {
            per_stream[(batch.epoch - 1) as usize].push(batch);
        }
        all.extend(per_stream);
    }
    let samples = (shape.agents * shape.series * shape.points) as u64;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for stream in all {
        let store = Arc::clone(store);
        tasks.push(tokio::spawn(async move {
            for batch in stream {
                store.commit_batch(batch).await?;
            }
            Ok::<_, steward_collector::store::StoreError>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok((samples, started.elapsed().as_secs_f64()))
}

/// `--reopen PATH`, in a fresh process: the RSS a collector holds for the
/// store after opening it (series maps, latest values, the head rebuilt
/// from the log). Exits without closing, so it writes nothing.
async fn reopen_child(path: &std::path::Path) -> BenchResult<()> {
    let before = rss_bytes();
    let started = Instant::now();
    let store = Store::open(path)?;
    let seconds = started.elapsed().as_secs_f64();
    println!("{} {seconds}", rss_bytes().saturating_sub(before));
    std::mem::forget(store);
    std::process::exit(0);
}

/// Runs `--reopen` in a child process; returns (RSS bytes, open seconds).
fn reopen_in_child(path: &std::path::Path) -> BenchResult<(u64, f64)> {
    let output = std::process::Command::new(std::env::current_exe()?)
        .arg("--reopen")
        .arg(path)
        .output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let mut fields = text.split_whitespace();
    let rss = fields.next().ok_or("no output from --reopen")?.parse()?;
    let seconds = fields.next().ok_or("no output from --reopen")?.parse()?;
    Ok((rss, seconds))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> BenchResult<()> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(index) = args.iter().position(|arg| arg == "--reopen") {
        let path = args.get(index + 1).ok_or("--reopen needs a path")?;
        return reopen_child(std::path::Path::new(path)).await;
    }
    let quick = args.iter().any(|arg| arg == "--quick");
    let shape = if quick {
        Shape {
            agents: 2,
            series: 100,
            points: 60,
            streams: 4,
            base_ms: BASE_MS,
        }
    } else {
        Shape {
            agents: 10,
            series: 1000,
            points: 500,
            streams: 8,
            base_ms: BASE_MS,
        }
    };
    let dir = tempfile::tempdir()?;
    let series = (shape.agents * shape.series) as u64;
    // Throughput with many committers: each agent's batches spread over
    // `streams` concurrent committers (so one series' points arrive out of
    // order, which costs the codec bits but not the writer time).
    let many = {
        let path = dir.path().join("throughput.db");
        let store = Arc::new(Store::open(&path)?);
        let (samples, seconds) = ingest(&store, &shape).await?;
        store.close().await;
        (samples, seconds)
    };
    // Bytes per sample from in-order streams (one committer per agent, as
    // a real agent sends), which also gives the throughput of 10 streams.
    let ordered = Shape {
        streams: 1,
        ..shape
    };
    let path = dir.path().join("bench.db");
    let store = Arc::new(Store::open(&path)?);
    let (samples, seconds) = ingest(&store, &ordered).await?;
    println!(
        "\n## Storage: {} agents × {} series × {} points ({samples} samples, batches of {})\n",
        shape.agents, shape.series, shape.points, shape.series,
    );
    println!("| figure | value |\n|---|---:|");
    println!(
        "| writer throughput, {} concurrent committers | {:.0} samples/s ({:.1} s) |",
        shape.agents * shape.streams,
        many.0 as f64 / many.1,
        many.1
    );
    println!(
        "| writer throughput, {} in-order committers | {:.0} samples/s ({seconds:.1} s) |",
        shape.agents,
        samples as f64 / seconds
    );
    let (rss, seconds) = reopen_in_child(&path)?;
    println!(
        "| restart with a full head: open/replay time, RSS of the store | {seconds:.2} s, {:.1} MiB ({:.0} bytes/series) |",
        rss as f64 / 1048576.0,
        rss as f64 / series as f64
    );
    print_tables(
        "### On disk right after ingest (raw window: log + written chunks)",
        &table_bytes(&path)?,
        samples,
    );
    // NEW-ONLY START
    println!(
        "\nHead after ingest: {:.1} MiB of encoded points (Vec capacity).",
        store.head_encoded_bytes() as f64 / 1048576.0
    );
    // Age everything: close the head, then more groups write the chunks
    // (a bounded number per group) and delete the covered log.
    for _ in 0..(series as usize / 1000 + 3) {
        store.close_head_chunks().await?;
    }
    let (rss, seconds) = reopen_in_child(&path)?;
    println!(
        "\n| restart with an empty head: open time, RSS of the store | {seconds:.2} s, {:.1} MiB ({:.0} bytes/series) |\n|---|---:|",
        rss as f64 / 1048576.0,
        rss as f64 / series as f64
    );
    print_tables(
        "### On disk after aging (every point in a chunk; log records deleted)",
        &table_bytes(&path)?,
        samples,
    );
    println!("\n{}", chunk_payload(&path)?);
    payload_by_kind(&path)?;
    let started = Instant::now();
    let report = store.compact_aged(i64::MAX).await?;
    let took = started.elapsed().as_secs_f64();
    print_tables(
        "### On disk after compaction (aged: one format-2 chunk row and one rollup row per series-day)",
        &table_bytes(&path)?,
        samples,
    );
    println!(
        "\nCompaction: {} chunk rows into {}, {} rollup rows into {}, {took:.2} s.\n\n{}",
        report.chunks_merged,
        report.chunks_written,
        report.rollups_merged,
        report.rollups_written,
        chunk_payload(&path)?
    );
    payload_by_kind(&path)?;
    // Query: 24 h of one series at 10 s, read at a 1-minute step.
    let day = Shape {
        agents: 1,
        series: 1,
        points: 8640,
        streams: 1,
        base_ms: BASE_MS,
    };
    let mut day_batches = batches(&day, 99);
    for batch in &mut day_batches {
        batch.agent_id = "query-agent".into();
    }
    for batch in day_batches {
        store.commit_batch(batch).await?;
    }
    let query = steward_collector::store::HistoryQuery {
        agent_id: "query-agent".into(),
        metric: "load.avg1".into(),
        labels: Default::default(),
        from_ms: BASE_MS,
        to_ms: BASE_MS + 86_400_000,
        step_ms: Some(60_000),
    };
    let (median, max) = time_history(&store, &query, 1440).await?;
    println!(
        "\n| history query, 24 h of one series (8,640 points) at 1-minute step | median {:.2} ms, max {:.2} ms |",
        median, max
    );
    let hourly = steward_collector::store::HistoryQuery {
        step_ms: Some(3_600_000),
        ..query
    };
    let started = Instant::now();
    store.history(hourly).await?;
    println!(
        "| same at 1-hour step (rollups) | {:.2} ms |",
        started.elapsed().as_secs_f64() * 1000.0
    );
    codec_by_kind();
    day_shape(dir.path(), if quick { 8 } else { 400 }).await?;
    // NEW-ONLY END
    store.close().await;
    Ok(())
}

/// Median and maximum milliseconds of 21 runs of `query`, each answering
/// `points` points.
async fn time_history(
    store: &Store,
    query: &steward_collector::store::HistoryQuery,
    points: usize,
) -> BenchResult<(f64, f64)> {
    let mut timings = Vec::new();
    for _ in 0..21 {
        let started = Instant::now();
        let answer = store.history(query.clone()).await?;
        timings.push(started.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(answer[0].points.len(), points);
    }
    timings.sort_by(f64::total_cmp);
    Ok((timings[10], timings[20]))
}
