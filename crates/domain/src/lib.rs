//! authgate's pure rules: what a valid username, password, scope set and access token are,
//! and which tokens to issue and accept.
//!
//! This crate never awaits, never performs I/O and never reads the clock: time is an input
//! (`now: Timestamp`) so every rule is a deterministic function that a plain `#[test]` can check.
//! It knows nothing of HTTP, JSON, SQL or any cryptographic library; adapters convert at the edge.

mod client;
mod password;
mod scope;
mod throttle;
mod time;
mod token;
mod user;
mod username;

pub use client::{ClientId, ClientIdError};
pub use password::{Password, PasswordHash, PasswordPolicy, PasswordRuleViolation};
pub use scope::{Scope, ScopeError, ScopeSet};
pub use throttle::{ThrottleDecision, ThrottlePolicy, ThrottleState};
pub use time::Timestamp;
pub use token::{AccessClaims, ClaimsRejection, SessionEpoch, TokenPolicy};
pub use user::{ProfileError, User, UserId, UserProfile};
pub use username::{Username, UsernameError};
