//! Enrollment token secrets: 32 random bytes, shown once as `stwe_<hex>`,
//! stored as their SHA-256 only.

/// A token's secret and the public id it is listed and revoked by.
pub struct EnrollmentSecret {
    /// Short public id (not secret): shown by `enroll-token list`.
    pub id: String,
    /// The secret itself, printed once.
    secret: String,
}

// Never print the secret by accident.
impl std::fmt::Debug for EnrollmentSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnrollmentSecret")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

const PREFIX: &str = "stwe_";

impl EnrollmentSecret {
    pub fn generate() -> Self {
        Self {
            id: hex::encode(rand::random::<[u8; 6]>()),
            secret: format!("{PREFIX}{}", hex::encode(rand::random::<[u8; 32]>())),
        }
    }

    /// The text to hand to `steward-agent enroll --token`.
    pub fn reveal(&self) -> &str {
        &self.secret
    }

    pub fn hash(&self) -> String {
        Self::hash_presented(&self.secret)
    }

    /// The stored form of a presented token (whatever its shape).
    pub fn hash_presented(presented: &str) -> String {
        super::sha256_hex(presented.trim().as_bytes())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tag {0:?} is not KEY=VALUE with 1-64 characters of a-z, 0-9, _ - . in all")]
pub struct TagError(pub String);

/// `--tag K=V` as the asset tag `k:v` (asset tags allow `a-z 0-9 _ - . :`).
pub fn parse_tag(text: &str) -> Result<String, TagError> {
    let error = || TagError(text.to_string());
    let (key, value) = text.split_once('=').ok_or_else(error)?;
    let allowed = |part: &str| {
        !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    };
    if !allowed(key) || !allowed(value) || key.len() + value.len() + 1 > 64 {
        return Err(error());
    }
    Ok(format!(
        "{}:{}",
        key.to_ascii_lowercase(),
        value.to_ascii_lowercase()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_long_random_and_hidden_from_debug() {
        let token = EnrollmentSecret::generate();
        assert_eq!(token.reveal().len(), PREFIX.len() + 64);
        assert_ne!(token.reveal(), EnrollmentSecret::generate().reveal());
        assert!(!format!("{token:?}").contains(token.reveal()));
        assert_eq!(token.hash().len(), 64);
        assert_eq!(
            EnrollmentSecret::hash_presented(&format!(" {}\n", token.reveal())),
            token.hash()
        );
    }

    #[test]
    fn tags_are_key_value_pairs() {
        assert_eq!(parse_tag("env=Prod").unwrap(), "env:prod");
        assert_eq!(parse_tag("team=db-ops").unwrap(), "team:db-ops");
        for bad in ["env", "=x", "x=", "a b=c", "k=v:w"] {
            assert!(parse_tag(bad).is_err(), "{bad}");
        }
    }
}
