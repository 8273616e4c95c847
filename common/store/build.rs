//! Re-embeds the migrations (`sqlx::migrate!`) when one is added or changed.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
