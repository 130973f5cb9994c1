//! Tools as users run them, through a real mount in each write mode: `tar c | tar x`, `rsync -a` (and a
//! second rsync that finds nothing to do), `git init`/`commit`/`fsck`, `sqlite3` building and querying a
//! database; after unmounting, the backing directory holds the same valid repository and database.

mod mount_support;

use std::path::Path;

use mount_support::{Mounted, fuse_available, sh};

fn tools_work(mode: &str) {
    let mut m = Mounted::new(&["--mode", mode, "--flush-delay", "200ms"]);
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../src").canonicalize().unwrap();
    let src = src.display();
    let mnt = m.mnt.clone();
    sh(&mnt, &format!("mkdir t && tar c -C {src} . | tar x -C t && diff -r {src} t"));
    sh(&mnt, &format!("rsync -a {src}/ r/ && diff -r {src} r"));
    let again = sh(&mnt, &format!("rsync -a -i {src}/ r/"));
    assert!(again.trim().is_empty(), "a second rsync found changes (times or modes not kept):\n{again}");
    sh(
        &mnt,
        "git init -q g && cd g && git config user.email t@example.com && git config user.name t \
         && mkdir -p a/b && echo one > a/b/f && echo two > top && git add -A && git commit -qm first \
         && echo three >> top && git commit -qam second && git fsck --full --strict && git gc -q \
         && test \"$(git log --format=%s | tr '\\n' ' ')\" = 'second first '",
    );
    let rows = sh(
        &mnt,
        "sqlite3 db.sqlite 'create table t(k integer primary key, v text); \
         with recursive n(i) as (select 1 union all select i + 1 from n where i < 5000) \
         insert into t select i, hex(randomblob(64)) from n; \
         create index tv on t(v); delete from t where k % 3 = 0; vacuum;' \
         && sqlite3 db.sqlite 'select count(*), sum(k) from t; pragma integrity_check;'",
    );
    assert_eq!(rows.split_whitespace().collect::<Vec<_>>(), ["3334|8336667", "ok"], "{mode}");
    let status = m.unmount();
    assert!(status.success(), "{mode}: exit {status}\n{}", m.log());
    let backing = &m.backing;
    sh(backing, &format!("diff -r {src} t && diff -r {src} r && cd g && git fsck --full --strict"));
    let rows = sh(backing, "sqlite3 db.sqlite 'select count(*), sum(k) from t; pragma integrity_check;'");
    assert_eq!(rows.split_whitespace().collect::<Vec<_>>(), ["3334|8336667", "ok"], "{mode}: on the backing directory");
}

#[test]
fn tar_rsync_git_and_sqlite_work_write_through() {
    if fuse_available("tar_rsync_git_and_sqlite_work_write_through") {
        tools_work("write-through");
    }
}

#[test]
fn tar_rsync_git_and_sqlite_work_write_back() {
    if fuse_available("tar_rsync_git_and_sqlite_work_write_back") {
        tools_work("write-back");
    }
}

#[test]
fn tar_rsync_git_and_sqlite_work_write_around() {
    if fuse_available("tar_rsync_git_and_sqlite_work_write_around") {
        tools_work("write-around");
    }
}
