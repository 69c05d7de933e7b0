//! Black-box tests: each starts the real service on `127.0.0.1:0` and speaks HTTP to it.

mod helpers;

mod bearer;
mod cli;
mod discovery;
mod docs;
mod instances;
mod sessions;
mod token;
mod users;
