//! Paging for list endpoints: `?limit=N&cursor=C`. The body stays a JSON
//! array; when more rows follow, the `X-Next-Cursor` header carries the
//! cursor for the next page (absent on the last page). Cursors are opaque to
//! clients.

use axum::Json;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::{ApiError, ErrorCode};

pub const NEXT_CURSOR: &str = "x-next-cursor";

/// `limit` bounded to `1..=max`, `default` when absent.
pub fn limit(requested: Option<u32>, default: u32, max: u32) -> u32 {
    requested.unwrap_or(default).clamp(1, max)
}

/// An id cursor (newest-first lists page by "id below the last one shown").
pub fn id_cursor(cursor: Option<&str>) -> Result<Option<i64>, ApiError> {
    cursor
        .map(|text| {
            text.parse::<i64>().map_err(|_| {
                ApiError::new(StatusCode::BAD_REQUEST, format!("invalid cursor {text:?}"))
                    .with_code(ErrorCode::InvalidCursor)
            })
        })
        .transpose()
}

/// A cursor made of several strings (e.g. host name and id), hex-encoded so
/// it survives any query string.
pub fn encode_parts(parts: &[&str]) -> String {
    hex::encode(parts.join("\n"))
}

pub fn decode_parts(cursor: Option<&str>) -> Result<Option<Vec<String>>, ApiError> {
    cursor
        .map(|text| {
            hex::decode(text)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .map(|joined| joined.split('\n').map(str::to_string).collect())
                .ok_or_else(|| {
                    ApiError::new(StatusCode::BAD_REQUEST, format!("invalid cursor {text:?}"))
                        .with_code(ErrorCode::InvalidCursor)
                })
        })
        .transpose()
}

/// The page as a JSON array, with `X-Next-Cursor` when `next` is set.
pub fn respond<T: Serialize>(items: Vec<T>, next: Option<String>) -> Response {
    let mut response = Json(items).into_response();
    if let Some(value) = next.and_then(|next| HeaderValue::from_str(&next).ok()) {
        response.headers_mut().insert(NEXT_CURSOR, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_bounded_and_cursors_round_trip() {
        assert_eq!(limit(None, 100, 1000), 100);
        assert_eq!(limit(Some(0), 100, 1000), 1);
        assert_eq!(limit(Some(50_000), 100, 1000), 1000);
        assert_eq!(id_cursor(Some("42")).unwrap(), Some(42));
        assert_eq!(
            id_cursor(Some("x")).unwrap_err().code(),
            ErrorCode::InvalidCursor
        );
        let cursor = encode_parts(&["web 1", "id-2"]);
        assert_eq!(
            decode_parts(Some(&cursor)).unwrap(),
            Some(vec!["web 1".to_string(), "id-2".to_string()])
        );
        assert!(decode_parts(Some("zz")).is_err());
    }
}
