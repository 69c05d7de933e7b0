//! Scopes (RFC 6749 §3.3): the closed catalogue and the rule for narrowing a request.

use std::fmt;

/// One permission from authgate's closed catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Read one's own profile.
    ProfileRead,
    /// Change one's own profile and password.
    ProfileWrite,
    /// Read any user.
    UsersRead,
    /// Create, change and delete users.
    UsersWrite,
    /// Introspect tokens (RFC 7662).
    TokensIntrospect,
}

impl Scope {
    /// Every scope, in catalogue order.
    pub const ALL: [Self; 5] = [
        Self::ProfileRead,
        Self::ProfileWrite,
        Self::UsersRead,
        Self::UsersWrite,
        Self::TokensIntrospect,
    ];

    /// The scope's wire name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ProfileRead => "profile:read",
            Self::ProfileWrite => "profile:write",
            Self::UsersRead => "users:read",
            Self::UsersWrite => "users:write",
            Self::TokensIntrospect => "tokens:introspect",
        }
    }

    /// A one-line description for documentation and consent screens.
    #[must_use]
    pub const fn description(self) -> &'static str {
        match self {
            Self::ProfileRead => "Read your own profile",
            Self::ProfileWrite => "Change your own profile and password",
            Self::UsersRead => "Read any user's profile",
            Self::UsersWrite => "Create, change, disable and delete users",
            Self::TokensIntrospect => "Introspect access and refresh tokens",
        }
    }

    /// Parses one wire name.
    ///
    /// # Errors
    ///
    /// [`ScopeError::Unknown`] for a name outside the catalogue.
    pub fn parse(name: &str) -> Result<Self, ScopeError> {
        Self::ALL
            .into_iter()
            .find(|scope| scope.as_str() == name)
            .ok_or_else(|| ScopeError::Unknown(truncate_for_display(name)))
    }

    const fn bit(self) -> u8 {
        1 << self as u8
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// Why a scope string or request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// A name outside the catalogue (truncated to 64 characters for display).
    #[error("unknown scope '{0}'")]
    Unknown(String),
    /// A known scope the user or token may not have.
    #[error("scope '{0}' is not allowed")]
    NotAllowed(Scope),
}

/// A set of scopes.
///
/// Invariant: only catalogue scopes; iteration and display are in catalogue order,
/// so equal sets always render to the same string.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ScopeSet(u8);

impl ScopeSet {
    /// The empty set.
    #[must_use]
    pub const fn empty() -> Self {
        Self(0)
    }

    /// Every scope in the catalogue.
    #[must_use]
    pub fn all() -> Self {
        Self::from_iter(Scope::ALL)
    }

    /// What a new user gets when no scopes are given: `profile:read profile:write`.
    #[must_use]
    pub fn default_for_new_user() -> Self {
        Self::from_iter([Scope::ProfileRead, Scope::ProfileWrite])
    }

    /// Parses a space-delimited scope string (RFC 6749 §3.3). Repeats are harmless;
    /// runs of spaces are tolerated; the empty string is the empty set.
    ///
    /// # Errors
    ///
    /// [`ScopeError::Unknown`] naming the first unknown scope.
    pub fn parse(raw: &str) -> Result<Self, ScopeError> {
        raw.split(' ')
            .filter(|name| !name.is_empty())
            .map(Scope::parse)
            .collect()
    }

    /// Whether `scope` is in the set.
    #[must_use]
    pub const fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    /// Whether every scope of `self` is in `other`.
    #[must_use]
    pub const fn is_subset_of(self, other: Self) -> bool {
        self.0 & !other.0 == 0
    }

    /// Whether the set has no scopes.
    #[must_use]
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The set with `scope` added.
    #[must_use]
    pub const fn with(self, scope: Scope) -> Self {
        Self(self.0 | scope.bit())
    }

    /// The scopes to grant for a request: all of `allowed` when nothing was requested,
    /// else the request itself when it is within `allowed`.
    ///
    /// # Errors
    ///
    /// [`ScopeError::NotAllowed`] naming the first requested scope outside `allowed`.
    pub fn grant(requested: Option<Self>, allowed: Self) -> Result<Self, ScopeError> {
        match requested {
            None => Ok(allowed),
            Some(requested) if requested.is_empty() => Ok(allowed),
            Some(requested) => match requested.iter().find(|scope| !allowed.contains(*scope)) {
                Some(scope) => Err(ScopeError::NotAllowed(scope)),
                None => Ok(requested),
            },
        }
    }

    /// The scopes in catalogue order.
    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL
            .into_iter()
            .filter(move |scope| self.contains(*scope))
    }

    /// The scope names in catalogue order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        self.iter().map(Scope::as_str)
    }
}

impl FromIterator<Scope> for ScopeSet {
    fn from_iter<I: IntoIterator<Item = Scope>>(scopes: I) -> Self {
        scopes.into_iter().fold(Self::empty(), Self::with)
    }
}

impl fmt::Display for ScopeSet {
    /// The space-delimited form of RFC 6749 §3.3.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, name) in self.names().enumerate() {
            if index > 0 {
                formatter.write_str(" ")?;
            }
            formatter.write_str(name)?;
        }
        Ok(())
    }
}

impl fmt::Debug for ScopeSet {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "ScopeSet({self})")
    }
}

/// Bounds what an error message echoes back from hostile input.
fn truncate_for_display(name: &str) -> String {
    name.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_space_delimited_scopes_in_any_order() {
        let set = ScopeSet::parse("users:read  profile:read users:read").expect("valid");

        assert_eq!(set.to_string(), "profile:read users:read");
        assert_eq!(ScopeSet::parse(""), Ok(ScopeSet::empty()));
    }

    #[test]
    fn unknown_scopes_are_named() {
        assert_eq!(
            ScopeSet::parse("profile:read admin"),
            Err(ScopeError::Unknown("admin".into()))
        );
        assert_eq!(
            ScopeSet::parse("PROFILE:READ"),
            Err(ScopeError::Unknown("PROFILE:READ".into()))
        );
        assert_eq!(
            ScopeSet::parse("profile:read\tusers:read"),
            Err(ScopeError::Unknown("profile:read\tusers:read".into()))
        );
    }

    #[test]
    fn grant_defaults_to_everything_allowed() {
        let allowed = ScopeSet::default_for_new_user();

        assert_eq!(ScopeSet::grant(None, allowed), Ok(allowed));
        assert_eq!(
            ScopeSet::grant(Some(ScopeSet::empty()), allowed),
            Ok(allowed)
        );
    }

    #[test]
    fn grant_narrows_but_never_widens() {
        let allowed = ScopeSet::default_for_new_user();
        let narrower = ScopeSet::from_iter([Scope::ProfileRead]);
        let wider = narrower.with(Scope::UsersWrite);

        assert_eq!(ScopeSet::grant(Some(narrower), allowed), Ok(narrower));
        assert_eq!(
            ScopeSet::grant(Some(wider), allowed),
            Err(ScopeError::NotAllowed(Scope::UsersWrite))
        );
    }

    #[test]
    fn every_scope_has_a_distinct_name_and_a_description() {
        for scope in Scope::ALL {
            assert_eq!(Scope::parse(scope.as_str()), Ok(scope));
            assert!(!scope.description().is_empty());
        }
        assert_eq!(ScopeSet::all().iter().count(), Scope::ALL.len());
    }

    #[test]
    fn echoed_unknown_names_are_bounded() {
        let Err(ScopeError::Unknown(echo)) = Scope::parse(&"x".repeat(10_000)) else {
            panic!("must fail")
        };

        assert_eq!(echo.len(), 64);
    }

    fn any_set() -> impl Strategy<Value = ScopeSet> {
        proptest::collection::vec(proptest::sample::select(Scope::ALL.to_vec()), 0..6)
            .prop_map(ScopeSet::from_iter)
    }

    proptest! {
        #[test]
        fn display_then_parse_round_trips(set in any_set()) {
            prop_assert_eq!(ScopeSet::parse(&set.to_string()), Ok(set));
        }

        #[test]
        fn a_granted_set_is_always_within_the_allowed_set(requested in any_set(), allowed in any_set()) {
            if let Ok(granted) = ScopeSet::grant(Some(requested), allowed) {
                prop_assert!(granted.is_subset_of(allowed));
            }
        }

        #[test]
        fn parse_never_panics(raw in "\\PC{0,200}") {
            let _ = ScopeSet::parse(&raw);
        }
    }
}
