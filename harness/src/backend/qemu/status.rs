//! How a QEMU boot ended, read from its exit status, signal and stderr: guest exit codes
//! (`isa-debug-exit`), QEMU's own startup failures, KVM internal errors.
use kmbench_protocol::GuestExit;

use crate::backend::BootEnd;

pub(super) const KVM_INTERNAL_ERROR: &str = "KVM internal error";

/// One line for a KVM internal error (usually an instruction KVM could not emulate: under
/// a software hypervisor everything at CPL0 is emulated), with the guest RIP and code.
pub(super) fn kvm_internal_error_message(stderr: &str) -> String {
    let first = stderr
        .lines()
        .find(|l| l.contains(KVM_INTERNAL_ERROR))
        .unwrap_or(KVM_INTERNAL_ERROR);
    let rip = stderr
        .split_whitespace()
        .find_map(|w| w.strip_prefix("RIP="))
        .map(|r| format!(", guest RIP {r}"))
        .unwrap_or_default();
    let code = stderr
        .lines()
        .find_map(|l| l.strip_prefix("Code="))
        .and_then(|c| c.split('<').nth(1))
        .and_then(|c| c.split('>').next())
        .map(|b| format!(", instruction starts with byte {b}"))
        .unwrap_or_default();
    format!(
        "{first} (KVM could not run or emulate a guest instruction; QEMU paused the VM){rip}{code}"
    )
}

pub(super) fn first_error_line(stderr: &str) -> String {
    stderr
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(|l| l.trim_start_matches("qemu-system-x86_64: ").to_string())
        .unwrap_or_default()
}

fn launch_failed(stderr: &str) -> BootEnd {
    BootEnd::LaunchFailed {
        message: format!("QEMU failed to start: {}", first_error_line(stderr)),
    }
}

/// Map a QEMU process status to how the boot ended.
pub fn classify(code: Option<i32>, signal: Option<i32>, records: usize, stderr: &str) -> BootEnd {
    if let Some(c) = code {
        if let Some(exit) = GuestExit::from_qemu_status(c) {
            // QEMU's own startup errors also exit 1 (= guest code 0): no record means no guest.
            if !(records == 0 && c == 1 && !stderr.trim().is_empty()) {
                return BootEnd::Exited { exit, raw: c };
            }
            return launch_failed(stderr);
        }
        if records == 0 && !stderr.trim().is_empty() {
            return launch_failed(stderr);
        }
        let detail = first_error_line(stderr);
        return BootEnd::Unexpected {
            code: Some(c),
            signal: None,
            message: if detail.is_empty() {
                format!("QEMU exited with status {c}, which is not a guest exit code")
            } else {
                format!("QEMU exited with status {c}: {detail}")
            },
        };
    }
    let detail = first_error_line(stderr);
    let sig = signal.unwrap_or(0);
    if records == 0 && !detail.is_empty() {
        return launch_failed(stderr);
    }
    BootEnd::Unexpected {
        code: None,
        signal,
        message: if detail.is_empty() {
            format!("QEMU killed by signal {sig}")
        } else {
            format!("QEMU killed by signal {sig}: {detail}")
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_status_mapping() {
        assert_eq!(
            classify(Some(1), None, 3, ""),
            BootEnd::Exited {
                exit: GuestExit::Success,
                raw: 1
            }
        );
        assert_eq!(
            classify(Some(5), None, 3, ""),
            BootEnd::Exited {
                exit: GuestExit::Panic,
                raw: 5
            }
        );
        assert_eq!(
            classify(Some(7), None, 1, ""),
            BootEnd::Exited {
                exit: GuestExit::Exception,
                raw: 7
            }
        );
        // QEMU startup failure: status 1, no records, an error on stderr.
        match classify(
            Some(1),
            None,
            0,
            "qemu-system-x86_64: -object memory-backend-memfd: failed\n",
        ) {
            BootEnd::LaunchFailed { message } => assert!(
                message.starts_with("QEMU failed to start: -object"),
                "{message}"
            ),
            other => panic!("{other:?}"),
        }
        // Abort (SIGABRT) before any record: launch failure with QEMU's message.
        match classify(
            None,
            Some(6),
            0,
            "qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69\n",
        ) {
            BootEnd::LaunchFailed { message } => assert!(message.contains("MSR 0x10a")),
            other => panic!("{other:?}"),
        }
        // Even status: not a debug-exit code.
        assert!(matches!(
            classify(Some(0), None, 2, ""),
            BootEnd::Unexpected { code: Some(0), .. }
        ));
        assert!(matches!(
            classify(None, Some(9), 2, ""),
            BootEnd::Unexpected {
                signal: Some(9),
                ..
            }
        ));
        // Odd status with an unknown guest code.
        assert!(matches!(
            classify(Some(41), None, 2, ""),
            BootEnd::Unexpected { .. }
        ));
    }
}
