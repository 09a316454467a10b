//! Every checked-in corpus, replayed through its target on stable Rust: the inputs the fuzzers
//! found interesting (and the seeds) keep passing the invariants.

use std::fs;

#[test]
fn every_corpus_input_keeps_the_invariants() {
    for (target, run) in entra_fuzz::TARGETS {
        let dir = entra_fuzz::fuzz_dir().join("corpus").join(target);
        let inputs: Vec<_> = fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| entry.unwrap().path())
            .collect();
        assert!(!inputs.is_empty(), "no corpus for {target}");
        for input in inputs {
            let data = fs::read(&input).unwrap();
            let outcome = std::panic::catch_unwind(|| run(&data));
            assert!(outcome.is_ok(), "{target}: {} breaks an invariant", input.display());
        }
    }
}

#[test]
fn the_valid_seeds_pass_so_the_invariants_are_reached() {
    let data = entra_fuzz::fuzz_dir().join("data");
    let tokens = fs::read_to_string(data.join("tokens.txt")).unwrap();
    assert!(entra_fuzz::accepted_tokens(&tokens) >= 5, "the fixture tokens verify at NOW");
    assert!(entra_fuzz::opened_sessions() >= 3, "the fixture sessions open");
    assert!(entra_fuzz::matched_callbacks() >= 2, "the fixture attempts match their callbacks");
}
