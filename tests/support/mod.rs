//! Shared test support: real data and real servers the integration tests use.
#![allow(dead_code)]

pub mod minilm;
