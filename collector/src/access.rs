//! API access vocabulary: token scopes, the token format and its hash.
//!
//! Pure: no I/O, no clock. A plaintext token exists only in the request that
//! presents it and in the one output of `token create` / `init`; everything
//! kept (database rows, config tokens in memory) is its SHA-256. A token is
//! 32 random bytes, so a plain hash is enough: there is nothing to
//! brute-force that a slow password hash would protect.

use std::fmt;

/// What a token may do; each scope includes the ones below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Every `GET`.
    Read,
    /// Reads plus incident, asset and maintenance changes.
    Write,
    /// Writes plus token and agent administration.
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::Read, Scope::Write, Scope::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|scope| scope.as_str() == name)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Tokens start with this, so a leaked one is recognisable (secret scanners,
/// log greps) and cannot be mistaken for an agent token.
pub const TOKEN_PREFIX: &str = "stw_";

/// A new random API token: the prefix and 32 random bytes in hex.
pub fn new_token() -> String {
    format!("{TOKEN_PREFIX}{}", hex::encode(rand::random::<[u8; 32]>()))
}

/// SHA-256 of a token: what is stored and compared.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenHash(pub [u8; 32]);

impl TokenHash {
    pub fn of(token: &str) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(digest.as_ref());
        Self(bytes)
    }

    /// Equality in time independent of where the bytes differ.
    pub fn matches(&self, other: &TokenHash) -> bool {
        self.0
            .iter()
            .zip(other.0.iter())
            .fold(0u8, |difference, (a, b)| difference | (a ^ b))
            == 0
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A hash is not secret, but a short prefix is all anyone needs to see.
        write!(f, "TokenHash({}…)", hex::encode(&self.0[..4]))
    }
}

/// A token name: 1–64 of `[A-Za-z0-9._-]`, so it is safe in logs, timelines and CLIs.
pub fn valid_token_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'))
}

/// Names `config-1`, `config-2`, … belong to `[auth] api_tokens`.
pub fn is_config_token_name(name: &str) -> bool {
    name.strip_prefix("config-")
        .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|byte| byte.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_ordered_and_named() {
        assert!(Scope::Read < Scope::Write && Scope::Write < Scope::Admin);
        for scope in Scope::ALL {
            assert_eq!(Scope::from_name(scope.as_str()), Some(scope));
        }
        assert_eq!(Scope::from_name("root"), None);
    }

    #[test]
    fn tokens_are_random_prefixed_and_hash_to_sha256() {
        let token = new_token();
        assert!(token.starts_with(TOKEN_PREFIX) && token.len() == TOKEN_PREFIX.len() + 64);
        assert_ne!(token, new_token());
        // SHA-256("abc"), FIPS 180-2 appendix B.1.
        assert_eq!(
            hex::encode(TokenHash::of("abc").0),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(TokenHash::of(&token).matches(&TokenHash::of(&token)));
        assert!(!TokenHash::of(&token).matches(&TokenHash::of("other")));
        assert!(!format!("{:?}", TokenHash::of(&token)).contains(&token));
    }

    #[test]
    fn token_names_are_restricted() {
        for good in ["admin", "ci-deploy", "grafana.read", "config-1"] {
            assert!(valid_token_name(good), "{good}");
        }
        for bad in ["", "a b", "x\n", "é", &"n".repeat(65)] {
            assert!(!valid_token_name(bad), "{bad:?}");
        }
        assert!(is_config_token_name("config-12"));
        assert!(!is_config_token_name("config-") && !is_config_token_name("config-x"));
    }
}
