//! Fault tests for the agent's durable spool, with the real binaries on
//! loopback. Each prints its figures. The default outages are short so the
//! suite stays quick on a busy machine; `STEWARD_LONG_FAULT_TESTS=1` runs
//! them for two minutes each.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use steward_tests::{
    Collector, DEADLINE, StoredPoint, collected_batches, log_value, memory_kib, now_ms, poll,
};

fn long() -> bool {
    std::env::var_os("STEWARD_LONG_FAULT_TESTS").is_some_and(|value| value == "1")
}

fn outage(short: Duration) -> Duration {
    if long() {
        Duration::from_secs(120)
    } else {
        short
    }
}

/// Host metrics only, every second (the harness sets `interval = "1s"`), so
/// every batch is one timestamp the test can look up.
fn host_metrics_only(extra: &str) -> impl FnOnce(&mut String) {
    let extra = extra.to_string();
    move |text: &mut String| {
        text.push_str("\n[patch]\nenabled = false\n\n[inventory]\nenabled = false\n");
        text.push_str(&extra);
    }
}

/// (stored seqs, highest seq) in the collector's `batches` table.
fn stored_seqs(collector: &Collector) -> (BTreeSet<i64>, i64) {
    let database = collector.database();
    let mut statement = database.prepare("SELECT seq FROM batches").unwrap();
    let seqs: BTreeSet<i64> = statement
        .query_map([], |row| row.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let max = seqs.last().copied().unwrap_or(0);
    (seqs, max)
}

/// Samples stored with this timestamp (all of one host batch share it).
fn samples_at(points: &[StoredPoint], timestamp_ms: i64) -> i64 {
    points
        .iter()
        .filter(|point| point.timestamp_ms == timestamp_ms && !point.metric.starts_with("agent."))
        .count() as i64
}

/// (series, timestamp) pairs stored more than once.
fn duplicated_samples(points: &[StoredPoint]) -> i64 {
    let mut seen = std::collections::BTreeMap::new();
    for point in points {
        *seen
            .entry((&point.metric, &point.labels, point.timestamp_ms))
            .or_insert(0) += 1;
    }
    seen.values().filter(|count| **count > 1).count() as i64
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Fault 1: the collector is down while the agent measures every second; the
/// agent is killed with SIGKILL in the middle of the outage and started
/// again; then the collector comes back. Every sample measured (before,
/// during and after the outage) is stored exactly once: the restarted agent
/// continues the spool's epoch and sequence, so the collector's dedup covers
/// what the first run had already delivered.
#[test]
fn collector_outage_and_agent_sigkill_lose_and_duplicate_nothing() {
    let outage = outage(Duration::from_secs(12));
    let mut collector = Collector::start();
    let mut agent = collector.start_agent("host", host_metrics_only(""));
    poll(DEADLINE, "three stored batches", || {
        (stored_seqs(&collector).1 >= 3).then_some(())
    });

    collector.process.kill9();
    let down_at = now_ms();
    let started = Instant::now();
    std::thread::sleep(outage / 2);
    let (_, first_peak) = memory_kib(agent.pid()).unwrap();
    // Kill right after a batch was logged, so none is spooled but unlogged.
    let logged = collected_batches(&agent.log_text()).len();
    poll(DEADLINE, "the next batch to be logged", || {
        (collected_batches(&agent.log_text()).len() > logged).then_some(())
    });
    agent.kill9();
    let first_run = collected_batches(&agent.log_text());
    let agent = collector.restart_agent("host", 2);
    std::thread::sleep(outage.saturating_sub(started.elapsed()));
    let (_, second_peak) = memory_kib(agent.pid()).unwrap();

    collector.restart();
    let up_at = now_ms();
    poll(DEADLINE, "the restarted agent to reconnect", || {
        agent
            .log_text()
            .contains("Connected to collector.")
            .then_some(())
    });
    let second_run = collected_batches(&agent.log_text());
    assert!(
        agent.log_text().contains("continued_epoch=true"),
        "{}",
        agent.describe()
    );
    let measured: Vec<_> = first_run.iter().chain(&second_run).copied().collect();
    let last_seq = measured.iter().map(|batch| batch.seq).max().unwrap();
    poll(DEADLINE, "every measured batch to be stored", || {
        (stored_seqs(&collector).1 >= last_seq).then_some(())
    });

    let points = collector.stored_points();
    let mut missing = Vec::new();
    let (mut measured_in_outage, mut stored_in_outage) = (0, 0);
    for batch in &measured {
        let stored = samples_at(&points, batch.timestamp_ms);
        if stored != batch.samples {
            missing.push((batch.seq, batch.samples, stored));
        }
        if batch.timestamp_ms > down_at && batch.timestamp_ms < up_at {
            measured_in_outage += batch.samples;
            stored_in_outage += stored;
        }
    }
    let duplicates = duplicated_samples(&points);
    let (seqs, max) = stored_seqs(&collector);
    println!(
        "fault 1: outage {:.1}s with the agent killed (SIGKILL) and restarted in the middle; \
         batches measured {} ({} + {} across the two runs), {} during the outage; \
         samples measured during the outage {measured_in_outage}, stored {stored_in_outage}; \
         (series, timestamp) stored twice: {duplicates}; \
         agent peak RSS {:.1} MiB (first run) / {:.1} MiB (second run, debug build)",
        (up_at - down_at) as f64 / 1000.0,
        measured.len(),
        first_run.len(),
        second_run.len(),
        measured
            .iter()
            .filter(|batch| batch.timestamp_ms > down_at && batch.timestamp_ms < up_at)
            .count(),
        mib(first_peak),
        mib(second_peak),
    );
    assert!(
        missing.is_empty(),
        "batches not stored exactly once (seq, measured, stored): {missing:?}"
    );
    assert_eq!(duplicates, 0);
    assert!(
        measured_in_outage > 0,
        "nothing was measured during the outage"
    );
    assert_eq!(measured_in_outage, stored_in_outage);
    assert_eq!(
        seqs.len() as i64,
        max,
        "one epoch, every seq 1..={max} stored once"
    );
}

/// Fault 3: a tiny spool fills while the collector is down. The agent keeps
/// measuring, drops the oldest sample batches (counted in its log), keeps
/// the newest, and its memory stays flat; when the collector is back every
/// batch was either stored or counted as dropped.
#[test]
fn a_full_spool_drops_the_oldest_counts_it_and_memory_stays_flat() {
    let outage = outage(Duration::from_secs(15));
    let mut collector = Collector::start();
    let mut agent = collector.start_agent(
        "tiny",
        host_metrics_only("\n[spool]\nmax_bytes = \"16KiB\"\n"),
    );
    poll(DEADLINE, "two stored batches", || {
        (stored_seqs(&collector).1 >= 2).then_some(())
    });

    collector.process.kill9();
    let (_, stored_before) = stored_seqs(&collector);
    let started = Instant::now();
    let mut rss = Vec::new();
    while started.elapsed() < outage {
        std::thread::sleep(Duration::from_secs(1));
        rss.push(memory_kib(agent.pid()).unwrap().0);
    }
    assert!(agent.is_running(), "{}", agent.describe());
    let dropped_total = |log: &str| -> i64 {
        log.lines()
            .filter(|line| line.contains("Spool full; dropped the oldest unsent sample batches."))
            .filter_map(|line| log_value(line, "dropped_total"))
            .max()
            .unwrap_or(0)
    };
    let dropped = dropped_total(&agent.log_text());
    assert!(dropped > 0, "the spool never filled:\n{}", agent.describe());

    collector.restart();
    poll(DEADLINE, "the agent to reconnect", || {
        (agent.log_text().matches("Connected to collector.").count() >= 2).then_some(())
    });
    // Connected, the spool drains: no batch up to here is dropped any more.
    let measured = collected_batches(&agent.log_text());
    let last_seq = measured.last().unwrap().seq;
    poll(DEADLINE, "the newest batches to be stored", || {
        (stored_seqs(&collector).1 >= last_seq).then_some(())
    });
    agent.kill9();
    let (seqs, _) = stored_seqs(&collector);
    let dropped = dropped_total(&agent.log_text());
    let appended: Vec<i64> = (stored_before + 1..=last_seq).collect();
    let stored: Vec<i64> = appended
        .iter()
        .copied()
        .filter(|seq| seqs.contains(seq))
        .collect();
    // The agent reports its drops to the collector too.
    let reported: f64 = collector
        .stored_points()
        .iter()
        .filter(|point| point.metric == "spool.dropped_batches")
        .map(|point| point.value)
        .fold(0.0, f64::max);
    let half = rss.len() / 2;
    let first_half = rss[..half].iter().max().copied().unwrap_or(0);
    let second_half = rss[half..].iter().max().copied().unwrap_or(0);
    println!(
        "fault 3: spool max_bytes 16KiB, outage {:.0}s; batches measured after the last one \
         stored before the outage: \
         {} appended, {} stored, {dropped} dropped (agent log), {reported} dropped \
         (spool.dropped_batches stored at the collector); RSS (KiB, each second): {rss:?}; \
         max first half {:.1} MiB, second half {:.1} MiB",
        outage.as_secs_f64(),
        appended.len(),
        stored.len(),
        mib(first_half),
        mib(second_half),
    );
    // A batch committed just before the kill may be counted as dropped too,
    // since its acknowledgement never arrived.
    let accounted = stored.len() as i64 + dropped;
    assert!(
        (appended.len() as i64..=appended.len() as i64 + 1).contains(&accounted),
        "every batch is stored or counted as dropped: {} appended, {} stored, {dropped} dropped",
        appended.len(),
        stored.len()
    );
    // Oldest first: what was kept is one run up to the newest.
    let first_kept = *stored.first().unwrap();
    assert_eq!(
        stored,
        (first_kept..=last_seq).collect::<Vec<_>>(),
        "the newest batches are kept"
    );
    assert!(first_kept > stored_before + 1, "the oldest were dropped");
    assert!(
        reported >= 1.0 && reported <= dropped as f64,
        "spool.dropped_batches at the collector: {reported}, agent log: {dropped}"
    );
    assert!(
        second_half <= first_half + 2048,
        "RSS grew during the outage: {rss:?}"
    );
}
