//! The resource-owner password grant (RFC 6749 §4.3).

use std::sync::Arc;

use authgate_domain::{ClientId, Password, PasswordHash, ScopeError, ScopeSet, Username};

use crate::issuer::{IssuedTokens, TokenIssuer};
use crate::ports::{BoxError, HashError, PasswordHasher, UserRepository};

/// A password-grant request, as the client sent it.
#[derive(Debug)]
pub struct LoginRequest {
    /// The username as typed; normalised and validated here, so that a malformed name is
    /// answered exactly like an unknown one.
    pub username: String,
    /// The password as typed.
    pub password: Password,
    /// The requested scope; `None` asks for everything the user may have.
    pub scope: Option<ScopeSet>,
    /// The client the tokens are for.
    pub client_id: ClientId,
}

/// Why a password grant failed.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Unknown user, wrong password or disabled account; deliberately one variant.
    #[error("invalid username or password")]
    InvalidCredentials,
    /// The client asked for more than the user may have.
    #[error(transparent)]
    InvalidScope(#[from] ScopeError),
    /// Every hashing slot is busy; the client should retry shortly.
    #[error("the server is busy; retry shortly")]
    Busy,
    /// A port failed; the source is logged, never shown to the client.
    #[error("token issuance failed")]
    Internal(#[source] BoxError),
}

/// Trades a username and password for tokens.
pub struct LoginWithPassword {
    users: Arc<dyn UserRepository>,
    hasher: Arc<dyn PasswordHasher>,
    issuer: Arc<TokenIssuer>,
    /// Hash of a random password, verified against when the user is unknown.
    decoy_hash: PasswordHash,
}

impl LoginWithPassword {
    pub(crate) fn new(
        users: Arc<dyn UserRepository>,
        hasher: Arc<dyn PasswordHasher>,
        issuer: Arc<TokenIssuer>,
        decoy_hash: PasswordHash,
    ) -> Self {
        Self { users, hasher, issuer, decoy_hash }
    }

    /// Verifies the credentials and issues tokens.
    ///
    /// # Errors
    ///
    /// - [`LoginError::InvalidCredentials`] for an unknown or malformed username, a wrong
    ///   password or a disabled user; each costs exactly one password verification.
    /// - [`LoginError::InvalidScope`] when the requested scope exceeds the user's.
    /// - [`LoginError::Busy`] when hashing is at capacity.
    /// - [`LoginError::Internal`] when a port fails.
    pub async fn execute(&self, request: LoginRequest) -> Result<IssuedTokens, LoginError> {
        let credentials = match Username::parse(&request.username) {
            Ok(username) => self.users.find_credentials(&username).await.map_err(|error| LoginError::Internal(error.into()))?,
            Err(_) => None,
        };

        // Verify even when the user does not exist, so that both paths cost one Argon2 run
        // and response times do not reveal which usernames exist.
        let hash = credentials.as_ref().map_or(&self.decoy_hash, |(_, hash)| hash);
        let verification = self.hasher.verify(&request.password, hash).await.map_err(|error| match error {
            HashError::Busy => LoginError::Busy,
            HashError::Internal(source) => LoginError::Internal(source),
        })?;

        let user = match credentials {
            Some((user, _)) if verification.matches && !user.disabled => user,
            _ => return Err(LoginError::InvalidCredentials),
        };
        let scope = ScopeSet::grant(request.scope, user.scopes)?;

        if verification.needs_rehash {
            self.upgrade_hash(&user.id, &request.password).await;
        }

        let tokens = self.issuer.start_session(&user, scope, request.client_id).await.map_err(LoginError::Internal)?;
        tracing::info!(user.id = %user.id, token.scope = %scope, "password grant succeeded");
        Ok(tokens)
    }

    /// Re-hashes a verified password under the configured parameters. A failure only means
    /// the upgrade waits for the next login, so it is logged, not returned.
    async fn upgrade_hash(&self, user_id: &authgate_domain::UserId, password: &Password) {
        let result = match self.hasher.hash(password).await {
            Ok(hash) => self.users.upgrade_password_hash(*user_id, &hash).await.map_err(BoxError::from),
            Err(error) => Err(error.into()),
        };
        match result {
            Ok(()) => tracing::info!(user.id = %user_id, "password hash upgraded to the configured parameters"),
            Err(error) => tracing::warn!(user.id = %user_id, error = %error, "password hash upgrade failed"),
        }
    }
}
