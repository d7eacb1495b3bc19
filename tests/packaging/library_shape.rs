//! The library's API is the product's: no command-line crate (`clap`) and
//! no binary's error crate (`anyhow`) in `src/` outside `src/bin/`, and the
//! load generator lives in its own crate (`bench/`). Reads the checkout's
//! own sources only.

use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`, bounded in depth.
fn sources(dir: &Path, depth: u32, out: &mut Vec<PathBuf>) {
    assert!(depth < 16, "{} nests too deep", dir.display());
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            sources(&path, depth + 1, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn the_library_uses_neither_clap_nor_anyhow() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bins = root.join("src/bin");
    let mut files = Vec::new();
    sources(&root.join("src"), 0, &mut files);
    let mut offenders = Vec::new();
    for file in files.iter().filter(|file| !file.starts_with(&bins)) {
        let text = std::fs::read_to_string(file).expect("read source");
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            if code.contains("clap::") || code.contains("anyhow::") || code.contains("use clap") {
                offenders.push(format!("{}:{}: {code}", file.display(), n + 1));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "library code uses clap/anyhow:\n{}",
        offenders.join("\n")
    );
    assert!(
        !root.join("src/bench/mod.rs").exists() && !root.join("src/bin/knock-bench.rs").exists(),
        "the load generator belongs in bench/ (crate knock-bench)"
    );
}
