//! `WHERE` clauses holding only the filters a list was given, so SQLite can
//! pick an index: `(?1 IS NULL OR state = ?1)` reads every row instead.

use rusqlite::types::Value;

#[derive(Default)]
pub(super) struct Conditions {
    sql: Vec<&'static str>,
    values: Vec<Value>,
}

impl Conditions {
    /// `sql` with one `?` for `value`.
    pub fn bind(&mut self, sql: &'static str, value: impl Into<Value>) {
        self.sql.push(sql);
        self.values.push(value.into());
    }

    /// `sql` without parameters.
    pub fn fixed(&mut self, sql: &'static str) {
        self.sql.push(sql);
    }

    /// `WHERE a AND b …`, or nothing without conditions.
    pub fn where_clause(&self) -> String {
        if self.sql.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.sql.join(" AND "))
        }
    }

    pub fn params(self) -> rusqlite::ParamsFromIter<Vec<Value>> {
        rusqlite::params_from_iter(self.values)
    }
}
