//! The verdict: how one boot is judged from how it ended and what it sent
//! ([`of_boot`]), and the run's verdict over all its boots ([`of_run`]).
use kmbench_protocol::GuestExit;

use super::boots::BootData;
use super::status::{self, guest_exit_name, guest_exit_status};
use super::variants::VariantRun;
use crate::backend::BootEnd;
use crate::report::table;

/// How a boot is judged.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Verdict {
    pub ok: bool,
    /// Process exit status of `kmbench run`.
    pub status: u8,
    pub info: ExitInfoParts,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ExitInfoParts {
    pub status: String,
    pub code: Option<i32>,
    pub message: String,
}

/// Judge one boot from how it ended and what it sent.
pub fn of_boot(end: &BootEnd, data: &BootData, timeout_s: u64) -> Verdict {
    let mk = |ok, st, status: &str, code, message: String| Verdict {
        ok,
        status: st,
        info: ExitInfoParts {
            status: status.to_string(),
            code,
            message,
        },
    };
    match end {
        BootEnd::Exited {
            exit: GuestExit::Success,
            raw,
        } => {
            if data.end.is_none() {
                return mk(
                    false,
                    status::UNEXPECTED,
                    "unknown",
                    Some(*raw),
                    "guest exited without its end record".into(),
                );
            }
            let failed: Vec<&str> = data
                .selftests
                .iter()
                .filter(|s| !s.passed)
                .map(|s| s.name.as_str())
                .collect();
            if !failed.is_empty() {
                return mk(
                    false,
                    status::FAILURE,
                    "failure",
                    Some(*raw),
                    format!(
                        "{} self-test(s) failed: {}",
                        failed.len(),
                        failed.join(", ")
                    ),
                );
            }
            if let Some((error, line)) = data.bad_records.first() {
                return mk(
                    false,
                    status::FAILURE,
                    "rejected_records",
                    Some(*raw),
                    format!(
                        "{} line(s) from the guest were rejected (results.json \
                         rejected_records); first: {error}: {line}",
                        data.bad_records.len()
                    ),
                );
            }
            mk(
                true,
                status::SUCCESS,
                "success",
                Some(*raw),
                "success".into(),
            )
        }
        BootEnd::Exited { exit, raw } => {
            let message = match data.faults.last() {
                Some(f) => match f.cpu {
                    // Several vCPUs: say which one failed, unless the message already does.
                    Some(cpu) if !f.message.contains(&format!("CPU {cpu}")) => format!(
                        "guest CPU {cpu}: {}",
                        table::with_exit_kind(*exit, &f.message)
                    ),
                    _ => format!("guest {}", table::with_exit_kind(*exit, &f.message)),
                },
                None => format!("guest {} (exit code {})", exit.describe(), exit.code()),
            };
            mk(
                false,
                guest_exit_status(*exit),
                &guest_exit_name(*exit),
                Some(*raw),
                message,
            )
        }
        BootEnd::LaunchFailed { message } => mk(
            false,
            status::HARNESS,
            "launch_error",
            None,
            message.clone(),
        ),
        BootEnd::Unexpected { code, message, .. } => {
            let message = match data.faults.last() {
                Some(f) => format!("{message}; last fault: {}", table::describe_fault(f)),
                None => message.clone(),
            };
            mk(false, status::UNEXPECTED, "unknown", *code, message)
        }
        BootEnd::Timeout => mk(
            false,
            status::TIMEOUT,
            "timeout",
            None,
            format!("guest timed out after {timeout_s}s"),
        ),
        BootEnd::Interrupted => mk(
            false,
            status::INTERRUPTED,
            "interrupted",
            None,
            "interrupted".into(),
        ),
    }
}

/// The run's verdict: the first failing variant's, else a success. `None` when no boot ran.
pub fn of_run(runs: &[VariantRun]) -> Option<Verdict> {
    runs.iter()
        .filter_map(|r| r.verdict.clone())
        .find(|v| !v.ok)
        .or_else(|| runs.iter().find_map(|r| r.verdict.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::boots::BootData;
    use kmbench_protocol::{EndRecord, FaultRecord, SelftestRecord};

    #[test]
    fn verdict_mapping() {
        let mut d = BootData::default();
        // Clean exit without End record is not success.
        let v = of_boot(
            &BootEnd::Exited {
                exit: GuestExit::Success,
                raw: 1,
            },
            &d,
            5,
        );
        assert!(!v.ok);
        assert_eq!(v.status, status::UNEXPECTED);
        d.end = Some(EndRecord {
            exit: GuestExit::Success,
            benchmarks: 0,
            selftests_failed: 0,
        });
        let v = of_boot(
            &BootEnd::Exited {
                exit: GuestExit::Success,
                raw: 1,
            },
            &d,
            5,
        );
        assert!(v.ok);
        assert_eq!(v.status, status::SUCCESS);
        d.selftests.push(SelftestRecord {
            name: "buddy/merge".into(),
            passed: false,
            detail: "x".into(),
        });
        let v = of_boot(
            &BootEnd::Exited {
                exit: GuestExit::Success,
                raw: 1,
            },
            &d,
            5,
        );
        assert_eq!(v.status, status::FAILURE);
        assert!(v.info.message.contains("buddy/merge"));

        let mut d = BootData::default();
        d.faults.push(FaultRecord {
            exit: GuestExit::Exception,
            message: "page fault".into(),
            vector: Some(14),
            error_code: Some(2),
            rip: Some(0x1234),
            cr2: Some(0xdead000),
            cpl: Some(0),
            cpu: None,
        });
        let v = of_boot(
            &BootEnd::Exited {
                exit: GuestExit::Exception,
                raw: 7,
            },
            &d,
            5,
        );
        assert_eq!(v.status, status::EXCEPTION);
        assert_eq!(v.info.status, "exception");
        assert_eq!(v.info.code, Some(7));
        assert_eq!(v.info.message, "guest CPU exception: page fault");
        let v = of_boot(
            &BootEnd::Exited {
                exit: GuestExit::Panic,
                raw: 5,
            },
            &BootData::default(),
            5,
        );
        assert_eq!((v.status, v.info.status.as_str()), (status::PANIC, "panic"));
        let v = of_boot(
            &BootEnd::Exited {
                exit: GuestExit::MmMisuse,
                raw: 9,
            },
            &BootData::default(),
            5,
        );
        assert_eq!(
            (v.status, v.info.status.as_str()),
            (status::MM_MISUSE, "mm_misuse")
        );
        let v = of_boot(&BootEnd::Timeout, &BootData::default(), 7);
        assert_eq!(
            (v.status, v.info.message.as_str()),
            (status::TIMEOUT, "guest timed out after 7s")
        );
        let v = of_boot(&BootEnd::Interrupted, &BootData::default(), 7);
        assert_eq!(
            (v.status, v.info.status.as_str()),
            (status::INTERRUPTED, "interrupted")
        );
        let v = of_boot(
            &BootEnd::LaunchFailed {
                message: "bad".into(),
            },
            &BootData::default(),
            7,
        );
        assert_eq!(
            (v.status, v.info.status.as_str()),
            (status::HARNESS, "launch_error")
        );
        // Every guest exit code maps to a distinct process status.
        let mut seen: Vec<u8> = GuestExit::ALL
            .iter()
            .map(|e| guest_exit_status(*e))
            .collect();
        seen.extend([
            status::HARNESS,
            status::TIMEOUT,
            status::UNEXPECTED,
            status::INTERRUPTED,
        ]);
        let n = seen.len();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), n);
    }
}
