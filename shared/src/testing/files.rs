//! The files a test finds under a directory: the local store's buckets, a stack's data.

use std::path::{Path, PathBuf};

/// Every file under `dir`, sorted; none when `dir` does not exist.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.map(|e| e.expect("a directory entry")) {
            if entry.file_type().expect("a file type").is_dir() {
                pending.push(entry.path());
            } else {
                files.push(entry.path());
            }
        }
    }
    files.sort();
    files
}

/// The names of the files under `root/prefix`, relative to `root` (`raw/order/…/ord-1.json`),
/// sorted; none when there is no such directory.
pub fn names_under(root: &Path, prefix: &str) -> Vec<String> {
    files_under(&root.join(prefix))
        .iter()
        .map(|file| {
            file.strip_prefix(root)
                .expect("a file under the root")
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}
