//! Computes the digest of every stored-procedure source under `sql/` at compile time
//! (`dispatcher::schema::require_current` compares it with the database's record on
//! every command, and a cron- or CGI-started process should not hash 100 KB each time).
//! The same formula as `mailrun.schema_sources` in SQL: SHA-256 over "path:sha256\n" of
//! each file, sorted by path.

use std::path::Path;

use sha2::{Digest, Sha256};

fn main() {
    let root = Path::new("sql");
    println!("cargo:rerun-if-changed=sql");
    let mut rows: Vec<(String, String)> = Vec::new();
    for dir in std::fs::read_dir(root).expect("sql/") {
        let dir = dir.expect("sql/ entry").path();
        if !dir.is_dir() {
            continue;
        }
        println!("cargo:rerun-if-changed={}", dir.display());
        for file in std::fs::read_dir(&dir).expect("sql/ folder") {
            let file = file.expect("sql/ file").path();
            if file.extension().is_some_and(|e| e == "sql") {
                println!("cargo:rerun-if-changed={}", file.display());
                let text = std::fs::read(&file).expect("read sql/ file");
                let rel = file.strip_prefix(root).expect("under sql/");
                let rel = rel.to_string_lossy().replace('\\', "/");
                rows.push((rel, hex::encode(Sha256::digest(&text))));
            }
        }
    }
    rows.sort();
    let joined: String = rows.iter().map(|(p, s)| format!("{p}:{s}\n")).collect();
    let digest = hex::encode(Sha256::digest(joined.as_bytes()));
    let out = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("sources_digest.rs");
    std::fs::write(
        out,
        format!("/// SHA-256 over every `sql/` source (build.rs).\npub const SOURCES_DIGEST_BUILT: &str = \"{digest}\";\n"),
    )
    .expect("write sources_digest.rs");
}
