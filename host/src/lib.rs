//! The patch host: verifies signed WebAssembly patch bundles and runs them against a
//! snapshot of a plugin's state in a wasmtime sandbox with explicit limits. Knows nothing of
//! HTTP, SQL or Rhai.
//!
//! The flow, for the server:
//! 1. [`verify_bundle`] (or [`tools::load_bundle_dir`]) with the [`TrustedKeys`] and the
//!    [`AcceptedVersions`] it keeps → a [`VerifiedBundle`], or a [`VerifyError`].
//! 2. One [`Host`] per process; [`Host::dry_run`] (synchronous: call it from
//!    `spawn_blocking`) → a [`DryRun`] with the operations, the new state and the restore
//!    operations, or a [`RunError`]. The snapshot is never mutated.
//! 3. [`ops::apply`] and [`ops::restore_operations`] are pure; the plugin applies the same
//!    operations, and the restore list is the rollback plan.
//!
//! The bundle format and the patch ABI are documented in `patches/README.md`.

pub mod bundle;
pub mod command;
pub mod conformance;
pub mod error;
pub mod ops;
pub mod sandbox;
pub mod tools;

pub use bundle::{
    key_id, sign_bundle, verify_bundle, AcceptedVersions, Manifest, PatchType, PublicKey,
    SigningKey, TrustedKeys, VerifiedBundle, ABI_VERSION,
};
pub use error::{RunError, RunErrorKind, ToolError, VerifyError};
pub use ops::{Operation, Severity, State};
pub use sandbox::{abi_input, DryRun, Host, HostConfig, Limits};
