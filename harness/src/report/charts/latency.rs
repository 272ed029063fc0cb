//! One latency chart per suite whose benchmarks have sizes.
use super::group::{is_access, panels_of, size_of, unit_of};
use super::smp::is_smp;
use super::{run_tag, slug, y_desc};
use crate::report::plot::{Chart, XKind, YKind};
use crate::results::{BenchEntry, RunResults};

/// One chart per suite whose benchmarks have sizes (access benchmarks and SMP records,
/// which have their own charts against CPU counts, excluded).
pub fn suite_charts(run: &RunResults) -> Vec<Chart> {
    let mut out = Vec::new();
    for (suite, entries) in crate::report::table::by_suite(run) {
        let entries: Vec<&BenchEntry> = entries
            .into_iter()
            .filter(|e| !is_access(e) && !is_smp(e))
            .collect();
        for kind in [XKind::Bytes, XKind::Order] {
            let of_kind: Vec<&BenchEntry> = entries
                .iter()
                .copied()
                .filter(|e| size_of(e).is_some_and(|(k, _, _)| k == kind))
                .collect();
            let unit = unit_of(&of_kind);
            let panels = panels_of(&of_kind, &unit, &["variant", "flush_mode"], kind);
            if panels.is_empty() {
                continue;
            }
            out.push(Chart {
                name: format!(
                    "latency-{}{}",
                    slug(&suite),
                    if kind == XKind::Order && entries.len() != of_kind.len() {
                        "-orders"
                    } else {
                        ""
                    }
                ),
                title: format!(
                    "{suite}: median latency by {}",
                    if kind == XKind::Order {
                        "order"
                    } else {
                        "size"
                    }
                ),
                note: format!(
                    "series = operation and mode, x = its size; {}",
                    run_tag(run)
                ),
                x_desc: if kind == XKind::Order {
                    "order (block of 2^order pages)".into()
                } else {
                    "size".into()
                },
                x_kind: kind,
                y_desc: y_desc(&unit, "median per operation"),
                y: YKind::Latency { unit },
                panels,
            });
        }
    }
    out
}
