//! The wasmtime sandbox: verifies signed patch bundles and runs them against a
//! snapshot under explicit limits. Knows nothing of HTTP or SQL.
