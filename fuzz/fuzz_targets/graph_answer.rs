#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| entra_fuzz::graph_answer(data));
