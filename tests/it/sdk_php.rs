//! The PHP plugin SDK (`sdk/php/`) under its own PHPUnit suite, run from `cargo test` so that
//! the README's one test command covers it: its unit tests, the conformance kit, and the
//! example WooCommerce plugin end to end against this build's `autoheal serve` on a real
//! MariaDB database and on SQLite. Required under CI (`.ci/run` installs php, phpunit and
//! MariaDB); skipped with a message elsewhere when phpunit is missing.

use crate::support::repo;
use std::process::Command;

#[test]
fn the_php_sdk_passes_its_suite_against_the_real_server() {
    let usable = Command::new("phpunit")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !usable {
        assert!(
            std::env::var_os("CI").is_none(),
            "phpunit is required in CI (Debian: phpunit, php-cli, php-sqlite3, php-mysql)"
        );
        eprintln!("SKIPPED: phpunit not found; the PHP SDK's suite did not run");
        return;
    }
    let output = Command::new("phpunit")
        .arg("--configuration")
        .arg(repo().join("sdk/php/phpunit.xml"))
        .env("AUTOHEAL_BIN", env!("CARGO_BIN_EXE_autoheal"))
        .current_dir(repo())
        .output()
        .expect("phpunit runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the PHP SDK's suite failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Nothing the suite needs may be silently skipped under CI.
    if std::env::var_os("CI").is_some() {
        assert!(
            !stdout.contains("Skipped:"),
            "skipped tests under CI:\n{stdout}"
        );
    }
}
