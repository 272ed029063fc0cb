//! The host's reader of the results channel: bytes in, bounded records out.
//!
//! Whatever the guest writes, the host keeps at most [`MAX_RECORD_LINE`] bytes of one line
//! and decodes at most [`MAX_RECORDS`] records per boot; everything else is a
//! [`Rejected`] entry the run reports (results.json `rejected_records`, the summary, a
//! non-zero exit). Strings a guest supplies are made safe for a terminal
//! ([`sanitize`]): control characters (escape sequences included) and bidirectional
//! overrides become `\u{..}` escapes.
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::{Record, RECORD_PREFIX};

/// Longest record line the host accepts (bytes, newline excluded). Real records are well
/// under 4 KiB.
pub const MAX_RECORD_LINE: usize = 256 * 1024;
/// Most records the host decodes from one boot.
pub const MAX_RECORDS: usize = 100_000;
/// How much of a rejected line is kept to show the user.
pub const REJECTED_HEAD: usize = 160;

/// Why a line that looked like a record was not taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RejectReason {
    /// Longer than [`MAX_RECORD_LINE`].
    TooLong { bytes: usize },
    /// More than [`MAX_RECORDS`] records in this boot.
    TooMany,
    /// Not a record: JSON or schema error.
    Invalid(String),
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RejectReason::TooLong { bytes } => write!(
                f,
                "record line of {bytes} bytes exceeds the {MAX_RECORD_LINE}-byte cap"
            ),
            RejectReason::TooMany => write!(f, "more than {MAX_RECORDS} records in one boot"),
            RejectReason::Invalid(e) => write!(f, "undecodable record: {e}"),
        }
    }
}

/// A line the reader refused, with the start of it (sanitized, at most [`REJECTED_HEAD`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    pub reason: RejectReason,
    pub head: String,
}

/// What one line of the channel turned out to be.
#[derive(Clone, Debug, PartialEq)]
pub enum Line {
    Record(Record),
    Rejected(Rejected),
}

/// Assembles channel bytes into lines, with the caps above. Lines without the record
/// prefix (stray text) are skipped.
#[derive(Debug, Default)]
pub struct RecordReader {
    buf: Vec<u8>,
    /// Bytes of the current line beyond the cap (dropped).
    dropped: usize,
    records: usize,
}

impl RecordReader {
    pub fn new() -> RecordReader {
        RecordReader::default()
    }

    /// Feed bytes; `out` gets every completed line that was a record or looked like one.
    pub fn push(&mut self, mut data: &[u8], out: &mut dyn FnMut(Line)) {
        while !data.is_empty() {
            let (chunk, done) = match data.iter().position(|&b| b == b'\n') {
                Some(nl) => (&data[..nl], Some(nl + 1)),
                None => (data, None),
            };
            let room = MAX_RECORD_LINE.saturating_sub(self.buf.len());
            let take = chunk.len().min(room);
            self.buf.extend_from_slice(&chunk[..take]);
            self.dropped = self.dropped.saturating_add(chunk.len() - take);
            match done {
                Some(n) => {
                    self.finish_line(out);
                    data = &data[n..];
                }
                None => break,
            }
        }
    }

    /// End of the channel: a last line without its newline still counts.
    pub fn finish(&mut self, out: &mut dyn FnMut(Line)) {
        if !self.buf.is_empty() || self.dropped > 0 {
            self.finish_line(out);
        }
    }

    /// Records decoded so far.
    pub fn records(&self) -> usize {
        self.records
    }

    fn finish_line(&mut self, out: &mut dyn FnMut(Line)) {
        let buf = core::mem::take(&mut self.buf);
        let dropped = core::mem::take(&mut self.dropped);
        let mut end = buf.len();
        while end > 0 && buf[end - 1] == b'\r' {
            end -= 1;
        }
        let line = &buf[..end];
        if !line.starts_with(RECORD_PREFIX.as_bytes()) {
            return;
        }
        let head = || head_of(line);
        if dropped > 0 {
            out(Line::Rejected(Rejected {
                reason: RejectReason::TooLong {
                    bytes: buf.len().saturating_add(dropped),
                },
                head: head(),
            }));
            return;
        }
        if self.records >= MAX_RECORDS {
            out(Line::Rejected(Rejected {
                reason: RejectReason::TooMany,
                head: head(),
            }));
            return;
        }
        match decode_bytes(line) {
            Ok(r) => {
                self.records += 1;
                out(Line::Record(r));
            }
            Err(e) => out(Line::Rejected(Rejected {
                reason: RejectReason::Invalid(e),
                head: head(),
            })),
        }
    }
}

/// Decode one line's bytes (prefix included), sanitizing every string in the record.
pub fn decode_bytes(line: &[u8]) -> Result<Record, String> {
    let body = line
        .strip_prefix(RECORD_PREFIX.as_bytes())
        .ok_or_else(|| String::from("no record prefix"))?;
    if body.len() > MAX_RECORD_LINE {
        return Err(format!("{} bytes exceed the cap", body.len()));
    }
    let mut r: Record = serde_json::from_slice(body).map_err(|e| format!("{e}"))?;
    r.sanitize();
    Ok(r)
}

fn head_of(line: &[u8]) -> String {
    let n = line.len().min(REJECTED_HEAD);
    let mut s = String::from_utf8_lossy(&line[..n]).into_owned();
    sanitize(&mut s);
    if line.len() > n {
        s.push('…');
    }
    s
}

/// True for characters that must not reach a terminal raw: C0/C1 controls (ESC, BEL,
/// CR, …), DEL, and the Unicode bidirectional overrides and isolates.
pub fn is_unsafe_char(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Replace every [`is_unsafe_char`] with its `\u{..}` escape, in place.
pub fn sanitize(s: &mut String) {
    if !s.chars().any(is_unsafe_char) {
        return;
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_unsafe_char(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    *s = out;
}

fn sanitize_value(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::String(s) => sanitize(s),
        serde_json::Value::Array(a) => a.iter_mut().for_each(sanitize_value),
        serde_json::Value::Object(m) => {
            let old = core::mem::take(m);
            for (mut k, mut v) in old {
                sanitize(&mut k);
                sanitize_value(&mut v);
                m.insert(k, v);
            }
        }
        _ => {}
    }
}

fn sanitize_map(m: &mut alloc::collections::BTreeMap<String, serde_json::Value>) {
    let old = core::mem::take(m);
    for (mut k, mut v) in old {
        sanitize(&mut k);
        sanitize_value(&mut v);
        m.insert(k, v);
    }
}

impl Record {
    /// Make every guest-supplied string terminal-safe ([`sanitize`]).
    pub fn sanitize(&mut self) {
        match self {
            Record::Hello(h) => {
                for s in [
                    &mut h.kernel,
                    &mut h.guest_hypervisor,
                    &mut h.cpu_vendor,
                    &mut h.cpu_brand,
                    &mut h.tsc_source,
                ] {
                    sanitize(s);
                }
            }
            Record::Bench(b) => {
                sanitize(&mut b.name);
                sanitize(&mut b.suite);
                sanitize(&mut b.unit);
                if let Some(m) = &mut b.message {
                    sanitize(m);
                }
                sanitize_map(&mut b.params);
                sanitize_map(&mut b.extra);
            }
            Record::Selftest(t) => {
                sanitize(&mut t.name);
                sanitize(&mut t.detail);
            }
            Record::Info(i) => {
                sanitize(&mut i.key);
                sanitize_value(&mut i.value);
            }
            Record::Fault(f) => sanitize(&mut f.message),
            Record::End(_) => {}
            Record::Canary(c) => {
                if let Some(a) = &mut c.after {
                    sanitize(a);
                }
            }
            Record::Measurement(m) => {
                sanitize(&mut m.op);
                if let Some(e) = &mut m.error {
                    sanitize(e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{encode_record, InfoRecord, SelftestRecord};
    use alloc::string::ToString;
    use alloc::vec;

    fn collect(reader: &mut RecordReader, chunks: &[&[u8]]) -> Vec<Line> {
        let mut got = Vec::new();
        for c in chunks {
            reader.push(c, &mut |l| got.push(l));
        }
        reader.finish(&mut |l| got.push(l));
        got
    }

    fn selftest(name: &str) -> Record {
        Record::Selftest(SelftestRecord {
            name: name.to_string(),
            passed: true,
            detail: String::new(),
        })
    }

    #[test]
    fn lines_split_across_chunks_and_unterminated_tail() {
        let a = encode_record(&selftest("a"));
        let b = encode_record(&selftest("b"));
        let all = format!("noise\n{a}\r\n{b}");
        let bytes = all.as_bytes();
        for cut in [1, 5, 7, bytes.len() / 2, bytes.len() - 1] {
            let mut r = RecordReader::new();
            let got = collect(&mut r, &[&bytes[..cut], &bytes[cut..]]);
            assert_eq!(
                got,
                vec![Line::Record(selftest("a")), Line::Record(selftest("b"))]
            );
            assert_eq!(r.records(), 2);
        }
    }

    #[test]
    fn long_lines_are_capped_not_buffered() {
        let mut r = RecordReader::new();
        let mut got = Vec::new();
        r.push(RECORD_PREFIX.as_bytes(), &mut |l| got.push(l));
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..64 {
            r.push(&chunk, &mut |l| got.push(l));
            assert!(r.buf.len() <= MAX_RECORD_LINE);
        }
        r.push(b"\n", &mut |l| got.push(l));
        let total = RECORD_PREFIX.len() + 64 * 64 * 1024;
        match &got[..] {
            [Line::Rejected(Rejected {
                reason: RejectReason::TooLong { bytes },
                head,
            })] => {
                assert_eq!(*bytes, total);
                assert!(head.chars().count() <= REJECTED_HEAD + 1);
            }
            other => panic!("{other:?}"),
        }
        // The next line is read normally.
        let ok = encode_record(&selftest("after")) + "\n";
        r.push(ok.as_bytes(), &mut |l| got.push(l));
        assert_eq!(got.last(), Some(&Line::Record(selftest("after"))));
        // A line of exactly the cap is accepted as far as length goes.
        let mut r = RecordReader::new();
        let mut line = String::from(RECORD_PREFIX);
        line.push_str(&" ".repeat(MAX_RECORD_LINE - line.len()));
        let got = collect(&mut r, &[line.as_bytes(), b"\n"]);
        assert!(matches!(
            &got[..],
            [Line::Rejected(Rejected {
                reason: RejectReason::Invalid(_),
                ..
            })]
        ));
    }

    #[test]
    fn record_count_is_capped() {
        let mut r = RecordReader::new();
        r.records = MAX_RECORDS - 1;
        let line = encode_record(&selftest("x")) + "\n";
        let got = collect(&mut r, &[line.as_bytes(), line.as_bytes()]);
        assert!(matches!(got[0], Line::Record(_)));
        assert!(matches!(
            &got[1],
            Line::Rejected(Rejected {
                reason: RejectReason::TooMany,
                ..
            })
        ));
    }

    #[test]
    fn guest_strings_are_sanitized() {
        let evil = "kmalloc/\u{1b}[2J\u{1b}]0;pwned\u{7}/\u{202e}x\r\u{9b}";
        let line = encode_record(&Record::Info(InfoRecord {
            key: evil.to_string(),
            value: serde_json::json!({ evil: [evil] }),
        }));
        let r = decode_bytes(line.as_bytes()).unwrap();
        let Record::Info(i) = r else { panic!() };
        let text = serde_json::to_string(&i.value).unwrap() + &i.key;
        assert!(!text.chars().any(is_unsafe_char), "{text}");
        assert!(i.key.starts_with("kmalloc/\\u{1b}[2J"), "{}", i.key);
        let mut s = String::from("plain/64");
        sanitize(&mut s);
        assert_eq!(s, "plain/64");
    }

    #[test]
    fn invalid_records_are_rejected_with_a_sanitized_head() {
        let mut r = RecordReader::new();
        let got = collect(
            &mut r,
            &[b"KMB1 {\"type\":\"bench\",\"name\":\"\x1b[31m\"}\n"],
        );
        match &got[..] {
            [Line::Rejected(Rejected {
                reason: RejectReason::Invalid(_),
                head,
            })] => assert!(!head.chars().any(is_unsafe_char), "{head}"),
            other => panic!("{other:?}"),
        }
    }
}
