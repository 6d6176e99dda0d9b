//! The reference for `dispatch-tick` on an empty queue: a Rust binary that starts and exits.
//! benches/load.py compiles it with `rustc -O`.
fn main() {}
