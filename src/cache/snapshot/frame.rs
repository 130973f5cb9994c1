//! The snapshot stream's framing: what makes it versioned and checksummed, whatever its records hold.
//!
//! ```text
//! magic    8 bytes   "CFSNAP\r\n" (the CR LF shows a stream mangled by a text-mode copy)
//! version  u32 LE    1
//! frame    u32 LE payload length, u32 LE CRC-32 of the payload, the payload
//! ...
//! end      a frame of length 0 and CRC 0
//! ```
//!
//! The first frame is the header; the others hold whole records, one after another. A reader checks a
//! frame's CRC before anything in it is decoded, and reads a frame's payload as it arrives (a corrupt
//! length makes no allocation of its size).

use std::io::{self, BufReader, Read, Write};

use super::error::SnapshotError;

pub(crate) const MAGIC: [u8; 8] = *b"CFSNAP\r\n";
pub(crate) const VERSION: u32 = 1;
/// A frame is cut once its payload holds this much (a larger record gets a frame of its own).
pub(crate) const FRAME_TARGET: usize = 64 * 1024;
/// Bytes before a frame's payload: its length and CRC.
const FRAME_HEAD: usize = 8;

/// Writes frames: the payload is built in [`FrameWriter::payload`], then cut with [`FrameWriter::cut`].
pub(crate) struct FrameWriter<W> {
    out: W,
    /// The frame being built: `FRAME_HEAD` bytes kept for its head, then its payload.
    frame: Vec<u8>,
    written: u64,
}

impl<W: Write> FrameWriter<W> {
    /// Writes the magic bytes and the version.
    pub(crate) fn new(mut out: W) -> io::Result<Self> {
        out.write_all(&MAGIC)?;
        out.write_all(&VERSION.to_le_bytes())?;
        let mut frame = Vec::with_capacity(FRAME_HEAD + FRAME_TARGET + 1024);
        frame.resize(FRAME_HEAD, 0);
        Ok(FrameWriter { out, frame, written: (MAGIC.len() + 4) as u64 })
    }

    /// The payload of the frame being built, to append records to.
    pub(crate) fn payload(&mut self) -> &mut Vec<u8> {
        &mut self.frame
    }

    /// Bytes in the frame being built.
    pub(crate) fn payload_len(&self) -> usize {
        self.frame.len() - FRAME_HEAD
    }

    /// Writes the frame built so far (even an empty one: the end frame is written this way).
    pub(crate) fn cut(&mut self) -> io::Result<()> {
        let payload = &self.frame[FRAME_HEAD..];
        let len = u32::try_from(payload.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a snapshot record is larger than 4 GiB"))?;
        let crc = if payload.is_empty() { 0 } else { crc32fast::hash(payload) };
        self.frame[..4].copy_from_slice(&len.to_le_bytes());
        self.frame[4..FRAME_HEAD].copy_from_slice(&crc.to_le_bytes());
        self.out.write_all(&self.frame)?;
        self.written += self.frame.len() as u64;
        self.frame.truncate(FRAME_HEAD);
        Ok(())
    }

    /// Cuts what is pending, writes the end frame and flushes; returns the writer and the bytes written
    /// in all.
    pub(crate) fn finish(mut self) -> io::Result<(W, u64)> {
        if self.payload_len() > 0 {
            self.cut()?;
        }
        self.cut()?;
        self.out.flush()?;
        Ok((self.out, self.written))
    }
}

/// Reads and checks frames.
pub(crate) struct FrameReader<R> {
    input: BufReader<R>,
    /// Bytes consumed so far: where the next frame starts.
    offset: u64,
    payload: Vec<u8>,
}

impl<R: Read> FrameReader<R> {
    /// Checks the magic bytes and the version.
    pub(crate) fn open(input: R) -> Result<Self, SnapshotError> {
        let mut r =
            FrameReader { input: BufReader::with_capacity(FRAME_TARGET, input), offset: 0, payload: Vec::new() };
        let mut magic = [0; 8];
        r.read_exact(&mut magic)?;
        if magic != MAGIC {
            return Err(SnapshotError::NotASnapshot);
        }
        let mut version = [0; 4];
        r.read_exact(&mut version)?;
        let version = u32::from_le_bytes(version);
        if version != VERSION {
            return Err(SnapshotError::UnsupportedVersion { found: version, supported: VERSION });
        }
        Ok(r)
    }

    /// Where the next frame starts, in bytes from the start of the stream.
    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    /// The next frame's payload, checked against its CRC; `None` at the end frame.
    pub(crate) fn next(&mut self) -> Result<Option<&[u8]>, SnapshotError> {
        let start = self.offset;
        let mut head = [0; FRAME_HEAD];
        self.read_exact(&mut head)?;
        let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes"));
        let crc = u32::from_le_bytes(head[4..].try_into().expect("4 bytes"));
        if len == 0 {
            return if crc == 0 {
                Ok(None)
            } else {
                Err(SnapshotError::Corrupt { offset: start, reason: "an empty frame with a checksum".into() })
            };
        }
        self.payload.clear();
        let got = (&mut self.input).take(u64::from(len)).read_to_end(&mut self.payload)?;
        self.offset += got as u64;
        if got < len as usize {
            return Err(SnapshotError::Truncated { offset: self.offset });
        }
        if crc32fast::hash(&self.payload) != crc {
            return Err(SnapshotError::Corrupt { offset: start, reason: "frame checksum mismatch".into() });
        }
        Ok(Some(&self.payload))
    }

    /// Fills `buf`, counting every byte read, so that a stream cut short reports where it ends.
    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), SnapshotError> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.input.read(&mut buf[filled..]) {
                Ok(0) => return Err(SnapshotError::Truncated { offset: self.offset }),
                Ok(n) => {
                    filled += n;
                    self.offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(SnapshotError::Io(e)),
            }
        }
        Ok(())
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn stream(payloads: &[&[u8]]) -> Vec<u8> {
        let mut w = FrameWriter::new(Vec::new()).unwrap();
        for p in payloads {
            w.payload().extend_from_slice(p);
            w.cut().unwrap();
        }
        let (out, written) = w.finish().unwrap();
        assert_eq!(written as usize, out.len());
        out
    }

    fn frames(bytes: &[u8]) -> Result<Vec<Vec<u8>>, SnapshotError> {
        let mut r = FrameReader::open(bytes)?;
        let mut all = Vec::new();
        while let Some(p) = r.next()? {
            all.push(p.to_vec());
        }
        Ok(all)
    }

    #[test]
    fn frames_round_trip() {
        let bytes = stream(&[b"header", b"records", &[7; 100_000]]);
        assert_eq!(frames(&bytes).unwrap(), vec![b"header".to_vec(), b"records".to_vec(), vec![7; 100_000]]);
    }

    #[test]
    fn every_damage_is_named() {
        let bytes = stream(&[b"header", b"records"]);
        for cut in 0..bytes.len() {
            assert!(
                matches!(
                    frames(&bytes[..cut]),
                    Err(SnapshotError::Truncated { .. }) | Err(SnapshotError::NotASnapshot)
                ),
                "cut at {cut}"
            );
        }
        let mut bad = bytes.clone();
        bad[0] = b'X';
        assert!(matches!(frames(&bad), Err(SnapshotError::NotASnapshot)));
        let mut bad = bytes.clone();
        bad[8] = 2;
        assert!(matches!(frames(&bad), Err(SnapshotError::UnsupportedVersion { found: 2, supported: 1 })));
        let mut bad = bytes.clone();
        bad[12 + 8] ^= 1; // the header's first payload byte
        assert!(matches!(frames(&bad), Err(SnapshotError::Corrupt { offset: 12, .. })));
        let mut bad = bytes.clone();
        let end = bad.len() - 1;
        bad[end] = 1; // the end frame's CRC
        assert!(matches!(frames(&bad), Err(SnapshotError::Corrupt { .. })));
    }

    #[test]
    fn a_huge_length_allocates_nothing_of_its_size() {
        let mut bytes = stream(&[]);
        bytes.truncate(12);
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        bytes.extend_from_slice(&1u32.to_le_bytes());
        bytes.extend_from_slice(b"short");
        assert!(matches!(frames(&bytes), Err(SnapshotError::Truncated { offset: 25 })));
    }
}
