//! Loom model of the ring buffer's slot gate (`src/ring/pins.rs`): the pin protocol that lets this
//! process's readers read a slot with plain loads, and lend it as `&[u8]`, while the writer may be about
//! to overwrite it. The slot's bytes are a loom `UnsafeCell`, so loom reports any read that is not
//! ordered with a write (a data race), whatever the interleaving.
//!
//! Run: `scripts/loom` (it runs every test file of loom-tests). `loom-tests/README.md` records the
//! mutation that made the model fail.
#![cfg(loom)]

use cachefs::ring::loom_model::Gate;
use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::thread;

#[test]
fn a_pinned_slot_is_never_written_and_a_written_slot_never_read() {
    loom::model(|| {
        let gate = Arc::new(Gate::default());
        // Slot 0's bytes, and slot 1's (another slot: pins on it must not hold off the writer).
        let slots = Arc::new([UnsafeCell::new(0u64), UnsafeCell::new(0u64)]);
        let (g, s) = (gate.clone(), slots.clone());
        let writer = thread::spawn(move || {
            for value in 1..=2u64 {
                let claim = g.begin_write(0);
                // SAFETY (model): the claim excludes pinned readers; loom checks that it does.
                s[0].with_mut(|p| unsafe { *p = value });
                g.end_write(claim);
            }
        });
        let reader = {
            let (g, s) = (gate.clone(), slots.clone());
            thread::spawn(move || {
                let _other = g.pin(1).expect("slot 1 is never written");
                if let Some(pin) = g.pin(0) {
                    // Two reads under one pin see the same bytes: nothing wrote in between.
                    // SAFETY (model): the pin excludes the writer; loom checks that it does.
                    let first = s[0].with(|p| unsafe { *p });
                    let second = s[0].with(|p| unsafe { *p });
                    assert_eq!(first, second);
                    assert!(first <= 2);
                    drop(pin);
                }
            })
        };
        writer.join().unwrap();
        reader.join().unwrap();
        // After both, the slot holds the last write.
        // SAFETY (model): both threads have finished.
        assert_eq!(slots[0].with(|p| unsafe { *p }), 2);
    });
}
