//! The gate between this process's writer and its readers: readers pin a slot, the writer announces the
//! slot it is about to change, and neither proceeds past the other.
//!
//! # Protocol (Dekker's, with sequentially consistent atomics)
//! - A **reader** increments the pin count of the slot's stripe, then loads `writing`. If `writing`
//!   names its slot, the writer may be changing it: the reader unpins and backs off. Otherwise it may read
//!   the slot with plain loads (even hand out `&[u8]`) until it unpins.
//! - The **writer** stores `writing = slot + 1`, then loads the slot's pin count until it is zero (new
//!   readers turn away meanwhile, so only earlier pins must drain), then changes the slot, then stores
//!   `writing = 0`. If the pins outlast its patience it stores `writing = 0` and gives up.
//!
//! All four operations are `SeqCst`, so they fall in one total order. If the writer's load of the pin
//! count came before the reader's increment, then the writer's store to `writing` came before that too,
//! and the reader's later load of `writing` sees it (or a later store, made after the slot was written:
//! both stores are releases, so the reader then also sees the finished bytes). If the increment came
//! first, the writer sees the pin. Either way a reader never reads bytes the writer is changing, and the
//! unpin (a release) orders the reader's loads before the writer's next stores to the slot.
//!
//! Pins are counted per stripe (`slot % STRIPES`), one cache line each, so a pin on slot `s` also holds
//! off writes to slots `s ± k·STRIPES`: a guard only ever delays the writer when it reaches a slot a
//! multiple of 1,024 away, and only while the guard lives.

use std::time::{Duration, Instant};

use crate::sync::{AtomicU64, Ordering::SeqCst};

#[cfg(not(loom))]
const STRIPES: usize = 1024;
#[cfg(loom)]
const STRIPES: usize = 2;

/// One stripe's pin count, on a cache line of its own.
#[derive(Debug)]
#[repr(align(64))]
struct Stripe(AtomicU64);

/// The pins and the writer's announced slot.
#[derive(Debug)]
pub(crate) struct SlotGate {
    stripes: Box<[Stripe]>,
    /// Slot + 1 the writer is changing, or 0.
    writing: AtomicU64,
}

/// A reader's pin; unpins when dropped.
#[derive(Debug)]
pub(crate) struct Pin<'a> {
    count: &'a AtomicU64,
}

impl Drop for Pin<'_> {
    fn drop(&mut self) {
        // SeqCst (a release): the pinned reads happen before a writer that sees the count drop.
        self.count.fetch_sub(1, SeqCst);
    }
}

/// The writer's claim on a slot; `SlotGate::end_write` releases it.
#[derive(Debug)]
#[must_use = "end the write with SlotGate::end_write"]
pub(crate) struct WriteClaim(());

impl Default for SlotGate {
    fn default() -> Self {
        SlotGate { stripes: (0..STRIPES).map(|_| Stripe(AtomicU64::new(0))).collect(), writing: AtomicU64::new(0) }
    }
}

impl SlotGate {
    #[inline]
    fn stripe(&self, slot: u64) -> &AtomicU64 {
        &self.stripes[(slot % STRIPES as u64) as usize].0
    }

    /// Pins `slot` for reading, or `None` if the writer is changing it now (the record there is being
    /// replaced by a newer one).
    #[inline]
    pub(crate) fn pin(&self, slot: u64) -> Option<Pin<'_>> {
        let count = self.stripe(slot);
        count.fetch_add(1, SeqCst);
        let pin = Pin { count };
        (self.writing.load(SeqCst) != slot + 1).then_some(pin)
    }

    /// Claims `slot` for writing, waiting up to `patience` for readers that pinned it. While it waits
    /// the slot stays announced, so new readers turn away and only the pins taken before the
    /// announcement have to drain: a stream of readers cannot starve the writer. If they do not drain
    /// in time, the announcement is withdrawn and the wait's length returned.
    /// The claim says whether it had to wait.
    pub(crate) fn begin_write(&self, slot: u64, patience: Duration) -> Result<(WriteClaim, bool), Duration> {
        self.writing.store(slot + 1, SeqCst);
        let mut started: Option<Instant> = None;
        let mut round = 0u32;
        loop {
            if self.stripe(slot).load(SeqCst) == 0 {
                return Ok((WriteClaim(()), started.is_some()));
            }
            let since = *started.get_or_insert_with(Instant::now);
            if since.elapsed() >= patience {
                self.writing.store(0, SeqCst);
                return Err(since.elapsed());
            }
            backoff(round);
            round = round.saturating_add(1);
        }
    }

    /// Ends the write claimed by `claim`: the slot's new bytes are complete.
    #[inline]
    pub(crate) fn end_write(&self, claim: WriteClaim) {
        let WriteClaim(()) = claim;
        self.writing.store(0, SeqCst);
    }
}

/// Spin briefly, then yield, then sleep up to 1 ms: a waiter that is not released soon stops burning a core.
pub(crate) fn backoff(round: u32) {
    if round < 16 {
        std::hint::spin_loop();
    } else if round < 32 {
        std::thread::yield_now();
    } else {
        std::thread::sleep(Duration::from_micros(u64::from((round - 31).min(20)) * 50));
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

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
    fn a_waiting_writer_proceeds_when_the_pin_drops() {
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
        let r = release.clone();
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            r.store(true, SeqCst);
        });
        let (claim, waited) = gate.begin_write(3, Duration::from_secs(30)).expect("the pin drops");
        assert!(waited);
        gate.end_write(claim);
        reader.join().unwrap();
        releaser.join().unwrap();
    }
}
