//! Worker threads for a call that fans out (a flush of many files, a warm): started together, and every
//! one gone before the call returns.

/// Runs `work` on `n` threads at once and waits until every thread has exited.
///
/// Each thread is joined, not left to the scope: `std::thread::scope` returns once the closures have
/// finished, while their threads may still be running thread-local destructors (and are then detached).
/// LeakSanitizer caught that as a leak of glibc's destructor list in the `fs_ops` fuzz target; joining
/// waits for the exit itself, so no thread of ours outlives the call. A panic in `work` is raised here
/// once every thread has ended.
pub(crate) fn run_on_threads(n: usize, work: &(impl Fn() + Sync)) {
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n).map(|_| s.spawn(work)).collect();
        for handle in handles {
            if let Err(panic) = handle.join() {
                std::panic::resume_unwind(panic);
            }
        }
    });
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

    #[test]
    fn every_worker_runs_and_a_panic_reaches_the_caller() {
        let ran = AtomicUsize::new(0);
        run_on_threads(3, &|| {
            ran.fetch_add(1, Relaxed);
        });
        assert_eq!(ran.load(Relaxed), 3);
        let r = std::panic::catch_unwind(|| run_on_threads(2, &|| panic!("worker failed")));
        assert!(r.is_err());
    }

    /// Failed before the workers were joined: the scope returned while the threads were still running
    /// their thread-local destructors.
    #[test]
    fn every_thread_has_exited_when_it_returns() {
        static EXITED: AtomicUsize = AtomicUsize::new(0);
        struct OnExit;
        impl Drop for OnExit {
            fn drop(&mut self) {
                std::thread::sleep(std::time::Duration::from_millis(50));
                EXITED.fetch_add(1, Relaxed);
            }
        }
        thread_local! {
            static EXIT: std::cell::RefCell<Option<OnExit>> = const { std::cell::RefCell::new(None) };
        }
        run_on_threads(2, &|| EXIT.with(|e| *e.borrow_mut() = Some(OnExit)));
        assert_eq!(EXITED.load(Relaxed), 2, "a worker was still running its thread-local destructors");
    }
}
