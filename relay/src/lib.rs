//! The cloud3 relay: authenticates devices, keeps accounts and each user's folder documents and
//! chunks, and is the always-on peer that merges changes and pushes them to the user's other
//! online devices. It drives the engine's session state machines; it decides no protocol rule.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod admin;
pub mod cli;
pub mod clock;
pub mod cmd;
pub mod config;
pub mod connection;
pub mod disk;
pub mod error;
pub mod guessing;
pub mod hub;
pub mod limits;
pub mod metrics;
pub mod scan;
pub mod server;
pub mod store;
pub mod tls;
