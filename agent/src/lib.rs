//! The cloud3 agent: watches a folder, scans, chunks and uploads what the relay lacks, downloads
//! and atomically materialises what other devices changed. It performs what the engine decides.

pub mod activity;
pub mod apply;
pub mod cli;
pub mod cmd;
pub mod connection;
pub mod control;
pub mod daemon;
pub mod db;
pub mod error;
pub mod hasher;
pub mod keep;
pub mod logging;
pub mod nofollow;
pub mod partial;
pub mod quarantine;
pub mod room;
pub mod root;
pub mod session;
pub mod state;
pub mod status;
pub mod syncer;
pub mod transfer;
pub mod versions;
pub mod walk;
pub mod watch;
