//! Black-box tests: each starts the real service on `127.0.0.1:0` and speaks HTTP to it.

mod helpers;
mod process;
mod raw;

mod bearer;
mod cli;
mod cors;
mod discovery;
mod docs;
mod hostile;
mod hygiene;
mod instances;
mod rotation;
mod sessions;
mod slow_clients;
mod throttling;
mod tls;
mod token;
mod users;
