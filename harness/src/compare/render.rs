//! The comparison as text (a terminal table, optionally coloured) and Markdown (PR
//! comments). JSON is the serialised [`Comparison`] itself.
use std::fmt::Write as _;
use std::io::IsTerminal;

use super::{BenchComparison, Comparison, Verdict};
use crate::format::fmt_ns;

/// Whether to colour stdout: a terminal, no `NO_COLOR`, no `--no-color`.
pub fn use_color(no_color_flag: bool) -> bool {
    !no_color_flag
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && std::io::stdout().is_terminal()
}

fn fmt_value(v: f64, ns: Option<f64>, unit: &str) -> String {
    match ns {
        Some(ns) => fmt_ns(ns),
        None => format!("{v:.1} {unit}"),
    }
}

fn fmt_pct(x: f64) -> String {
    format!("{:+.1}%", x * 100.0)
}

fn fmt_change(c: &BenchComparison) -> String {
    c.change.map(fmt_pct).unwrap_or_else(|| "-".into())
}

fn fmt_ci(c: &BenchComparison) -> String {
    match c.ci {
        Some((lo, hi)) => format!("[{}, {}]", fmt_pct(lo), fmt_pct(hi)),
        None => "n/a".into(),
    }
}

fn fmt_p(c: &BenchComparison) -> String {
    match c.p_adjusted {
        Some(p) if p < 0.001 => "<0.001".into(),
        Some(p) => format!("{p:.3}"),
        None => "n/a".into(),
    }
}

fn verdict_text(c: &BenchComparison) -> String {
    match &c.note {
        Some(n) => format!("{} ({n})", c.verdict.label()),
        None => c.verdict.label().to_string(),
    }
}

use anstyle::{AnsiColor, Style};

const RED: Style = AnsiColor::Red.on_default();
const GREEN: Style = AnsiColor::Green.on_default();
const YELLOW: Style = AnsiColor::Yellow.on_default();
const DIM: Style = Style::new().dimmed();
const BOLD: Style = Style::new().bold();
/// `{RESET}` ends any of the styles above (anstyle's reset sequence).
const RESET: anstyle::Reset = anstyle::Reset;

fn summary_line(cmp: &Comparison) -> String {
    let s = &cmp.summary;
    let mut line = format!(
        "{} regressed, {} improved, {} unchanged",
        s.regressed, s.improved, s.unchanged
    );
    for (n, what) in [
        (s.broken, "broken"),
        (s.fixed, "fixed"),
        (s.insufficient, "with too few boots to test"),
        (s.not_applicable, "not comparable"),
        (s.ignored, "ignored"),
    ] {
        if n > 0 {
            let _ = write!(line, ", {n} {what}");
        }
    }
    line
}

/// The statistical method in one sentence.
pub fn method_line(cmp: &Comparison) -> String {
    let test = if cmp.design == "paired" {
        "Wilcoxon signed-rank on per-pair log ratios (A/B boots interleaved)"
    } else {
        "Mann-Whitney on per-boot log medians (separate runs)"
    };
    format!(
        "{test}; change = Hodges-Lehmann estimate, CI at {:.3}%; p adjusted for {} benchmarks (Bonferroni, family-wise alpha {}); minimum effect {:.1}%; lower is better",
        (1.0 - cmp.level) * 100.0,
        cmp.tests,
        cmp.alpha,
        cmp.threshold * 100.0
    )
}

fn run_line(label: &str, r: &super::RunRef) -> String {
    let mut l = format!("{label} {} ({})", r.run_id, r.path);
    if !r.problems.is_empty() {
        let _ = write!(l, " [BROKEN: {}]", r.problems.join("; "));
    }
    l
}

fn header_lines(cmp: &Comparison) -> Vec<String> {
    let mut v = vec![
        run_line("base:", &cmp.base),
        run_line("new: ", &cmp.new),
        method_line(cmp),
    ];
    for (side, r) in [("base", &cmp.base), ("new", &cmp.new)] {
        if let Some(n) = &r.noise {
            v.push(format!("{side} noise guard: {n}"));
        }
    }
    for d in &cmp.env_differences {
        v.push(format!(
            "warning: environments differ{}: {}: {:?} (base) vs {:?} (new)",
            if cmp.forced { " (--force)" } else { "" },
            d.field,
            d.base,
            d.new
        ));
    }
    v
}

/// Plain-text table (optionally with ANSI colours).
pub fn render_text(cmp: &Comparison, color: bool) -> String {
    let mut out = String::new();
    for l in header_lines(cmp) {
        let _ = writeln!(out, "{l}");
    }
    let _ = writeln!(out);
    let headers = [
        "benchmark",
        "base",
        "new",
        "change",
        "CI",
        "p (adj.)",
        "boots",
        "verdict",
    ];
    let rows: Vec<[String; 8]> = cmp
        .benchmarks
        .iter()
        .map(|c| {
            [
                c.name.clone(),
                fmt_value(c.base_median, c.base_median_ns, &c.unit),
                fmt_value(c.new_median, c.new_median_ns, &c.unit),
                fmt_change(c),
                fmt_ci(c),
                fmt_p(c),
                format!("{}/{}", c.base_boots, c.new_boots),
                verdict_text(c),
            ]
        })
        .collect();
    let mut widths = headers.map(|h| h.chars().count());
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let pad = |s: &str, w: usize, right: bool| {
        let n = w.saturating_sub(s.chars().count());
        if right {
            format!("{}{s}", " ".repeat(n))
        } else {
            format!("{s}{}", " ".repeat(n))
        }
    };
    let right = [false, true, true, true, true, true, true, false];
    let head: Vec<String> = headers
        .iter()
        .enumerate()
        .map(|(i, h)| pad(h, widths[i], right[i]))
        .collect();
    let head = head.join("  ");
    if color {
        let _ = writeln!(out, "{BOLD}{}{RESET}", head.trim_end());
    } else {
        let _ = writeln!(out, "{}", head.trim_end());
    }
    for (r, c) in rows.iter().zip(&cmp.benchmarks) {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, s)| pad(s, widths[i], right[i]))
            .collect();
        let line = line.join("  ");
        let line = line.trim_end();
        if color {
            let code = match c.verdict {
                Verdict::Regressed | Verdict::Broken => RED,
                Verdict::Improved | Verdict::Fixed => GREEN,
                Verdict::NotSignificant | Verdict::InsufficientBoots => YELLOW,
                Verdict::Unchanged
                | Verdict::BelowThreshold
                | Verdict::NotApplicable
                | Verdict::Ignored => DIM,
            };
            let _ = writeln!(out, "{code}{line}{RESET}");
        } else {
            let _ = writeln!(out, "{line}");
        }
    }
    if cmp.benchmarks.is_empty() {
        let _ = writeln!(out, "(no benchmarks in common)");
    }
    for (list, side) in [
        (&cmp.only_in_base, "base (missing from new: broken)"),
        (&cmp.only_in_new, "new"),
    ] {
        if !list.is_empty() {
            let _ = writeln!(
                out,
                "\nonly in {side} ({}): {}",
                list.len(),
                list.join(", ")
            );
        }
    }
    let _ = writeln!(out, "\n{}", summary_line(cmp));
    out
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|")
}

/// Markdown, for PR comments.
pub fn render_markdown(cmp: &Comparison) -> String {
    let mut out = String::new();
    let s = &cmp.summary;
    let icon = if cmp.has_regression() {
        "🔴"
    } else if s.improved > 0 {
        "🟢"
    } else {
        "⚪"
    };
    let _ = writeln!(out, "### kmbench: {icon} {}\n", summary_line(cmp));
    let _ = writeln!(
        out,
        "Base `{}` → new `{}`. {}.\n",
        md_escape(&cmp.base.run_id),
        md_escape(&cmp.new.run_id),
        md_escape(&method_line(cmp))
    );
    for (side, r) in [("base", &cmp.base), ("new", &cmp.new)] {
        if !r.problems.is_empty() {
            let _ = writeln!(
                out,
                "> 🔴 the {side} run is broken: {}\n",
                md_escape(&r.problems.join("; "))
            );
        }
        if r.unstable_host {
            if let Some(n) = &r.noise {
                let _ = writeln!(out, "> ⚠️ {side}: {}\n", md_escape(n));
            }
        }
    }
    for d in &cmp.env_differences {
        let _ = writeln!(
            out,
            "> ⚠️ environments differ{}: `{}`: `{}` (base) vs `{}` (new)\n",
            if cmp.forced { " (`--force`)" } else { "" },
            d.field,
            md_escape(&d.base),
            md_escape(&d.new)
        );
    }
    if !cmp.benchmarks.is_empty() {
        let _ = writeln!(
            out,
            "| Benchmark | Base | New | Change | CI | p (adj.) | Boots | Verdict |"
        );
        let _ = writeln!(out, "|:--|--:|--:|--:|--:|--:|--:|:--|");
        for c in &cmp.benchmarks {
            let verdict = match c.verdict {
                Verdict::Regressed | Verdict::Broken => {
                    format!("🔴 **{}**", md_escape(&verdict_text(c)))
                }
                Verdict::Improved | Verdict::Fixed => format!("🟢 {}", md_escape(&verdict_text(c))),
                _ => md_escape(&verdict_text(c)),
            };
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} | {} | {} | {}/{} | {} |",
                md_escape(&c.name),
                fmt_value(c.base_median, c.base_median_ns, &c.unit),
                fmt_value(c.new_median, c.new_median_ns, &c.unit),
                fmt_change(c),
                fmt_ci(c),
                fmt_p(c),
                c.base_boots,
                c.new_boots,
                verdict
            );
        }
    }
    for (list, side) in [
        (&cmp.only_in_base, "base (missing from new: broken)"),
        (&cmp.only_in_new, "new"),
    ] {
        if !list.is_empty() {
            let names: Vec<String> = list.iter().map(|n| format!("`{}`", md_escape(n))).collect();
            let _ = writeln!(out, "\nOnly in {side}: {}", names.join(", "));
        }
    }
    out
}
