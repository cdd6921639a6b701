//! How domain values are written to and read from SQLite. The store is the
//! boundary: a value the domain does not know is a read error, never a
//! default, so a corrupt or newer database is noticed instead of misread.

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};

use crate::domain::{IncidentEvent, IncidentState, Labels, ProblemState, Severity};

fn text_of<T, E>(value: ValueRef<'_>, parse: impl FnOnce(&str) -> Result<T, E>) -> FromSqlResult<T>
where
    E: std::error::Error + Send + Sync + 'static,
{
    parse(value.as_str()?).map_err(|error| FromSqlError::Other(Box::new(error)))
}

impl ToSql for Severity {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for Severity {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        text_of(value, str::parse)
    }
}

impl ToSql for IncidentState {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for IncidentState {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        text_of(value, str::parse)
    }
}

impl ToSql for IncidentEvent {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.key().into_owned()))
    }
}

impl FromSql for IncidentEvent {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        text_of(value, IncidentEvent::from_key)
    }
}

impl ToSql for ProblemState {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for ProblemState {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        text_of(value, str::parse)
    }
}

/// Labels as stored: a JSON object of strings.
pub(super) fn labels_from_json(text: &str) -> FromSqlResult<Labels> {
    serde_json::from_str(text).map_err(|error| FromSqlError::Other(Box::new(error)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    #[test]
    fn unknown_values_in_the_database_are_errors_not_defaults() {
        let connection = Connection::open_in_memory().unwrap();
        let read = |sql: &str| -> rusqlite::Result<Severity> {
            connection.query_row(sql, [], |row| row.get(0))
        };
        assert_eq!(read("SELECT 'major'").unwrap(), Severity::Major);
        let error = read("SELECT 'urgent'").unwrap_err();
        assert!(error.to_string().contains("unknown severity"), "{error}");
        let event: rusqlite::Result<IncidentEvent> =
            connection.query_row("SELECT 'escalated.2.1'", [], |row| row.get(0));
        assert_eq!(
            event.unwrap(),
            IncidentEvent::Escalated { level: 2, round: 1 }
        );
        let state: rusqlite::Result<IncidentState> =
            connection.query_row("SELECT 'closed'", [], |row| row.get(0));
        assert!(state.is_err());
        assert!(labels_from_json("not json").is_err());
    }
}
