//! The host's integration tests: one binary (one wasmtime build, one link), one module per
//! feature. Each drives the crate's public API with real modules and real bundles.

mod bundles;
mod commands;
mod common;
mod cross_impl;
mod hostile;
mod rollback;
mod shipped;
mod tools;
