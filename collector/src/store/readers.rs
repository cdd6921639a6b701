//! Read-only SQLite connections. WAL lets readers run beside the writer and
//! beside each other, so the API gets a few connections of its own and agent
//! hellos get one nobody else uses: a slow API read never delays an agent's
//! welcome, and one slow read never queues the others behind it.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OpenFlags};

use super::StoreError;

/// Connections for API reads; more would only contend for 2–4 cores.
const API_READERS: usize = 4;

/// Who is reading, which decides the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reader {
    /// The agent stream's hello path.
    Ingest,
    /// Everything else (HTTP API, tasks).
    Api,
}

pub(super) struct Readers {
    ingest: Mutex<Connection>,
    api: Vec<Mutex<Connection>>,
    next: AtomicUsize,
}

fn open_read_only(path: &Path) -> Result<Connection, StoreError> {
    let open = || -> Result<Connection, rusqlite::Error> {
        let connection = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        connection.busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(connection)
    };
    open().map_err(|source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    })
}

fn lock(connection: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    connection
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Readers {
    /// Opens the connections; the database must exist (the writer created it).
    pub(super) fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(Self {
            ingest: Mutex::new(open_read_only(path)?),
            api: (0..API_READERS)
                .map(|_| open_read_only(path).map(Mutex::new))
                .collect::<Result<_, _>>()?,
            next: AtomicUsize::new(0),
        })
    }

    /// A connection for `reader`: for the API, the first free one from a
    /// rotating start, else the next in turn.
    pub(super) fn get(&self, reader: Reader) -> MutexGuard<'_, Connection> {
        if reader == Reader::Ingest {
            return lock(&self.ingest);
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for offset in 0..self.api.len() {
            if let Ok(connection) = self.api[(start + offset) % self.api.len()].try_lock() {
                return connection;
            }
        }
        lock(&self.api[start % self.api.len()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_cannot_write_and_a_held_api_reader_leaves_others_free() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.db");
        let writer = Connection::open(&path).unwrap();
        writer
            .execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t (x); INSERT INTO t VALUES (1);")
            .unwrap();
        let readers = Readers::open(&path).unwrap();
        let held: Vec<_> = (0..API_READERS - 1)
            .map(|_| readers.get(Reader::Api))
            .collect();
        let free = readers.get(Reader::Api);
        let count: i64 = free
            .query_row("SELECT count(*) FROM t", [], |row| row.get(0))
            .unwrap();
        assert_eq!(count, 1);
        assert!(
            free.execute("INSERT INTO t VALUES (2)", []).is_err(),
            "read-only"
        );
        drop(held);
        let ingest = readers.get(Reader::Ingest);
        assert!(ingest.execute("DELETE FROM t", []).is_err(), "read-only");
    }
}
