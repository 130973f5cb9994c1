//! Loom models of the cachefs engine live in `tests/`; build with `RUSTFLAGS="--cfg loom"`.
