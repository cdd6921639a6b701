//! Compaction of aged chunks and rollups into one row per series per day
//! (SQLite only: PostgreSQL keeps no chunks).

use super::*;
use crate::store::compaction::DAY_MS;

/// Bits of every point, so NaN and -0.0 compare exactly.
fn bits(points: &[(i64, f64)]) -> Vec<(i64, u64)> {
    points.iter().map(|&(t, v)| (t, v.to_bits())).collect()
}

/// Three days and a bit at one point a minute with 0–14 ms of jitter,
/// values of every kind (f32, decimals, NaN, -0.0); returns the points.
async fn fill(store: &Store) -> Vec<(i64, f64)> {
    let mut expected = Vec::new();
    for index in 0..3 * 1440 + 100u64 {
        let t = index as i64 * 60_000 + (index as i64 * 7) % 15;
        let value = match index % 97 {
            // Not a chunk's last point: `series.last_value` cannot hold NaN.
            5 => f64::NAN,
            6 => -0.0,
            _ if index < 1440 => f64::from((index as f32 * 0.37).sin() * 40.0 + 50.0),
            _ => (index % 300) as f64 / 100.0,
        };
        expected.push((t, value));
        let mut samples = vec![sample("m", "/", value, t)];
        if index % 10 == 0 {
            samples.push(sample("m", "/boot", index as f64, t));
        }
        store.commit_batch(batch(index + 1, samples)).await.unwrap();
        if index == 700 || index == 2000 {
            // Chunks that do not line up with days.
            store.close_head_chunks().await.unwrap();
        }
    }
    expected
}

async fn rows(store: &Store, table: &'static str) -> Vec<(i64, i64, i64, u8)> {
    store
        .sqlite()
        .read(move |connection| {
            let mut statement = connection.prepare(&format!(
                "SELECT series_id, start_ms, end_ms, data FROM {table} ORDER BY series_id, start_ms"
            ))?;
            let rows = statement.query_map([], |row| {
                let data: Vec<u8> = row.get(3)?;
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, data[0]))
            })?;
            rows.collect()
        })
        .await
        .unwrap()
}

/// Every series-day before `before_day` has one chunk row and one rollup row.
async fn one_row_per_series_day(store: &Store, before_day: i64) {
    for table in ["chunks", "rollups"] {
        let mut per_day: BTreeMap<(i64, i64), usize> = BTreeMap::new();
        for (series, start, _, _) in rows(store, table).await {
            *per_day
                .entry((series, start.div_euclid(DAY_MS)))
                .or_default() += 1;
        }
        for ((_, day), count) in per_day {
            if day < before_day {
                assert_eq!(count, 1, "{table}: one row per series-day");
            }
        }
    }
}

fn query(step_ms: Option<i64>) -> HistoryQuery {
    HistoryQuery {
        agent_id: "a1".into(),
        metric: "m".into(),
        labels: Labels::from([("mount".to_string(), "/boot".to_string())]),
        from_ms: 0,
        to_ms: 3 * DAY_MS,
        step_ms,
    }
}

/// Guards the read rule across head, ordinary chunks and merged day rows,
/// and that a merge, a reopen or retention never loses or repeats a point.
#[tokio::test]
async fn compaction_keeps_every_point_exactly_once_and_retention_still_drops_whole_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let store = Store::open(&path).unwrap();
    let expected = fill(&store).await;
    let boot = store.series_points(&series_key("/boot")).await.unwrap();
    assert_eq!(boot.len(), 442);
    let counts = store.counts().await.unwrap();
    let hourly = store.history(query(Some(3_600_000))).await.unwrap();
    let minutes = store.history(query(Some(60_000))).await.unwrap();
    let five = store.history(query(Some(300_000))).await.unwrap();
    let chunk_rows = rows(&store, "chunks").await.len();

    // Days 0 and 1 are over by the start of day 2; day 2 is not.
    let report = store.compact_aged(2 * DAY_MS).await.unwrap();
    assert!(report.chunks_merged > report.chunks_written && report.chunks_written >= 2);
    assert!(report.rollups_merged > report.rollups_written);
    let after = rows(&store, "chunks").await;
    assert!(after.len() < chunk_rows);
    for (_, start_ms, _, format) in &after {
        assert_eq!(
            *format == 2,
            *start_ms < 2 * DAY_MS,
            "only ended days are rewritten"
        );
    }
    one_row_per_series_day(&store, 2).await;
    assert_eq!(
        bits(&store.series_points(&series_key("/")).await.unwrap()),
        bits(&expected)
    );
    assert_eq!(
        store.series_points(&series_key("/boot")).await.unwrap(),
        boot
    );
    assert_eq!(store.counts().await.unwrap(), counts);
    assert_eq!(store.history(query(Some(3_600_000))).await.unwrap(), hourly);
    assert_eq!(store.history(query(Some(60_000))).await.unwrap(), minutes);
    assert_eq!(store.history(query(Some(300_000))).await.unwrap(), five);
    assert!(
        store.compact_aged(2 * DAY_MS).await.unwrap().is_empty(),
        "a second pass has nothing to do"
    );

    // Everything, head included once written; then a restart without close.
    store.close_head_chunks().await.unwrap();
    store.compact_aged(i64::MAX).await.unwrap();
    one_row_per_series_day(&store, i64::MAX).await;
    drop(store);
    let store = Store::open(&path).unwrap();
    assert_eq!(
        bits(&store.series_points(&series_key("/")).await.unwrap()),
        bits(&expected)
    );
    assert_eq!(store.counts().await.unwrap(), counts);
    assert_eq!(store.history(query(Some(3_600_000))).await.unwrap(), hourly);

    // Retention drops whole day rows by their end: the rows of day 0 end
    // on day 1 (their last chunks started before midnight), those of day 1
    // on day 2.
    let before = rows(&store, "chunks").await.len();
    store.prune(2 * DAY_MS).await.unwrap();
    assert_eq!(
        rows(&store, "chunks").await.len(),
        before - 2,
        "day 0 of each series"
    );
    let left = store.series_points(&series_key("/")).await.unwrap();
    assert_eq!(
        bits(&left),
        bits(&expected[1781..]),
        "day 0 went as a whole, nothing else did"
    );
    assert_eq!(store.prune_rollups(2 * DAY_MS).await.unwrap(), 2);
    store.close().await;
}

/// A new chunk of an already merged day (late points) is merged into it.
#[tokio::test]
async fn a_late_chunk_is_merged_into_its_day() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.db")).unwrap();
    let mut expected = Vec::new();
    for index in 0..100u64 {
        let t = index as i64 * 10_000;
        expected.push((t, index as f64));
        store
            .commit_batch(batch(index + 1, vec![sample("m", "/", index as f64, t)]))
            .await
            .unwrap();
    }
    store.close_head_chunks().await.unwrap();
    let first = store.compact_aged(DAY_MS).await.unwrap();
    assert_eq!(
        (first.chunks_merged, first.chunks_written),
        (1, 1),
        "a lone format-1 chunk is rewritten"
    );
    store
        .commit_batch(batch(500, vec![sample("m", "/", 0.5, 5)]))
        .await
        .unwrap();
    expected.insert(1, (5, 0.5));
    store.close_head_chunks().await.unwrap();
    let second = store.compact_aged(DAY_MS).await.unwrap();
    assert_eq!((second.chunks_merged, second.chunks_written), (2, 1));
    assert_eq!(
        store.series_points(&series_key("/")).await.unwrap(),
        expected
    );
    store.close().await;
}

/// The periodic pass looks back a few days only: days that start before
/// its `since_ms` are left as they are, the later ones are merged.
#[tokio::test]
async fn a_look_back_leaves_older_days_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.db")).unwrap();
    let expected = fill(&store).await;
    store.compact_days(DAY_MS, 2 * DAY_MS).await.unwrap();
    let after = rows(&store, "chunks").await;
    assert!(
        after
            .iter()
            .any(|(_, start_ms, _, format)| *start_ms < DAY_MS && *format != 2),
        "day 0 is before the look-back and keeps its chunks"
    );
    assert!(
        after.iter().any(
            |(_, start_ms, _, format)| (DAY_MS..2 * DAY_MS).contains(start_ms) && *format == 2
        ),
        "day 1 is merged"
    );
    assert_eq!(
        bits(&store.series_points(&series_key("/")).await.unwrap()),
        bits(&expected)
    );
}
