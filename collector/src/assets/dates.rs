//! Calendar dates written by operators (`purchase_date`, `warranty_end`,
//! disposal dates): strict ISO `YYYY-MM-DD`, compared in UTC.
//!
//! Dates are stored as the text the operator wrote (after validation) so the
//! record round-trips through JSON and SQLite unchanged; these helpers turn
//! them into instants when a check needs one.

use jiff::civil::Date;
use jiff::tz::TimeZone;

/// One day in milliseconds.
pub const DAY_MS: i64 = 24 * 3600 * 1000;

/// Parses a strict `YYYY-MM-DD` date. Other ISO forms (`20240131`,
/// `2024-01-31T00:00`) are refused so stored values stay uniform.
pub fn parse_date(text: &str) -> Result<Date, String> {
    let bytes = text.as_bytes();
    let shaped = bytes.len() == 10
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && bytes
            .iter()
            .enumerate()
            .all(|(index, byte)| index == 4 || index == 7 || byte.is_ascii_digit());
    if !shaped {
        return Err(format!("{text:?} is not a date in YYYY-MM-DD form"));
    }
    text.parse::<Date>()
        .map_err(|error| format!("{text:?} is not a valid date: {error}"))
}

/// Unix milliseconds of midnight UTC at the start of `date`.
pub fn start_of_day_ms(date: Date) -> Option<i64> {
    date.to_zoned_datetime(TimeZone::UTC)
        .ok()
        .map(|zoned| zoned.timestamp().as_millisecond())
}

/// Unix milliseconds of midnight UTC at the start of the ISO date `text`;
/// `None` when it does not parse (stored dates were validated, so that means
/// a record written by something else).
pub fn date_ms(text: &str) -> Option<i64> {
    start_of_day_ms(parse_date(text).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_strict_iso_dates() {
        for (text, ok) in [
            ("2024-02-29", true),
            ("2023-02-29", false),
            ("2024-13-01", false),
            ("20240131", false),
            ("2024-1-31", false),
            ("2024-01-31T00:00", false),
            ("", false),
            ("31/01/2024", false),
        ] {
            assert_eq!(parse_date(text).is_ok(), ok, "{text:?}");
        }
    }

    #[test]
    fn dates_are_midnight_utc() {
        assert_eq!(date_ms("1970-01-02"), Some(DAY_MS));
        assert_eq!(date_ms("2024-01-01"), Some(1_704_067_200_000));
        assert_eq!(date_ms("nope"), None);
    }
}
