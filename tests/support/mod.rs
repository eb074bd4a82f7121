//! Shared test support: real data and real servers the integration tests use.
#![allow(dead_code)]

#[cfg(all(feature = "serve", feature = "hub"))]
pub mod browser;
pub mod cli;
pub mod collect;
pub mod family;
pub mod fixtures;
pub mod hub_server;
pub mod minilm;
pub mod postgres;
#[cfg(feature = "s3")]
pub mod s3;
pub mod venv;
