//! The TLS ClientHello peek on arbitrary bytes: never panics, settles on one
//! answer over growing prefixes, and any re-framing of a hello peeks alike.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| spliced::proto::fuzzing::sni(data));
