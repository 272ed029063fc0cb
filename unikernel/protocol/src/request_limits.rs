//! The accepted range of a serve-mode [`Request`](crate::Request)'s numbers.
//!
//! The host checks every request with [`check_request`] before it sends it (a typed
//! [`RequestError`] from `GuestSession::request`), and the guest checks it again before it
//! runs anything, so a request that did not come from the harness can neither make the
//! guest allocate without bound, loop for days, nor panic it: the guest answers with an
//! `error` measurement and keeps serving.
use alloc::string::String;
use core::fmt;

use crate::limits::{Range, ALLOC_BYTES};
use crate::SERVE_OPS;

/// `iters` of every op: at least one iteration, at most 2^32 (about a second per 2^30
/// iterations of the cheapest op: a request always ends).
pub const ITERS: Range = Range::new(1, 1 << 32);
/// `arg` of `kmalloc_pair` / `kzalloc_pair`: the allocation size in bytes.
pub const KMALLOC_BYTES: Range = ALLOC_BYTES;
/// `arg` of `alloc_pages_pair`: the buddy order (MAX_ORDER is 18).
pub const PAGES_ORDER: Range = crate::limits::ORDER;
/// `arg` of `vmalloc_pair`: the size in bytes (the guest's memory bounds it anyway).
pub const VMALLOC_BYTES: Range = Range::new(1, 64 << 20);
/// `arg` of `alu`: dependent adds per iteration (0 means 1).
pub const ALU_ADDS: Range = Range::new(0, 1_000_000);
/// `arg` of `gate_roundtrip` and `nop`: unused, must be 0.
pub const UNUSED_ARG: Range = Range::new(0, 0);

/// Why a request is refused before it runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestError {
    /// `op` is none of [`SERVE_OPS`] (nor `quit`).
    UnknownOp { op: String },
    /// `key` (`"arg"` or `"iters"`) of `op` is outside `range`.
    OutOfRange {
        op: String,
        key: &'static str,
        value: u64,
        range: Range,
    },
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::UnknownOp { op } => write!(
                f,
                "unknown op `{op}` (known: {}, quit)",
                SERVE_OPS.join(", ")
            ),
            RequestError::OutOfRange {
                op,
                key,
                value,
                range,
            } => write!(f, "{op}: {key} = {value} is out of range: expected {range}"),
        }
    }
}

/// The range of `arg` for `op`, or `None` for an unknown op.
pub fn arg_range(op: &str) -> Option<Range> {
    Some(match op {
        "kmalloc_pair" | "kzalloc_pair" => KMALLOC_BYTES,
        "alloc_pages_pair" => PAGES_ORDER,
        "vmalloc_pair" => VMALLOC_BYTES,
        "alu" => ALU_ADDS,
        "gate_roundtrip" | "nop" => UNUSED_ARG,
        _ => return None,
    })
}

/// Check one measurement request (not `quit`, which takes no numbers).
pub fn check_request(op: &str, arg: u64, iters: u64) -> Result<(), RequestError> {
    let range = arg_range(op).ok_or_else(|| RequestError::UnknownOp { op: op.into() })?;
    let out = |key, value, range| RequestError::OutOfRange {
        op: op.into(),
        key,
        value,
        range,
    };
    if !range.contains(arg) {
        return Err(out("arg", arg, range));
    }
    if !ITERS.contains(iters) {
        return Err(out("iters", iters, ITERS));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_op_has_a_range_and_the_edges_hold() {
        for op in SERVE_OPS {
            let r = arg_range(op).expect(op);
            assert_eq!(check_request(op, r.min, 1), Ok(()), "{op}");
            assert_eq!(check_request(op, r.max, ITERS.max), Ok(()), "{op}");
            assert!(matches!(
                check_request(op, r.max + 1, 1),
                Err(RequestError::OutOfRange { key: "arg", .. })
            ));
            assert!(matches!(
                check_request(op, r.min, 0),
                Err(RequestError::OutOfRange { key: "iters", .. })
            ));
            assert!(matches!(
                check_request(op, r.min, u64::MAX),
                Err(RequestError::OutOfRange { key: "iters", .. })
            ));
        }
        assert!(matches!(
            check_request("kmalloc_pair", 0, 1),
            Err(RequestError::OutOfRange {
                key: "arg",
                value: 0,
                ..
            })
        ));
        assert!(matches!(
            check_request("no_such_op", 0, 1),
            Err(RequestError::UnknownOp { .. })
        ));
        assert!(
            check_request("quit", 0, 0).is_err(),
            "quit is not a measurement"
        );
    }
}
