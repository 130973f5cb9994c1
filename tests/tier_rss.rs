//! Flat memory: a 1 GiB blob, gzip-compressed at a directory origin, is filled (decompressed, hashed,
//! written) and read end to end by a child process whose peak RSS (`VmHWM`) must stay under 64 MiB.
#![cfg(feature = "tier")]

mod tier_support;

#[cfg(feature = "tier")]
mod rss {
    use std::io::{Read, Write};
    use std::process::Command;
    use std::time::Instant;

    use cachefs::tier::{Digest, DirOrigin, Source, TieredStore};
    use sha2::{Digest as _, Sha256};

    const CHILD_ORIGIN: &str = "CACHEFS_TIER_RSS_ORIGIN";
    const CHILD_DIGEST: &str = "CACHEFS_TIER_RSS_DIGEST";
    const SIZE: u64 = 1 << 30;
    const LIMIT_KIB: u64 = 64 << 10;

    fn vm_hwm_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// Page `i` of the content: its number, then a pattern (compressible, and different per page).
    fn page(i: u64, out: &mut [u8; 4096]) {
        out.fill((i % 251) as u8);
        out[..8].copy_from_slice(&i.to_le_bytes());
    }

    #[test]
    #[ignore = "a child process of a_gigabyte_gzip_blob_is_filled_and_read_in_flat_memory"]
    fn tier_rss_child() {
        let (Ok(origin), Ok(digest)) = (std::env::var(CHILD_ORIGIN), std::env::var(CHILD_DIGEST)) else {
            panic!("run by its parent test")
        };
        let d: Digest = digest.parse().unwrap();
        let disk = tempfile::tempdir().unwrap();
        let store = TieredStore::builder()
            .disk_dir(disk.path())
            .disk_max_bytes(2 << 30)
            .origin(DirOrigin::new(&origin))
            .origin_gzip(true)
            .build()
            .unwrap();
        let started = Instant::now();
        assert_eq!(store.fill(&d).unwrap(), Source::Origin);
        let fill_s = started.elapsed().as_secs_f64();
        let mut blob = store.open(&d).unwrap();
        assert_eq!(blob.len(), SIZE);
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            let n = blob.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            total += n as u64;
        }
        assert_eq!(total, SIZE);
        assert_eq!(Digest::of(&[]).to_string().len(), digest.len());
        let read_digest = format!("sha256:{}", hex(&hasher.finalize()));
        assert_eq!(read_digest, digest, "read back end to end");
        println!(
            "VMHWM_KIB {} FILL_S {fill_s:.1} READ_S {:.1}",
            vm_hwm_kib(),
            started.elapsed().as_secs_f64() - fill_s
        );
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn a_gigabyte_gzip_blob_is_filled_and_read_in_flat_memory() {
        let origin = tempfile::tempdir().unwrap();
        let started = Instant::now();
        let tmp = origin.path().join("blob.gz");
        let mut encoder = flate2::write::GzEncoder::new(
            std::io::BufWriter::new(std::fs::File::create(&tmp).unwrap()),
            flate2::Compression::fast(),
        );
        let mut hasher = Sha256::new();
        let mut p = [0u8; 4096];
        for i in 0..SIZE / 4096 {
            page(i, &mut p);
            hasher.update(p);
            encoder.write_all(&p).unwrap();
        }
        encoder.finish().unwrap().flush().unwrap();
        let digest = format!("sha256:{}", hex(&hasher.finalize()));
        let d: Digest = digest.parse().unwrap();
        std::fs::rename(&tmp, origin.path().join(d.file_name())).unwrap();
        let compressed = std::fs::metadata(origin.path().join(d.file_name())).unwrap().len();
        let prepared = started.elapsed().as_secs_f64();

        let out = Command::new(std::env::current_exe().unwrap())
            .args(["rss::tier_rss_child", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
            .env(CHILD_ORIGIN, origin.path())
            .env(CHILD_DIGEST, &digest)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "child failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        // libtest prints "test <name> ... " before the child's own output, on the same line.
        let at = stdout.find("VMHWM_KIB ").expect("the child's report");
        let line = stdout[at..].lines().next().unwrap();
        let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        eprintln!(
            "1 GiB blob ({compressed} bytes gzip) prepared in {prepared:.1} s; child: {line}; peak RSS {:.1} MiB",
            kib as f64 / 1024.0
        );
        assert!(kib < LIMIT_KIB, "peak RSS {kib} KiB is over {LIMIT_KIB} KiB");
    }
}
