//! Runs every wire parser, and the invariant checks of
//! `dataplane::wire::fuzz_parse_all`, on arbitrary bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    dataplane::wire::fuzz_parse_all(data);
});
