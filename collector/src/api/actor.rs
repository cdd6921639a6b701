//! Who is acting: the API token a request was authenticated with.

pub use crate::access::Scope;

/// The token behind a request, put into the request's extensions by
/// `auth::authenticate`; handlers take it with `axum::Extension<Actor>`.
/// Its name is what incident timelines, asset history and maintenance
/// windows record as "by" — never a name the request body claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub name: String,
    pub scope: Scope,
}
