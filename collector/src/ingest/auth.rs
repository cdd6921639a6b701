//! Agent token checks. Tokens are compared in constant time and never logged.

#[derive(Debug)]
pub struct AgentAuthenticator {
    tokens: Vec<Vec<u8>>,
}

impl AgentAuthenticator {
    pub fn new(tokens: &[String]) -> Self {
        Self {
            tokens: tokens
                .iter()
                .map(|token| token.as_bytes().to_vec())
                .collect(),
        }
    }

    pub fn is_valid(&self, presented: &str) -> bool {
        // Check every token so the time taken does not reveal which one was close.
        self.tokens.iter().fold(false, |found, token| {
            found | constant_time_eq(token, presented.as_bytes())
        })
    }
}

/// Equality whose running time depends only on the lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_configured_tokens() {
        let auth = AgentAuthenticator::new(&["first-token-0000".into(), "second-token-000".into()]);
        assert!(auth.is_valid("second-token-000"));
        assert!(!auth.is_valid("second-token-001"));
        assert!(!auth.is_valid(""));
        assert!(!auth.is_valid("second-token-0000"));
    }
}
