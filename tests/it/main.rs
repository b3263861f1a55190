//! autoheal's end-to-end tests, one binary: the store conformance suite, the
//! HTTP API through `app(state)`, and the CLI through the built binary.

mod cli;
mod conformance;
mod console;
mod console_actions;
mod console_browser;
mod console_flags;
mod credentials;
mod flags;
mod fleet;
mod fleet_read_model;
mod healing;
mod healing_rollbacks;
mod healing_seams;
mod hostile_input;
mod interop;
mod monitoring;
mod notifications;
mod openapi;
mod ops_cli;
mod outbox;
mod patch_registry;
mod quotas;
mod reported_errors;
mod retention;
mod rule_breakers;
mod rules;
mod schemas;
mod sdk_php;
mod shipped_rules;
mod signed_commands;
mod support;
mod tasks;
mod telemetry;
