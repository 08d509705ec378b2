//! The fuzz targets' corpora, replayed on stable: every file under `fuzz/corpus/TARGET` and
//! `fuzz/regressions/TARGET` (the inputs that once crashed) runs through the same harness function
//! the fuzz target calls.
//!
//! A corpus holds the seeds from real sessions (`seed-*`, written by `write_seed_corpora` below)
//! and inputs the fuzzer found (named by their SHA-1): for the parsers the whole corpus after a
//! libFuzzer `-merge=1`, for the state machines the smallest inputs of a `-set_cover_merge=1`, up to
//! 15 KB a target, so that `cargo test` walks the paths fuzzing opened without a large tree.

#[path = "../fuzz/src/lib.rs"]
mod harness;

use std::path::Path;

fn inputs(dir: &str, target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir).join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<_> = entries
        .map(|e| e.expect("a readable folder").path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).expect("a readable file");
            (p.display().to_string(), bytes)
        })
        .collect()
}

#[test]
fn every_corpus_and_regression_replays_without_a_panic() {
    for (target, run) in harness::TARGETS {
        let corpus = inputs("fuzz/corpus", target);
        assert!(!corpus.is_empty(), "no corpus for {target}");
        for (name, bytes) in corpus.iter().chain(&inputs("fuzz/regressions", target)) {
            let outcome = std::panic::catch_unwind(|| run(bytes));
            assert!(outcome.is_ok(), "{target}: {name} panicked");
        }
    }
}

/// The seed generator still runs, its sessions still finish, and what it makes replays.
#[test]
fn fresh_seeds_cover_every_target_and_replay() {
    let seeds = harness::seeds::all();
    for (target, run) in harness::TARGETS {
        let mine: Vec<_> = seeds.iter().filter(|s| s.0 == target).collect();
        assert!(!mine.is_empty(), "no seed for {target}");
        for (_, _, bytes) in mine {
            run(bytes);
        }
    }
}

/// Writes the seeds into `fuzz/corpus/TARGET/seed-NAME`: run by hand after a protocol change,
/// `cargo test -p edm-cast-proto --test fuzz_corpus -- --ignored write_seed_corpora`.
#[test]
#[ignore]
fn write_seed_corpora() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    for (target, name, bytes) in harness::seeds::all() {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).expect("a writable corpus folder");
        std::fs::write(dir.join(format!("seed-{name}")), bytes).expect("a writable corpus file");
    }
}
