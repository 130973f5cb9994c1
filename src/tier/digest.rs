//! Content addresses: `sha256:` followed by 64 lowercase hex digits, as in the OCI image spec.
//!
//! A [`Digest`] names the bytes the store serves, which are the bytes on its disk and in its remote
//! tier. When the origin serves gzip (`origin_gzip`), the digest names the *decompressed* content, and
//! every tier verifies that. Parsing is strict (no uppercase, no whitespace, no other algorithm) because
//! a digest becomes a file name and a Redis key: two spellings of one blob would be two blobs.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

use super::Error;

const PREFIX: &str = "sha256:";
const FILE_PREFIX: &str = "sha256_";

/// A sha256 content address. Parse one with [`str::parse`] or [`Digest::parse`]; compute one with
/// [`Digest::of`].
///
/// ```
/// use cachefs::tier::Digest;
///
/// let d = Digest::of(b"hello");
/// assert_eq!(d.to_string(), "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
/// assert_eq!(d.file_name(), format!("sha256_{}", d.hex()));
/// assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
/// assert!("sha256:2CF2".parse::<Digest>().is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

impl Digest {
    /// Parses `sha256:<64 lowercase hex>`; anything else is an [`Error::InvalidDigest`] naming the input.
    pub fn parse(input: &str) -> Result<Digest, Error> {
        let bad = |reason| Error::InvalidDigest { input: input.chars().take(100).collect(), reason };
        let Some((algorithm, hex)) = input.split_once(':') else {
            return Err(bad("expected `sha256:` followed by 64 hex digits"));
        };
        if algorithm != "sha256" {
            return Err(bad(if algorithm.eq_ignore_ascii_case("sha256") {
                "the algorithm must be lowercase `sha256`"
            } else {
                "unsupported algorithm (only sha256)"
            }));
        }
        Self::from_hex(hex).ok_or_else(|| {
            bad(if hex.len() != 64 {
                "the hex part must be 64 digits"
            } else {
                "the hex part must be lowercase hex digits (0-9, a-f)"
            })
        })
    }

    fn from_hex(hex: &str) -> Option<Digest> {
        let bytes = hex.as_bytes();
        if bytes.len() != 64 {
            return None;
        }
        let nibble = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        let mut out = [0u8; 32];
        for (o, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
            *o = nibble(pair[0])? << 4 | nibble(pair[1])?;
        }
        Some(Digest(out))
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(Sha256::digest(bytes).into())
    }

    pub(crate) fn from_hasher(hasher: Sha256) -> Digest {
        Digest(hasher.finalize().into())
    }

    /// The 64 hex digits.
    pub fn hex(&self) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push(HEX[usize::from(b >> 4)] as char);
            s.push(HEX[usize::from(b & 15)] as char);
        }
        s
    }

    /// The name of the blob's file on disk: `sha256_<hex>` (a colon is not portable in file names).
    pub fn file_name(&self) -> String {
        format!("{FILE_PREFIX}{}", self.hex())
    }

    /// The digest a blob file name stands for, if `name` is one.
    pub(crate) fn from_file_name(name: &str) -> Option<Digest> {
        name.strip_prefix(FILE_PREFIX).and_then(Self::from_hex)
    }
}

impl FromStr for Digest {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Digest::parse(s)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    #[test]
    fn round_trips_and_names_files() {
        let d: Digest = GOOD.parse().unwrap();
        assert_eq!(d.to_string(), GOOD);
        assert_eq!(format!("{d:?}"), GOOD);
        assert_eq!(d, Digest::of(b"hello"));
        assert_eq!(Digest::from_file_name(&d.file_name()), Some(d));
        assert_eq!(Digest::from_file_name("sha256_xyz"), None);
        assert_eq!(Digest::from_file_name(&format!("{}.verified", d.file_name())), None);
    }

    #[test]
    fn every_malformed_shape_is_a_typed_error_naming_the_input() {
        let hex = &GOOD[7..];
        let long = "x".repeat(10_000);
        let cases = [
            String::new(),
            "sha256".into(),
            "sha256:".into(),
            hex.into(),
            format!("sha512:{hex}"),
            format!("SHA256:{hex}"),
            format!("sha256:{}", hex.to_uppercase()),
            format!("sha256:{}", &hex[1..]),
            format!("sha256:{hex}0"),
            format!(" sha256:{hex}"),
            format!("sha256:{hex}\n"),
            format!("sha256:{}g", &hex[1..]),
            format!("sha256:{}é", &hex[2..]),
            format!("sha256:sha256:{}", &hex[7..]),
            format!("sha256:../{}", &hex[3..]),
            format!("sha256:{}\0", &hex[1..]),
            long.clone(),
        ];
        for input in &cases {
            match Digest::parse(input) {
                Err(Error::InvalidDigest { input: named, reason }) => {
                    assert_eq!(named, input.chars().take(100).collect::<String>());
                    assert!(!reason.is_empty());
                }
                other => panic!("{input:?}: {other:?}"),
            }
        }
        assert!(Digest::parse(&long).unwrap_err().to_string().len() < 300);
    }
}
