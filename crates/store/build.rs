//! Build script for mandate-store: it only tells Cargo to rebuild the crate
//! when a migration file changes, because `sqlx::migrate!` embeds the SQL
//! files at compile time and Cargo would otherwise not notice edits to them.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
