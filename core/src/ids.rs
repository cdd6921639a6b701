//! Identifiers and secrets Steward generates.

/// A random (version 4) UUID in its canonical lower-case text form.
pub fn new_uuid_v4() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Whether `text` is a UUID in canonical hyphenated form.
pub fn is_uuid(text: &str) -> bool {
    text.len() == 36 && uuid::Uuid::try_parse(text).is_ok()
}

/// A random 192-bit secret as 48 hex digits (agent and API tokens).
pub fn random_token() -> String {
    hex::encode(rand::random::<[u8; 24]>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_uuids_are_canonical_and_distinct() {
        let first = new_uuid_v4();
        assert!(is_uuid(&first), "{first}");
        assert_eq!(&first[14..15], "4", "version 4: {first}");
        assert_ne!(first, new_uuid_v4());
    }

    #[test]
    fn braced_or_short_text_is_not_a_uuid() {
        assert!(!is_uuid("garbage"));
        assert!(!is_uuid("{67e55044-10b1-426f-9247-bb680e5fe0c8}"));
        assert!(!is_uuid("67e5504410b1426f9247bb680e5fe0c8"));
    }

    #[test]
    fn tokens_are_48_hex_digits() {
        let token = random_token();
        assert_eq!(token.len(), 48);
        assert!(token.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(token, random_token());
    }
}
