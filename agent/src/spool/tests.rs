use super::record::HEADER_LEN;
use super::*;

const BIG: Limits = Limits {
    max_bytes: 1 << 30,
    segment_bytes: 8 << 20,
};

fn open(dir: &Path, limits: Limits, new_epoch: u64) -> (Spool, Recovery) {
    Spool::open(dir, limits, new_epoch).unwrap()
}

fn payload(seq: u64) -> Vec<u8> {
    format!("batch {seq:04}").into_bytes()
}

fn seqs(records: &[Record]) -> Vec<u64> {
    records.iter().map(|record| record.seq).collect()
}

fn all(spool: &Spool) -> Vec<Record> {
    spool.read_after(0, usize::MAX, usize::MAX).unwrap()
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "seg"))
        .collect();
    files.sort();
    files
}

#[test]
fn records_round_trip_in_order_once_durable() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, recovery) = open(dir.path(), BIG, 7);
    assert_eq!(recovery, Recovery::default());
    assert_eq!(spool.epoch(), 7);
    for seq in 1..=3 {
        let kind = if seq == 2 {
            RecordKind::Inventory
        } else {
            RecordKind::Samples
        };
        assert_eq!(spool.append(kind, &payload(seq)).unwrap().seq, seq);
    }
    assert!(all(&spool).is_empty(), "nothing is handed out before fsync");
    assert_eq!(spool.sync().unwrap(), 3);
    let records = all(&spool);
    assert_eq!(seqs(&records), [1, 2, 3]);
    assert_eq!(records[1].kind, RecordKind::Inventory);
    assert_eq!(records[2].payload, payload(3));
    assert!(records.iter().all(|record| record.epoch == 7));
    // The replay window: a bounded read, continued where it stopped.
    assert_eq!(seqs(&spool.read_after(0, 2, usize::MAX).unwrap()), [1, 2]);
    assert_eq!(seqs(&spool.read_after(2, 2, usize::MAX).unwrap()), [3]);
    assert_eq!(
        seqs(&spool.read_after(1, 1, 1).unwrap()),
        [2],
        "a rewind rescans"
    );
    assert!(spool.read_after(3, 10, usize::MAX).unwrap().is_empty());
}

#[test]
fn a_restart_continues_the_epoch_and_sequence() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (spool, _) = open(dir.path(), BIG, 7);
        for seq in 1..=5 {
            spool.append(RecordKind::Samples, &payload(seq)).unwrap();
        }
        // Dropped without sync or shutdown, as by kill -9: the page cache keeps the writes.
    }
    let (spool, recovery) = open(dir.path(), BIG, 9);
    assert_eq!(recovery.records, 5);
    assert!(recovery.continued_epoch);
    assert_eq!(spool.epoch(), 7, "the spool's epoch, not the new one");
    assert_eq!(spool.append(RecordKind::Samples, b"x").unwrap().seq, 6);
    spool.sync().unwrap();
    assert_eq!(seqs(&all(&spool)), [1, 2, 3, 4, 5, 6]);

    let empty = tempfile::tempdir().unwrap();
    let (spool, recovery) = open(empty.path(), BIG, 9);
    assert!(!recovery.continued_epoch);
    assert_eq!(spool.epoch(), 9);
    assert_eq!(spool.append(RecordKind::Samples, b"x").unwrap().seq, 1);
}

#[test]
fn a_torn_or_corrupt_tail_is_cut_and_earlier_records_kept() {
    // (what, damage to the newest segment's bytes, records expected to survive)
    type Damage = fn(&mut Vec<u8>);
    let cases: [(&str, Damage, usize); 4] = [
        (
            "cut mid-payload",
            |bytes| bytes.truncate(bytes.len() - 3),
            2,
        ),
        (
            "cut mid-header",
            |bytes| bytes.truncate(bytes.len() - 20),
            2,
        ),
        (
            "flipped byte in the middle record",
            |bytes| {
                let middle = 8 + (HEADER_LEN + 10) + HEADER_LEN + 2;
                bytes[middle] ^= 1;
            },
            1,
        ),
        (
            "garbage appended",
            |bytes| bytes.extend_from_slice(&[0xff; 40]),
            3,
        ),
    ];
    for (what, damage, kept) in cases {
        let dir = tempfile::tempdir().unwrap();
        {
            let (spool, _) = open(dir.path(), BIG, 7);
            for seq in 1..=3 {
                spool.append(RecordKind::Samples, &payload(seq)).unwrap();
            }
        }
        let files = segment_files(dir.path());
        let segment = files.last().unwrap();
        let mut bytes = std::fs::read(segment).unwrap();
        damage(&mut bytes);
        std::fs::write(segment, &bytes).unwrap();

        let (spool, recovery) = open(dir.path(), BIG, 9);
        assert_eq!(recovery.records, kept as u64, "{what}");
        assert!(recovery.damaged_bytes > 0, "{what}");
        assert_eq!(spool.epoch(), 7, "{what}");
        let records = all(&spool);
        assert_eq!(
            seqs(&records),
            (1..=kept as u64).collect::<Vec<_>>(),
            "{what}"
        );
        assert_eq!(records[0].payload, payload(1), "{what}");
        let next = spool.append(RecordKind::Samples, b"x").unwrap().seq;
        assert_eq!(next, kept as u64 + 1, "{what}");
        drop(spool);
        // The cut is permanent: a second start finds nothing to repair.
        let (_, again) = open(dir.path(), BIG, 9);
        assert_eq!(again.damaged_bytes, 0, "{what}");
        assert_eq!(again.records, kept as u64 + 1, "{what}");
    }
}

#[test]
fn acknowledged_segments_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_bytes: 1 << 20,
        segment_bytes: 100,
    };
    let (spool, _) = open(dir.path(), limits, 1);
    for seq in 1..=10 {
        spool.append(RecordKind::Samples, &[0; 70]).unwrap();
        assert_eq!(spool.stats().appended, seq);
    }
    spool.sync().unwrap();
    // 95-byte records in 100-byte segments: one record each.
    assert_eq!(segment_files(dir.path()).len(), 10);
    spool.acknowledge(4);
    assert_eq!(segment_files(dir.path()).len(), 6);
    assert_eq!(seqs(&all(&spool)), [5, 6, 7, 8, 9, 10]);
    spool.acknowledge(10);
    let files = segment_files(dir.path());
    assert_eq!(files.len(), 1, "the active segment stays: {files:?}");
    assert_eq!(
        spool.stats().bytes,
        std::fs::metadata(&files[0]).unwrap().len()
    );
    assert!(spool.read_after(10, 10, usize::MAX).unwrap().is_empty());
}

#[test]
fn over_the_limit_the_oldest_samples_go_and_inventory_stays() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_bytes: 1000,
        segment_bytes: 200,
    };
    let (spool, _) = open(dir.path(), limits, 1);
    let mut over = false;
    for seq in 1..=40 {
        // Inventory at seqs 1 and 20, in segments that also hold samples.
        let kind = if seq == 1 || seq == 20 {
            RecordKind::Inventory
        } else {
            RecordKind::Samples
        };
        over |= spool.append(kind, &payload(seq)).unwrap().over_limit;
    }
    assert!(over, "appends report that the limit is passed");
    spool.sync().unwrap();
    let dropped = spool.enforce_limit().unwrap();
    let stats = spool.stats();
    assert!(stats.bytes <= limits.max_bytes, "{stats:?}");
    let on_disk: u64 = segment_files(dir.path())
        .iter()
        .map(|path| std::fs::metadata(path).unwrap().len())
        .sum();
    assert_eq!(stats.bytes, on_disk, "the index matches the files");
    assert_eq!(stats.dropped_batches, dropped);

    let records = all(&spool);
    let kept = seqs(&records);
    assert!(
        kept.contains(&1) && kept.contains(&20),
        "inventory kept: {kept:?}"
    );
    let samples: Vec<u64> = records
        .iter()
        .filter(|record| record.kind == RecordKind::Samples)
        .map(|record| record.seq)
        .collect();
    assert_eq!(
        samples.len() as u64 + dropped,
        38,
        "every sample batch is either kept or counted as dropped"
    );
    // The newest are kept: what survives is a contiguous run up to the last.
    let first = samples[0];
    let expected: Vec<u64> = (first..=40).filter(|seq| *seq != 20).collect();
    assert_eq!(samples, expected);
    assert!(
        kept.windows(2).all(|pair| pair[0] < pair[1]),
        "still in order"
    );

    // The rewritten segments survive a restart with the same content.
    drop(spool);
    let (spool, recovery) = open(dir.path(), limits, 2);
    assert_eq!(recovery.damaged_bytes, 0);
    assert_eq!(seqs(&all(&spool)), kept);
}

#[test]
fn inventory_alone_over_the_limit_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_bytes: 300,
        segment_bytes: 100,
    };
    let (spool, _) = open(dir.path(), limits, 1);
    for _ in 0..8 {
        spool.append(RecordKind::Inventory, &[1; 80]).unwrap();
    }
    spool.sync().unwrap();
    assert_eq!(spool.enforce_limit().unwrap(), 0);
    assert_eq!(all(&spool).len(), 8);
    assert_eq!(spool.stats().dropped_batches, 0);
}

#[test]
fn a_reader_in_a_rewritten_segment_finds_its_place_again() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_bytes: 400,
        segment_bytes: 150,
    };
    let (spool, _) = open(dir.path(), limits, 1);
    for seq in 1..=6 {
        let kind = if seq == 2 {
            RecordKind::Inventory
        } else {
            RecordKind::Samples
        };
        spool.append(kind, &[seq as u8; 40]).unwrap();
    }
    spool.sync().unwrap();
    assert_eq!(seqs(&spool.read_after(0, 1, usize::MAX).unwrap()), [1]);
    for seq in 7..=12 {
        spool.append(RecordKind::Samples, &[seq as u8; 40]).unwrap();
    }
    spool.sync().unwrap();
    assert!(spool.enforce_limit().unwrap() > 0);
    let rest = seqs(&spool.read_after(1, usize::MAX, usize::MAX).unwrap());
    assert_eq!(rest[0], 2, "the inventory record is next: {rest:?}");
    assert_eq!(*rest.last().unwrap(), 12);
}

#[test]
fn a_collector_ahead_of_the_spool_moves_new_records_above_it() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = open(dir.path(), BIG, 1);
    spool.append(RecordKind::Samples, b"a").unwrap();
    spool.skip_past(1);
    assert_eq!(spool.append(RecordKind::Samples, b"b").unwrap().seq, 2);
    spool.skip_past(50);
    assert_eq!(spool.append(RecordKind::Samples, b"c").unwrap().seq, 51);
    drop(spool);
    let (spool, _) = open(dir.path(), BIG, 1);
    assert_eq!(seqs(&all(&spool)), [1, 2, 51]);
}

#[test]
fn a_segment_deleted_behind_the_spools_back_leaves_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_bytes: 200,
        segment_bytes: 100,
    };
    let (spool, _) = open(dir.path(), limits, 1);
    for _ in 0..4 {
        spool.append(RecordKind::Samples, &[0; 70]).unwrap();
    }
    spool.sync().unwrap();
    std::fs::remove_file(&segment_files(dir.path())[0]).unwrap();
    // Terminates, and the index forgets the missing file.
    spool.enforce_limit().unwrap();
    assert!(spool.stats().bytes <= 200);
    assert_eq!(seqs(&all(&spool)), [4], "the newest stays");
}
