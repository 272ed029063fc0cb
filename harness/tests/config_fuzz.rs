//! Property tests of the config loader: arbitrary text or bytes never panic it, and every
//! number, whatever its value, is either accepted inside its documented range or refused
//! with a message naming its key.
use kmbench::config;
use proptest::prelude::*;

/// (table, key, range) of every number a config can set.
const KEYS: &[(&str, &str, u64, u64)] = &[
    ("run", "memory_mib", 64, 1 << 20),
    ("run", "timeout_s", 1, 604_800),
    ("run", "boots", 1, 1000),
    ("suites.timer", "samples", 1, 1_000_000),
    ("suites.gate", "samples", 1, 1_000_000),
    ("suites.alu", "iterations", 1, 100_000_000),
    ("suites.kmalloc", "n", 1, 1_000_000),
    ("suites.kmalloc", "warmup", 0, 1_000_000),
    ("suites.kmalloc", "mixed_ops", 0, 100_000_000),
    ("suites.pages", "n", 1, 100_000),
    ("suites.vmalloc", "test_loops", 0, 10_000_000),
    ("suites.stack_vs_heap", "buffer", 1, 1 << 30),
    ("suites.tlb", "points_per_doubling", 1, 64),
    ("suites.tlb", "accesses", 1, 100_000_000),
    ("suites.tlbflush", "refill_pages", 0, 1_000_000),
];

fn edge_numbers() -> impl Strategy<Value = i64> {
    prop_oneof![
        any::<i64>(),
        -2i64..2,
        Just(u32::MAX as i64),
        Just(u32::MAX as i64 + 1),
        Just(i64::MAX),
        Just(i64::MIN),
        (0i64..2_000_000),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,300}") {
        let _ = config::parse(&text);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_loader(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, &bytes).unwrap();
        let _ = config::load(&p);
    }

    #[test]
    fn toml_shaped_noise_never_panics(
        lines in proptest::collection::vec(prop_oneof![
            "\\[\\[?[a-z_.]{0,20}\\]?\\]?",
            "[a-z_]{1,12} = [0-9\\-\"\\[\\], a-z]{0,20}",
            Just("[[variants]]".to_string()),
            Just("name = \"v\"".to_string()),
        ], 0..12)
    ) {
        let _ = config::parse(&lines.join("\n"));
    }

    #[test]
    fn every_number_is_in_range_or_named(idx in 0..KEYS.len(), v in edge_numbers()) {
        let (table, key, min, max) = KEYS[idx];
        let text = format!("[{table}]\n{key} = {v}\n");
        match config::parse(&text) {
            Ok(_) => prop_assert!(v >= 0 && (min..=max).contains(&(v as u64)), "{} accepted", text),
            Err(e) => {
                prop_assert!(e.contains(key), "{}: {}", text, e);
                prop_assert!(e.contains(&format!("[{table}]")), "{}: {}", text, e);
                prop_assert!(v < 0 || !(min..=max).contains(&(v as u64)), "{} refused: {}", text, e);
            }
        }
    }

    #[test]
    fn list_sizes_in_range_or_named(sizes in proptest::collection::vec(prop_oneof![any::<i64>(), 0i64..5, Just(1i64 << 30), Just((1i64 << 30) + 1)], 0..6)) {
        let list = sizes.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", ");
        let text = format!("[suites.talc_vs_slab]\nsizes = [{list}]\n");
        let ok = sizes.iter().all(|&s| (1..=1i64 << 30).contains(&s))
            && (1..sizes.len()).all(|i| !sizes[..i].contains(&sizes[i]));
        match config::parse(&text) {
            Ok(_) => prop_assert!(ok, "{} accepted", text),
            Err(e) => {
                prop_assert!(!ok, "{} refused: {}", text, e);
                prop_assert!(e.contains("sizes"), "{}: {}", text, e);
            }
        }
    }
}
