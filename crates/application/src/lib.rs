//! authgate's use cases, written against ports.
//!
//! Each use case is a struct holding `Arc<dyn Port>` fields with one `execute` method; the
//! security decisions (what counts as a failed login, when a refresh token is reuse, who may
//! disable whom) are made here. This crate knows no HTTP, SQL or cryptographic library:
//! adapters implement [`ports`], and the `testing` feature exposes mocks and in-memory fakes.

pub mod ports;
