//! Who is acting on a write request. Set by [`super::require_token`] as a
//! request extension; handlers take it with `axum::Extension<Actor>` rather
//! than trusting a name in the body.

/// The identity behind an authenticated request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub name: String,
}
