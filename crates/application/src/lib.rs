//! authgate's use cases, written against ports.
//!
//! Each use case is a struct holding `Arc<dyn Port>` fields with an `execute`-style method;
//! the security decisions (what counts as a failed login, when a refresh token is reuse, who
//! may disable whom) are made here. This crate knows no HTTP, SQL or cryptographic library:
//! adapters implement [`ports`], and the `testing` feature exposes mocks and in-memory fakes.
//! [`UseCases::new`] builds them all over one [`Ports`] bundle.

mod authenticate;
mod introspect;
mod issuer;
mod login;
mod password;
pub mod ports;
mod refresh;
mod revoke;
mod sampled_log;
mod services;
mod users;

pub use authenticate::{AuthenticateBearer, AuthenticationError, Principal};
pub use introspect::{ActiveToken, IntrospectToken, TokenKind};
pub use issuer::IssuedTokens;
pub use login::{LoginError, LoginRequest, LoginWithPassword};
pub use password::{ChangePassword, ChangePasswordError};
pub use refresh::{RefreshAccessToken, RefreshError, RefreshRequest};
pub use revoke::{RevokeToken, TokenTypeHint};
pub use sampled_log::SampledLog;
pub use services::{Ports, PublishKeys, PurgeExpired, Settings, UseCases};
pub use users::{CreateUser, CreateUserRequest, ManageUser, ReadUsers, UserAdminError, UserPage};

#[cfg(any(test, feature = "testing"))]
pub mod testing;
