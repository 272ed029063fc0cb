//! Property tests: arbitrary bytes on the results channel never panic the host's reader,
//! never grow its buffer past the cap, and every record that comes out is terminal-safe.
use kmbench_protocol::channel::{is_unsafe_char, Line, RecordReader, MAX_RECORD_LINE};
use kmbench_protocol::{decode_record, encode_record, Record, RECORD_PREFIX};
use proptest::prelude::*;

fn strings_of(r: &Record) -> String {
    serde_json::to_string(r).unwrap()
}

/// Chunks of bytes biased towards record-looking content.
fn channel_bytes() -> impl Strategy<Value = Vec<Vec<u8>>> {
    let piece = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        Just(RECORD_PREFIX.as_bytes().to_vec()),
        Just(b"\n".to_vec()),
        Just(b"{\"type\":\"selftest\",\"name\":\"".to_vec()),
        Just(b"\",\"passed\":true}".to_vec()),
        Just(b"\x1b[2J\x07\xc2\x9b".to_vec()),
        "\\PC{0,16}".prop_map(|s| s.into_bytes()),
    ];
    proptest::collection::vec(piece, 0..40)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn reader_survives_arbitrary_bytes(chunks in channel_bytes()) {
        let mut reader = RecordReader::new();
        let mut out = Vec::new();
        for c in &chunks {
            reader.push(c, &mut |l| out.push(l));
        }
        reader.finish(&mut |l| out.push(l));
        for l in out {
            match l {
                Line::Record(r) => {
                    let mut r2 = r.clone();
                    r2.sanitize();
                    prop_assert_eq!(&r2, &r, "records come out sanitized");
                    let text = strings_of(&r);
                    // JSON escapes controls itself; check the decoded strings instead.
                    let back: serde_json::Value = serde_json::from_str(&text).unwrap();
                    fn walk(v: &serde_json::Value) -> bool {
                        match v {
                            serde_json::Value::String(s) => !s.chars().any(is_unsafe_char),
                            serde_json::Value::Array(a) => a.iter().all(walk),
                            serde_json::Value::Object(m) => m.iter().all(|(k, v)| !k.chars().any(is_unsafe_char) && walk(v)),
                            _ => true,
                        }
                    }
                    prop_assert!(walk(&back));
                }
                Line::Rejected(rej) => {
                    prop_assert!(!rej.head.chars().any(is_unsafe_char));
                    prop_assert!(rej.head.len() <= MAX_RECORD_LINE);
                }
            }
        }
    }

    #[test]
    fn decode_record_never_panics(line in "\\PC{0,200}", raw in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = decode_record(&line);
        let _ = decode_record(&format!("{RECORD_PREFIX}{line}"));
        let _ = kmbench_protocol::channel::decode_bytes(&raw);
    }

    #[test]
    fn any_selftest_name_round_trips_safely(name in "\\PC{0,40}|[\\x00-\\x1f\\x7f\\u{80}-\\u{9f}\\u{202a}-\\u{202e}]{0,10}") {
        let line = encode_record(&Record::Selftest(kmbench_protocol::SelftestRecord {
            name: name.clone(), passed: false, detail: name,
        }));
        let mut reader = RecordReader::new();
        let mut out = Vec::new();
        reader.push(line.as_bytes(), &mut |l| out.push(l));
        reader.finish(&mut |l| out.push(l));
        prop_assert_eq!(out.len(), 1);
        match &out[0] {
            Line::Record(Record::Selftest(t)) => {
                prop_assert!(!t.name.chars().any(is_unsafe_char));
                prop_assert!(!t.detail.chars().any(is_unsafe_char));
            }
            other => prop_assert!(false, "{:?}", other),
        }
    }
}
