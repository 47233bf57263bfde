//! The config parser and validator on arbitrary bytes: never panics.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| spliced::config::fuzzing::parse(data));
