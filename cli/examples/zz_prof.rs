// Scratch profiling harness (not committed): the same loops over cachefs and quick_cache.
use std::sync::Arc;
type V = Arc<[u8; 64]>;

#[inline(never)]
fn reads_cf(cache: &cachefs::Cache<u64, V>, n: u64, keys: u64) -> u64 {
    let (mut x, mut s) = (1u64, 0u64);
    for _ in 0..n {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        if let Some(v) = cache.get(&((x >> 33) % keys)) { s += v[0] as u64; }
    }
    s
}
#[inline(never)]
fn reads_qc(cache: &quick_cache::sync::Cache<u64, V>, n: u64, keys: u64) -> u64 {
    let (mut x, mut s) = (1u64, 0u64);
    for _ in 0..n {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        if let Some(v) = cache.get(&((x >> 33) % keys)) { s += v[0] as u64; }
    }
    s
}
#[inline(never)]
fn churn_cf(cache: &cachefs::Cache<u64, V>, n: u64, v: &V) -> u64 {
    let (mut x, mut s) = (7u64, 0);
    for _ in 0..n {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let k = (x >> 33) % 1_000_000;
        match cache.get(&k) { Some(_) => s += 1, None => cache.insert(k, v.clone()) }
    }
    s
}
#[inline(never)]
fn churn_qc(cache: &quick_cache::sync::Cache<u64, V>, n: u64, v: &V) -> u64 {
    let (mut x, mut s) = (7u64, 0);
    for _ in 0..n {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let k = (x >> 33) % 1_000_000;
        match cache.get(&k) { Some(_) => s += 1, None => cache.insert(k, v.clone()) }
    }
    s
}
fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    let v: V = Arc::new([1; 64]);
    match mode.as_str() {
        "read_cf" => { let c = cachefs::Cache::builder().max_capacity(200_000).build(); for k in 0..100_000 { c.insert(k, v.clone()); } println!("{}", reads_cf(&c, 2_000_000, 100_000)); }
        "read_qc" => { let c = quick_cache::sync::Cache::new(200_000); for k in 0..100_000 { c.insert(k, v.clone()); } println!("{}", reads_qc(&c, 2_000_000, 100_000)); }
        "churn_cf" => { let c = cachefs::Cache::builder().max_capacity(100_000).build(); churn_cf(&c, 300_000, &v); println!("{}", churn_cf(&c, 1_000_000, &v)); }
        _ => { let c = quick_cache::sync::Cache::new(100_000); churn_qc(&c, 300_000, &v); println!("{}", churn_qc(&c, 1_000_000, &v)); }
    }
}
