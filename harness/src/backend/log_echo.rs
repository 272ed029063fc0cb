//! `-v`'s echo of the guest's log (COM1) to the terminal, made terminal-safe.
//!
//! The guest writes whatever bytes it likes to its log port; before any of it reaches the
//! terminal it is cut into lines and each line goes through the same sanitizer as the
//! records' strings ([`kmbench_protocol::channel::sanitize`]): escape sequences, other
//! control characters and bidirectional overrides become visible `\u{..}` escapes,
//! invalid UTF-8 becomes U+FFFD. A line longer than [`MAX_ECHO_LINE`] bytes is echoed in
//! pieces, so a guest that never writes a newline cannot grow the buffer. The log file
//! itself keeps the raw bytes.
use std::io::Write;

use kmbench_protocol::channel::sanitize;

/// Bytes of one log line held before it is echoed anyway.
pub const MAX_ECHO_LINE: usize = 4096;

/// Line-buffers guest log bytes and writes each line, sanitized, to `out`.
pub struct LogEcho<W: Write> {
    out: W,
    line: Vec<u8>,
}

impl LogEcho<std::io::Stderr> {
    /// An echo to the harness's stderr.
    pub fn stderr() -> Self {
        LogEcho::new(std::io::stderr())
    }
}

impl<W: Write> LogEcho<W> {
    pub fn new(out: W) -> Self {
        LogEcho {
            out,
            line: Vec::new(),
        }
    }

    /// Take more log bytes; echo every line they complete.
    pub fn push(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let room = MAX_ECHO_LINE - self.line.len();
            match data.iter().take(room).position(|&b| b == b'\n') {
                Some(i) => {
                    self.line.extend_from_slice(&data[..i]);
                    data = &data[i + 1..];
                    self.emit();
                }
                None => {
                    let n = room.min(data.len());
                    self.line.extend_from_slice(&data[..n]);
                    data = &data[n..];
                    if self.line.len() == MAX_ECHO_LINE {
                        self.emit();
                    }
                }
            }
        }
    }

    /// Echo what is left of an unterminated last line.
    pub fn finish(&mut self) {
        if !self.line.is_empty() {
            self.emit();
        }
        let _ = self.out.flush();
    }

    fn emit(&mut self) {
        let raw = self.line.strip_suffix(b"\r").unwrap_or(&self.line);
        let mut s = String::from_utf8_lossy(raw).into_owned();
        sanitize(&mut s);
        s.push('\n');
        let _ = self.out.write_all(s.as_bytes());
        let _ = self.out.flush();
        self.line.clear();
    }

    /// The writer (tests).
    pub fn into_inner(self) -> W {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo(chunks: &[&[u8]]) -> String {
        let mut e = LogEcho::new(Vec::new());
        for c in chunks {
            e.push(c);
        }
        e.finish();
        String::from_utf8(e.into_inner()).unwrap()
    }

    #[test]
    fn escapes_and_bidi_are_made_visible_lines_kept() {
        let out = echo(&[
            b"ok line\r\nred \x1b[31mtext\x1b[0m",
            b" and \xe2\x80\xaeevil\n",
            b"\x07bell, \xff bad utf8",
        ]);
        assert_eq!(
            out,
            "ok line\nred \\u{1b}[31mtext\\u{1b}[0m and \\u{202e}evil\n\\u{7}bell, \u{fffd} bad utf8\n"
        );
        assert!(!out.contains('\x1b') && !out.contains('\u{202e}'));
    }

    #[test]
    fn a_line_without_newline_is_echoed_in_bounded_pieces() {
        let long = vec![b'x'; MAX_ECHO_LINE * 2 + 10];
        let out = echo(&[&long]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0].len(), MAX_ECHO_LINE);
        assert_eq!(lines[2].len(), 10);
    }

    #[test]
    fn byte_at_a_time_matches_one_chunk() {
        let text = b"a\x1bb\nsecond\n";
        let bytes: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(echo(&bytes), echo(&[text]));
    }
}
