use super::*;

/// Writes `<root>/<fingerprint>/<name>.cwasm` of `len` bytes and its checksum, last used
/// `age_s` seconds ago.
fn entry(root: &Path, fingerprint: &str, name: &str, len: usize, age_s: u64) -> PathBuf {
    let dir = root.join(fingerprint);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.cwasm"));
    std::fs::write(&path, vec![7u8; len]).unwrap();
    std::fs::write(crate::engine::sum_path(&path), "sum").unwrap();
    let file = std::fs::File::options().write(true).open(&path).unwrap();
    file.set_modified(SystemTime::now() - Duration::from_secs(age_s)).unwrap();
    path
}

#[test]
fn the_least_recently_used_entries_go_first_across_fingerprints_until_under_the_bound() {
    let root = tempfile::tempdir().unwrap();
    let oldest = entry(root.path(), "old-engine", "a", 400, 5000);
    let older = entry(root.path(), "engine", "b", 300, 4000);
    let recent = entry(root.path(), "engine", "c", 300, 100);
    let just_written = entry(root.path(), "engine", "d", 300, 0);
    // 1,300 bytes against a bound of 700: the two oldest go (700 bytes), then it fits.
    assert_eq!(trim(root.path(), 700, &just_written), 2);
    assert!(!oldest.exists() && !older.exists(), "the least recently used went");
    assert!(!crate::engine::sum_path(&oldest).exists(), "with its checksum");
    assert!(recent.exists() && just_written.exists());
    assert!(crate::engine::sum_path(&recent).exists());
    assert_eq!(trim(root.path(), 700, &just_written), 0, "under the bound: nothing more");
    assert!(!root.path().join("old-engine").exists(), "the folder it emptied went");
    assert!(root.path().join("engine").is_dir());
}

#[test]
fn the_file_just_written_stays_even_alone_over_the_bound() {
    let root = tempfile::tempdir().unwrap();
    let other = entry(root.path(), "engine", "a", 100, 10);
    let big = entry(root.path(), "engine", "b", 1000, 0);
    assert_eq!(trim(root.path(), 500, &big), 1);
    assert!(big.exists() && !other.exists());
    // Not a cache at all: nothing to do, no panic.
    assert_eq!(trim(&root.path().join("absent"), 0, &big), 0);
}

#[test]
fn a_load_marks_its_file_used_so_it_outlives_newer_unused_ones() {
    let root = tempfile::tempdir().unwrap();
    let loaded = entry(root.path(), "engine", "a", 300, 9000);
    let unused = entry(root.path(), "engine", "b", 300, 5000);
    let just_written = entry(root.path(), "engine", "c", 300, 0);
    mark_used(&loaded);
    assert_eq!(trim(root.path(), 600, &just_written), 1);
    assert!(loaded.exists() && !unused.exists());
}
