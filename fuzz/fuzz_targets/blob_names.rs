//! Blob names and the Redis tier's manifests: `Digest::parse` accepts exactly the canonical form (what it
//! prints parses back to the same digest), and the manifest decoder accepts exactly what the encoder
//! writes for a consistent blob of that digest: anything else is refused, never misread.
#![no_main]

use arbitrary::Arbitrary;
use cachefs::tier::{Digest, fuzz_manifest};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    name: &'a str,
    manifest: &'a [u8],
    size: u64,
    chunk_size: u32,
}

fuzz_target!(|input: Input<'_>| {
    if let Ok(d) = Digest::parse(input.name) {
        let printed = d.to_string();
        assert_eq!(Digest::parse(&printed).expect("the printed form parses"), d);
        assert_eq!(printed, format!("sha256:{}", d.hex()));
        assert_eq!(input.name, printed, "only the canonical form is accepted");
    }
    let d = Digest::of(input.name.as_bytes());
    let chunk_size = u64::from(input.chunk_size);
    let (parsed, encoded) = fuzz_manifest(input.manifest, &d, input.size, chunk_size);
    if let Some((size, chunk, chunks)) = parsed {
        // Accepted: it must be exactly what the encoder writes for those numbers.
        let (_, again) = fuzz_manifest(b"", &d, size, chunk);
        assert_eq!(again.as_bytes(), input.manifest, "accepted a manifest the encoder would not write");
        assert_eq!(chunks, size.div_ceil(chunk));
    }
    // What the encoder writes for a consistent blob is accepted as those numbers.
    if (1..=64 << 20).contains(&chunk_size) {
        let (parsed, _) = fuzz_manifest(encoded.as_bytes(), &d, 0, 1);
        assert_eq!(parsed, Some((input.size, chunk_size, input.size.div_ceil(chunk_size))));
    }
});
