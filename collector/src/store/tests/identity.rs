//! The store suite for agent identity, enrollment and API tokens, on both backends.
