//! The progress bar on stderr while a run boots its guests: `n/total` benchmarks, the
//! boot `k/N` (and the variant `j/M` with `[[variants]]`), the benchmark just measured and
//! an ETA.
//!
//! The plan fixes the boots up front; how many benchmarks a boot records is known once one
//! boot has finished (every boot of a run records the same list), so the first boot counts
//! boots and the bar then counts benchmarks across all boots. Hidden with `--quiet` or
//! `--verbose`, and whenever stderr is not a terminal (CI logs stay clean).
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Progress {
    bar: ProgressBar,
    total_boots: u64,
    done_boots: u64,
    /// Benchmarks per boot, once a boot has finished.
    per_boot: Option<u64>,
    in_boot: u64,
    label: String,
}

const STYLE: &str =
    "{spinner} [{elapsed_precise}] {bar:28} {pos}/{len} {prefix} · ETA {eta} · {wide_msg}";

impl Progress {
    /// A bar for `total_boots` boots (hidden when `quiet` or `verbose`).
    pub fn new(total_boots: u64, quiet: bool, verbose: bool) -> Progress {
        let bar = if quiet || verbose {
            ProgressBar::hidden()
        } else {
            let b = ProgressBar::with_draw_target(
                Some(total_boots.max(1)),
                ProgressDrawTarget::stderr(),
            );
            b.set_style(
                ProgressStyle::with_template(STYLE)
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            b.enable_steady_tick(Duration::from_millis(120));
            b
        };
        Progress {
            bar,
            total_boots: total_boots.max(1),
            done_boots: 0,
            per_boot: None,
            in_boot: 0,
            label: String::new(),
        }
    }

    /// A boot starts: `boot`/`boots` of variant `variant` (`index`/`count`, 0-based index).
    pub fn start_boot(&mut self, variant: Option<(&str, usize, usize)>, boot: u32, boots: u32) {
        self.in_boot = 0;
        self.label = match variant {
            Some((name, i, n)) => format!("variant {name} {}/{n}, boot {boot}/{boots}", i + 1),
            None => format!("boot {boot}/{boots}"),
        };
        self.bar.set_prefix(self.unit_label());
        self.redraw();
    }

    fn unit_label(&self) -> String {
        if self.per_boot.is_some() {
            format!("benchmarks · {}", self.label)
        } else {
            format!("boots · {}", self.label)
        }
    }

    /// One more boot than planned (stable mode, `kmbench ab` sides): the total grows.
    pub fn add_boot(&mut self) {
        self.total_boots += 1;
        self.redraw();
    }

    /// A benchmark record arrived.
    pub fn bench(&mut self, name: &str) {
        self.in_boot += 1;
        self.bar.set_message(name.to_string());
        self.redraw();
    }

    /// The boot ended (whatever its outcome).
    pub fn end_boot(&mut self) {
        self.done_boots += 1;
        if self.per_boot.is_none() && self.in_boot > 0 {
            self.per_boot = Some(self.in_boot);
            // Re-base the ETA on benchmarks now that their count is known.
            self.bar.reset_eta();
        }
        self.in_boot = 0;
        self.bar.set_prefix(self.unit_label());
        self.redraw();
    }

    fn redraw(&self) {
        let (pos, len) = position(
            self.done_boots,
            self.total_boots,
            self.per_boot,
            self.in_boot,
        );
        self.bar.set_length(len);
        self.bar.set_position(pos);
    }

    /// Run `f` (which prints) with the bar cleared, then redraw it.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        self.bar.suspend(f)
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// (position, length) of the bar: boots until the per-boot benchmark count is known, then
/// benchmarks over every boot (a boot that records more than the first is capped).
pub fn position(
    done_boots: u64,
    total_boots: u64,
    per_boot: Option<u64>,
    in_boot: u64,
) -> (u64, u64) {
    match per_boot {
        None => (done_boots, total_boots),
        Some(n) => (done_boots * n + in_boot.min(n), total_boots * n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_boots_then_benchmarks() {
        assert_eq!(position(0, 6, None, 17), (0, 6));
        assert_eq!(position(1, 6, Some(40), 0), (40, 240));
        assert_eq!(position(2, 6, Some(40), 10), (90, 240));
        assert_eq!(position(5, 6, Some(40), 99), (240, 240), "capped");
        let mut p = Progress::new(4, true, false);
        p.start_boot(Some(("thp", 1, 2)), 1, 2);
        assert_eq!(p.label, "variant thp 2/2, boot 1/2");
        p.bench("a");
        p.bench("b");
        p.end_boot();
        assert_eq!(p.per_boot, Some(2));
        assert_eq!(p.done_boots, 1);
    }
}
