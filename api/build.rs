// `sqlx::migrate!` embeds ../migrations when the crate compiles; without this line cargo
// would not rebuild the crate when only a migration changes, and a binary would carry
// stale migrations.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
