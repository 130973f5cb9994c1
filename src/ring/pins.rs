//! The gate between this process's writer and its readers: readers pin a slot, the writer claims the
//! slot it is about to change, and neither proceeds past the other.
//!
//! # Protocol: one atomic word per stripe
//! Slots are grouped in stripes (`slot % STRIPES`), each with one 64-bit word on a cache line of its
//! own: the top bit says the writer has claimed a slot of the stripe, the rest counts pins. Every change
//! to a word is a read-modify-write, so all of them fall in the word's single modification order, and
//! acquire/release orderings suffice (no reasoning across two variables, which would need `SeqCst`):
//!
//! - A **reader** adds a pin (`fetch_add`, acquire). If the value it replaced has no writer bit, the
//!   pin came first in the word's order, and the writer will see it: the reader may read the slot with
//!   plain loads, even lend it as `&[u8]`, until it removes the pin (`fetch_sub`, release). If the
//!   writer bit was set, it removes the pin again; if the claimed slot (`writing`) is its own, the record
//!   it wants is being replaced by a newer one and it gives up (`None`); otherwise it waits for the
//!   writer to finish and tries again.
//! - The **writer** notes the slot in `writing`, then sets the writer bit (`fetch_or`, acquire and
//!   release). Pins counted in the value it replaced came first: it waits until they are gone (loads with
//!   acquire, which order the readers' loads before its stores); new readers see the bit and stay out.
//!   It then changes the slot and clears the bit (`fetch_and`, release), which orders its stores before
//!   any later reader's pin. If the earlier pins outlast its patience, it clears the bit and gives up.
//!
//! A pin on slot `s` also holds off writes to slots `s ± k·STRIPES`, and a claim on `s` makes readers of
//! those slots wait for one write: with 1,024 stripes this happens only when the writer reaches a slot a
//! multiple of 1,024 away from a guarded one. Loom checks the protocol (`loom-tests/tests/ring.rs`).

use std::time::{Duration, Instant};

use crate::sync::AtomicU64;
use crate::sync::Ordering::{AcqRel, Acquire, Relaxed, Release};

#[cfg(not(loom))]
const STRIPES: usize = 1024;
#[cfg(loom)]
const STRIPES: usize = 2;

/// The writer bit of a stripe's word; the bits below count pins.
const WRITER: u64 = 1 << 63;

/// One stripe's word, on a cache line of its own.
#[derive(Debug)]
#[repr(align(64))]
struct Stripe(AtomicU64);

/// The pins and the writer's claimed slot.
#[derive(Debug)]
pub(crate) struct SlotGate {
    stripes: Box<[Stripe]>,
    /// Slot + 1 the writer has claimed, or 0. Written before the writer bit is set (and read only by
    /// readers that saw the bit, so the bit's release/acquire orders it).
    writing: AtomicU64,
}

/// A reader's pin; unpins when dropped.
#[derive(Debug)]
pub(crate) struct Pin<'a> {
    word: &'a AtomicU64,
}

impl Drop for Pin<'_> {
    fn drop(&mut self) {
        // Release: the pinned reads happen before a writer that sees the count drop.
        self.word.fetch_sub(1, Release);
    }
}

/// The writer's claim on a slot; `SlotGate::end_write` releases it.
#[derive(Debug)]
#[must_use = "end the write with SlotGate::end_write"]
pub(crate) struct WriteClaim {
    slot: u64,
}

impl Default for SlotGate {
    fn default() -> Self {
        SlotGate { stripes: (0..STRIPES).map(|_| Stripe(AtomicU64::new(0))).collect(), writing: AtomicU64::new(0) }
    }
}

impl SlotGate {
    #[inline]
    fn word(&self, slot: u64) -> &AtomicU64 {
        &self.stripes[(slot % STRIPES as u64) as usize].0
    }

    /// Pins `slot` for reading, or `None` if the writer is changing it now (the record there is being
    /// replaced by a newer one). Waits while the writer changes another slot of the same stripe.
    #[inline]
    pub(crate) fn pin(&self, slot: u64) -> Option<Pin<'_>> {
        let word = self.word(slot);
        let mut round = 0u32;
        loop {
            // Acquire: if the writer finished a write of this slot before, its stores are visible.
            let before = word.fetch_add(1, Acquire);
            if before & WRITER == 0 {
                return Some(Pin { word });
            }
            // Relaxed: nothing was read under this pin.
            word.fetch_sub(1, Relaxed);
            // Relaxed is enough: the acquire above read the writer's bit, set after `writing`.
            if self.writing.load(Relaxed) == slot + 1 {
                return None;
            }
            while word.load(Relaxed) & WRITER != 0 {
                backoff(round);
                round = round.saturating_add(1);
            }
        }
    }

    /// Claims `slot` for writing, waiting up to `patience` for readers that pinned it earlier (new
    /// readers stay out meanwhile, so a stream of readers cannot starve the writer). Returns the claim
    /// and whether it had to wait, or how long it waited in vain (the claim is then withdrawn).
    pub(crate) fn begin_write(&self, slot: u64, patience: Duration) -> Result<(WriteClaim, bool), Duration> {
        let word = self.word(slot);
        self.writing.store(slot + 1, Relaxed);
        // AcqRel: acquire the unpins before it, release `writing` to readers that see the bit.
        let before = word.fetch_or(WRITER, AcqRel);
        debug_assert_eq!(before & WRITER, 0, "one writer at a time");
        if before & !WRITER == 0 {
            return Ok((WriteClaim { slot }, false));
        }
        let started = Instant::now();
        let mut round = 0u32;
        loop {
            backoff(round);
            round = round.saturating_add(1);
            // Acquire: the last unpin's reads happen before our stores.
            if word.load(Acquire) & !WRITER == 0 {
                return Ok((WriteClaim { slot }, true));
            }
            if started.elapsed() >= patience {
                word.fetch_and(!WRITER, Release);
                self.writing.store(0, Relaxed);
                return Err(started.elapsed());
            }
        }
    }

    /// Ends the write claimed by `claim`: the slot's new bytes are complete.
    #[inline]
    pub(crate) fn end_write(&self, claim: WriteClaim) {
        self.writing.store(0, Relaxed);
        // Release: the slot's new bytes happen before any later pin of it.
        self.word(claim.slot).fetch_and(!WRITER, Release);
    }
}

/// Spin briefly, then yield, then sleep up to 1 ms: a waiter that is not released soon stops burning a
/// core. Under loom every round yields (loom has no clock, and explores only spin loops that yield).
pub(crate) fn backoff(round: u32) {
    if cfg!(loom) {
        crate::sync::yield_now();
    } else if round < 16 {
        std::hint::spin_loop();
    } else if round < 32 {
        crate::sync::yield_now();
    } else {
        std::thread::sleep(Duration::from_micros(u64::from((round - 31).min(20)) * 50));
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    use std::sync::atomic::Ordering::SeqCst;

    #[test]
    fn a_pin_holds_off_the_writer_and_a_write_turns_readers_away() {
        let gate = SlotGate::default();
        let pin = gate.pin(5).expect("no write in progress");
        let waited = gate.begin_write(5 + STRIPES as u64, Duration::from_millis(20)).unwrap_err();
        assert!(waited >= Duration::from_millis(20));
        let (other, waited) = gate.begin_write(6, Duration::ZERO).expect("another stripe is free");
        assert!(!waited);
        assert!(gate.pin(6).is_none(), "the slot being written cannot be pinned");
        assert!(gate.pin(7).is_some());
        gate.end_write(other);
        drop(pin);
        gate.end_write(gate.begin_write(5, Duration::ZERO).expect("unpinned").0);
        assert!(gate.pin(6).is_some());
    }

    #[test]
    fn a_waiting_writer_proceeds_when_the_pin_drops_and_readers_of_its_stripe_wait_for_it() {
        let gate = Arc::new(SlotGate::default());
        let (pinned, release) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let (g, p, r) = (gate.clone(), pinned.clone(), release.clone());
        let reader = std::thread::spawn(move || {
            let _pin = g.pin(3).unwrap();
            p.store(true, SeqCst);
            while !r.load(SeqCst) {
                std::thread::yield_now();
            }
        });
        while !pinned.load(SeqCst) {
            std::thread::yield_now();
        }
        assert!(gate.begin_write(3, Duration::ZERO).is_err(), "pinned");
        let (g, r) = (gate.clone(), release.clone());
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            r.store(true, SeqCst);
            // Slot 3 + STRIPES shares the stripe: its reader waits for the write of slot 3, then pins.
            g.pin(3 + STRIPES as u64).is_some()
        });
        let (claim, waited) = gate.begin_write(3, Duration::from_secs(30)).expect("the pin drops");
        assert!(waited);
        std::thread::sleep(Duration::from_millis(5));
        gate.end_write(claim);
        reader.join().unwrap();
        assert!(releaser.join().unwrap(), "a reader of another slot of the stripe gets in after the write");
    }
}
