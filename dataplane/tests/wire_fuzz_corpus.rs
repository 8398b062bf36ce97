//! Replays the seed corpus of the `parse_frame` fuzz target (and whatever it
//! found and was kept as a regression seed) through the same function the
//! target runs, so that every `cargo test` covers them without nightly.
//!
//! Seed names say what to expect (see `fuzz/gen_corpus.py`): `valid_nfv_*`
//! frames carry a valid NFVinc message, other `valid_*` are valid frames,
//! `bad_*` are not frames at all; other names need only not panic.

use std::path::PathBuf;

use dataplane::wire::fuzz_parse_all;

#[test]
fn corpus_replays_with_expected_outcomes() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/parse_frame");
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    assert!(
        entries.len() >= 12,
        "the seed corpus in {} has only {} files",
        dir.display(),
        entries.len()
    );
    for path in entries {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("seed names are UTF-8")
            .to_owned();
        let data = std::fs::read(&path).expect("readable seed");
        let out = fuzz_parse_all(&data);
        if name.starts_with("valid_nfv_") {
            assert_eq!(out.frame, Ok(()), "{name}");
            assert_eq!(out.nfv, Some(Ok(())), "{name}");
        } else if name.starts_with("valid_") {
            assert_eq!(out.frame, Ok(()), "{name}");
            if name.contains("_bad_nfv") || name.contains("_nfv_truncated") {
                assert!(matches!(out.nfv, Some(Err(_))), "{name}: {:?}", out.nfv);
            }
        } else if name.starts_with("bad_") {
            assert!(out.frame.is_err(), "{name} parsed as a frame");
            assert_eq!(out.nfv, None, "{name}");
        }
    }
}
