//! `cargo fuzz run checkpoint`: see `latent_lab::fuzzing::Target::Checkpoint`.
#![no_main]
use latent_lab::fuzzing::{check, Target, TrackingAlloc};

#[global_allocator]
static ALLOC: TrackingAlloc = TrackingAlloc;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    check(Target::Checkpoint, data);
});
