//! The PROXY v1/v2 parser on arbitrary bytes, and encode → parse round trips
//! with addresses and TLVs drawn from them.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| spliced::proto::fuzzing::proxy(data));
