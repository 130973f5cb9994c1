//! `CacheFs::save_hot_list` / `warm_from_hot_list`: the order, the capacity cut, odd paths, and every way
//! a list can be damaged.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cachefs::Policy;
use cachefs::fs::{CacheFs, Error, MemBackend, WarmOptions, WarmPriority};

fn lines(list: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(list).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn listed_paths(list: &std::path::Path) -> Vec<String> {
    lines(list)[1..].iter().map(|v| v["path"].as_str().unwrap().to_string()).collect()
}

/// Content is sharded, so the list interleaves the shards' orders: near the top it is the most
/// valuable, not exactly in order.
#[test]
fn the_list_is_in_policy_order_with_sizes() {
    let backend = Arc::new(MemBackend::new());
    let fs = CacheFs::builder(backend).policy(Policy::Lru).build();
    for i in 0..400usize {
        fs.write(format!("f{i}"), vec![1u8; 100 + i]).unwrap();
    }
    for i in (0..400).rev() {
        fs.read(format!("f{i}")).unwrap(); // f0 ends most recent
    }
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("hot.jsonl");
    assert_eq!(fs.save_hot_list(&list).unwrap(), 400);
    let all = lines(&list);
    assert_eq!(all[0]["format"], "cachefs-hot-list");
    assert_eq!(all[0]["version"], 1);
    assert_eq!(all[0]["files"], 400);
    for line in &all[1..] {
        let i: u64 = line["path"].as_str().unwrap()[1..].parse().unwrap();
        assert_eq!(line["bytes"], 100 + i, "each file's cached bytes");
    }
    let top: Vec<u64> = listed_paths(&list)[..50].iter().map(|p| p[1..].parse().unwrap()).collect();
    let recent = top.iter().filter(|&&i| i < 100).count();
    assert!(recent >= 47, "the top 50 are among the 100 most recent: {top:?}");
}

#[test]
fn a_restarted_fs_warms_what_fits_most_valuable_last() {
    let backend = Arc::new(MemBackend::new());
    let fs = CacheFs::builder(backend.clone()).policy(Policy::Lru).build();
    for i in 0..400 {
        fs.write(format!("d/{i}"), vec![7u8; 1_000]).unwrap();
    }
    for i in 0..400 {
        fs.read(format!("d/{i}")).unwrap(); // d/399 ends most recent
    }
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("hot.jsonl");
    fs.save_hot_list(&list).unwrap();

    // Room for about 100 of the 400 (each 1,000 bytes charged with the cache's overhead per file).
    let small = CacheFs::builder(backend).policy(Policy::Lru).max_bytes(120_000).build();
    let seen = Arc::new(AtomicU64::new(0));
    let progress = Arc::clone(&seen);
    let options = WarmOptions {
        workers: 1,
        progress: Some(Arc::new(move |p| {
            progress.store(p.files, Ordering::Relaxed);
        })),
        ..WarmOptions::default()
    };
    let report = small.warm_from_hot_list(&list, options).unwrap();
    assert!((90..=105).contains(&report.files), "the listed sizes decide what is warmed: {}", report.files);
    assert_eq!(seen.load(Ordering::Relaxed), report.files, "progress reported through the warm");
    // What is cached, seen without reading (a read that misses would evict others).
    let cached = dir.path().join("cached.jsonl");
    small.save_hot_list(&cached).unwrap();
    let cached = listed_paths(&cached);
    // Each of the 8 content shards holds an eighth of the capacity: one that drew more than its share
    // of the warmed files drops its least valuable, so a few of the top 50 may be missing.
    let top = (350..400).filter(|i| cached.contains(&format!("d/{i}"))).count();
    assert!(top >= 45, "the 50 most valuable are cached but {top}");
    // The list interleaves the shards' orders, so its first hundred reach a little below the top hundred.
    assert!(cached.iter().all(|p| p["d/".len()..].parse::<u32>().unwrap() >= 200), "{cached:?}");
}

#[test]
fn files_gone_since_are_reported_and_the_rest_warmed() {
    let backend = Arc::new(MemBackend::new());
    let fs = CacheFs::builder(backend.clone()).build();
    for name in ["keep", "gone", "also"] {
        fs.write(name, b"x".to_vec()).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("hot.jsonl");
    fs.save_hot_list(&list).unwrap();
    fs.remove("gone").unwrap();
    let fresh = CacheFs::builder(backend.clone()).build();
    let report = fresh.warm_from_hot_list(&list, WarmOptions::default()).unwrap();
    assert_eq!(report.files, 2);
    assert_eq!(report.errors.len(), 1);
    assert_eq!(report.errors[0].0, "gone");
    assert!(report.errors[0].1.is_not_found());
    let strict = CacheFs::builder(backend).build();
    let options = WarmOptions { skip_errors: false, workers: 1, ..WarmOptions::default() };
    assert!(matches!(strict.warm_from_hot_list(&list, options), Err(Error::WarmStopped { .. })));
}

#[test]
fn odd_paths_round_trip() {
    let backend = Arc::new(MemBackend::new());
    let fs = CacheFs::builder(backend.clone()).build();
    let names = ["new\nline", "quote\"and\\slash", "ünï cødé/ファイル", "#not a comment", " spaced "];
    for n in names {
        fs.write(n, n.as_bytes().to_vec()).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("hot.jsonl");
    assert_eq!(fs.save_hot_list(&list).unwrap(), 5);
    let fresh = CacheFs::builder(backend).build();
    let report = fresh.warm_from_hot_list(&list, WarmOptions { priority: WarmPriority::High, ..Default::default() });
    let report = report.unwrap();
    assert_eq!((report.files, report.errors.len()), (5, 0), "{:?}", report.errors);
    for n in names {
        assert_eq!(fresh.read(n).unwrap().as_ref(), n.as_bytes());
    }
    assert_eq!(fresh.stats().read_misses, 5, "only the warm's loads missed");
}

#[test]
fn an_empty_cache_saves_an_empty_list() {
    let fs = CacheFs::builder(MemBackend::new()).build();
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("hot.jsonl");
    assert_eq!(fs.save_hot_list(&list).unwrap(), 0);
    assert_eq!(fs.warm_from_hot_list(&list, WarmOptions::default()).unwrap().files, 0);
}

#[test]
fn saving_replaces_the_old_list_whole_and_leaves_no_temporary_file() {
    let fs = CacheFs::builder(MemBackend::new()).build();
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("hot.jsonl");
    std::fs::write(&list, "an old list that is much longer than the new one will be\n".repeat(100)).unwrap();
    fs.write("a", b"1".to_vec()).unwrap();
    fs.save_hot_list(&list).unwrap();
    assert_eq!(listed_paths(&list), ["a"]);
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 1, "{names:?}");
    // A directory that does not exist: an error naming the list, nothing written.
    let err = fs.save_hot_list(dir.path().join("missing/hot.jsonl")).unwrap_err();
    assert!(err.is_not_found(), "{err}");
}

#[test]
fn damaged_lists_are_refused_before_anything_is_warmed() {
    let backend = Arc::new(MemBackend::new());
    let fs = CacheFs::builder(backend.clone()).build();
    for i in 0..4 {
        fs.write(format!("f{i}"), b"data".to_vec()).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("hot.jsonl");
    fs.save_hot_list(&list).unwrap();
    let good = std::fs::read_to_string(&list).unwrap();
    let header_end = good.find('\n').unwrap() + 1;
    let cases: Vec<(&str, String)> = vec![
        ("empty", String::new()),
        ("truncated by a line", good[..good.trim_end().rfind('\n').unwrap() + 1].to_string()),
        ("truncated mid-line", good[..good.len() - 5].to_string()),
        ("no header", good[header_end..].to_string()),
        ("other format", good.replace("cachefs-hot-list", "something-else")),
        ("version 2", good.replace("\"version\":1", "\"version\":2")),
        ("a garbage line", format!("{good}garbage\n")),
        ("one line too many", format!("{good}{{\"path\":\"extra\",\"bytes\":1}}\n")),
        ("binary", "\u{0}\u{1}\u{2}".to_string()),
    ];
    for (what, text) in cases {
        std::fs::write(&list, &text).unwrap();
        let fresh = CacheFs::builder(backend.clone()).build();
        let err = fresh.warm_from_hot_list(&list, WarmOptions::default()).unwrap_err();
        assert!(matches!(err, Error::InvalidHotList { .. }), "{what}: {err}");
        assert!(err.to_string().contains("hot.jsonl"), "{what}: names the list: {err}");
        assert_eq!(fresh.stats().read_misses, 0, "{what}: nothing warmed");
    }
    let err = fs.warm_from_hot_list(dir.path().join("absent.jsonl"), WarmOptions::default()).unwrap_err();
    assert!(err.is_not_found(), "{err}");
}

#[test]
fn a_hand_written_list_with_bad_paths_reports_them() {
    let backend = Arc::new(MemBackend::new());
    let fs = CacheFs::builder(backend.clone()).build();
    fs.write("ok", b"fine".to_vec()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("hot.jsonl");
    let text = "{\"format\":\"cachefs-hot-list\",\"version\":1,\"files\":3}\n\
                {\"path\":\"../../etc/passwd\",\"bytes\":1}\n\
                {\"path\":\"/abs\",\"bytes\":1}\n\
                {\"path\":\"ok\",\"bytes\":4}\n";
    std::fs::write(&list, text).unwrap();
    let report = fs.warm_from_hot_list(&list, WarmOptions::default()).unwrap();
    assert_eq!(report.files, 1);
    assert_eq!(report.errors.len(), 2);
    assert!(report.errors.iter().all(|(_, e)| matches!(e, Error::InvalidPath { .. })));
}
