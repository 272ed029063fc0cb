//! `index.html`: one self-contained page per run (and per comparison). Inline CSS and SVG,
//! nothing loaded from the network, readable offline and attachable to a CI job.
//!
//! Order of a run's page: what it answers (kmalloc or vmalloc? huge pages or 4K?) and the
//! run's health (exit, self-tests, faults), the environment, the charts, then the same
//! tables and TLB analysis `kmbench report` prints.
//!
//! One tiny inline script counts the charts the browser laid out
//! (`<html data-charts-rendered="N">`), which the headless-browser test reads back.
use std::fmt::Write as _;

use kmbench_protocol::BenchStatus;

use super::charts::{self, point, unit_of};
use super::plot::{self, fmt_ns_axis, ChangeRow, Pt};
use crate::compare::Comparison;
use crate::format::human_size;
use crate::results::{BenchEntry, RunResults};

/// Escape text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '&' => o.push_str("&amp;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

const CSS: &str = r#"
:root { color-scheme: light; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto;
  max-width: 1800px; padding: 1em 2em 4em; color: #1d1d1f; background: #fafafa; }
h1 { font-size: 1.6em; margin: .2em 0; } h2 { margin-top: 1.8em; border-bottom: 1px solid #ddd; }
.sub { color: #555; }
.badge { display: inline-block; padding: .1em .6em; border-radius: .8em; font-weight: 600; }
.ok { background: #dff3df; color: #185c18; } .bad { background: #fbe0e0; color: #8a1414; }
.warn { background: #fff1d0; color: #6b4a00; }
.answers { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 1em; }
.card { background: #fff; border: 1px solid #ddd; border-radius: 8px; padding: .6em 1.2em 1em;
  overflow-x: auto; }
.card h3 { margin: .3em 0 .5em; }
table { border-collapse: collapse; background: #fff; }
td, th { padding: .2em .7em; border-bottom: 1px solid #eee; text-align: left; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
figure { margin: 1.5em 0; background: #fff; border: 1px solid #ddd; border-radius: 8px;
  padding: .5em; overflow-x: auto; }
figure svg { display: block; max-width: 100%; height: auto; }
figcaption { color: #666; font-size: .85em; padding: .3em .5em 0; }
pre { background: #fff; border: 1px solid #ddd; border-radius: 8px; padding: 1em;
  overflow-x: auto; font-size: 12.5px; line-height: 1.35; }
nav a { margin-right: 1em; }
"#;

const SCRIPT: &str = r#"<script>
window.addEventListener('load', function () {
  var n = 0;
  document.querySelectorAll('figure svg').forEach(function (s) {
    var r = s.getBoundingClientRect();
    if (r.width > 0 && r.height > 0 && s.querySelector('text')) n++;
  });
  document.documentElement.setAttribute('data-charts-rendered', String(n));
});
</script>"#;

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body}\n{SCRIPT}\n</body>\n</html>\n",
        esc(title)
    )
}

fn fmt_val(v: f64, unit: &str) -> String {
    if unit == "ns" {
        fmt_ns_axis(v)
    } else {
        format!("{} {unit}", crate::format::fmt_num(v))
    }
}

fn pre(out: &mut String, f: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>) {
    let mut buf = Vec::new();
    let _ = f(&mut buf);
    let _ = write!(out, "<pre>{}</pre>", esc(&String::from_utf8_lossy(&buf)));
}

/// kmalloc vs vmalloc pair by size (the sizes both measured).
fn answer_alloc(run: &RunResults) -> Option<String> {
    let find = |prefix: &str| -> Vec<&BenchEntry> {
        run.benchmarks
            .iter()
            .filter(|e| e.name.starts_with(prefix) && e.status == BenchStatus::Ok)
            .collect()
    };
    let km = find("kmalloc/pair/");
    let vm = find("vmalloc/pair/");
    if km.is_empty() || vm.is_empty() {
        return None;
    }
    let mut all = km.clone();
    all.extend(&vm);
    let unit = unit_of(&all);
    let size = |e: &BenchEntry| charts::size_of(e).map(|s| s.1 as u64);
    let mut modes: Vec<String> = vm
        .iter()
        .filter_map(|e| {
            e.params
                .get("flush_mode")
                .and_then(|m| m.as_str())
                .map(str::to_string)
        })
        .collect();
    modes.dedup();
    let mut modes_u: Vec<String> = Vec::new();
    for m in modes {
        if !modes_u.contains(&m) {
            modes_u.push(m);
        }
    }
    let mut sizes: Vec<u64> = vm.iter().filter_map(|e| size(e)).collect();
    sizes.sort();
    sizes.dedup();
    let val = |e: &BenchEntry| point(e, &unit, 1.0).map(|p| p.y);
    let mut s = String::from(
        "<div class=\"card\"><h3>kmalloc or vmalloc?</h3><table><tr><th>size</th><th class=n>kmalloc pair</th>",
    );
    for m in &modes_u {
        let _ = write!(s, "<th class=n>vmalloc pair ({})</th>", esc(m));
    }
    s.push_str("<th class=n>vmalloc / kmalloc</th></tr>");
    let mut worst: Option<(u64, f64)> = None;
    for sz in &sizes {
        let k = km
            .iter()
            .find(|e| size(e) == Some(*sz))
            .and_then(|e| val(e));
        let _ = write!(
            s,
            "<tr><td class=n>{}</td><td class=n>{}</td>",
            human_size(*sz),
            k.map(|v| fmt_val(v, &unit)).unwrap_or("–".into())
        );
        let mut first = None;
        for m in &modes_u {
            let v = vm
                .iter()
                .find(|e| {
                    size(e) == Some(*sz)
                        && e.params.get("flush_mode").and_then(|x| x.as_str()) == Some(m)
                })
                .and_then(|e| val(e));
            first = first.or(v);
            let _ = write!(
                s,
                "<td class=n>{}</td>",
                v.map(|v| fmt_val(v, &unit)).unwrap_or("–".into())
            );
        }
        match (k, first) {
            (Some(k), Some(v)) => {
                let r = v / k;
                worst = Some(worst.map_or((*sz, r), |w| if r < w.1 { (*sz, r) } else { w }));
                let _ = write!(s, "<td class=n>{r:.1}×</td></tr>");
            }
            _ => s.push_str("<td class=n>–</td></tr>"),
        }
    }
    s.push_str("</table>");
    let lazy = modes_u.first().map(String::as_str).unwrap_or("");
    if let Some((sz, r)) = worst {
        let _ = write!(
            s,
            "<p>At every size both measured, one vmalloc+vfree ({}) costs at least <b>{r:.1}×</b> \
             a kmalloc+kfree (closest at {}).",
            esc(lazy),
            human_size(sz)
        );
    } else {
        // No common size: the cheapest vmalloc pair against the dearest kmalloc pair.
        let best_v = vm
            .iter()
            .filter(|e| e.params.get("flush_mode").and_then(|x| x.as_str()) == Some(lazy))
            .filter_map(|e| Some((val(e)?, size(e)?)))
            .min_by(|a, b| a.0.total_cmp(&b.0));
        let worst_k = km
            .iter()
            .filter_map(|e| Some((val(e)?, size(e)?)))
            .max_by(|a, b| a.0.total_cmp(&b.0));
        if let (Some((v, vs)), Some((k, ks))) = (best_v, worst_k) {
            let _ = write!(
                s,
                "<p>No size was measured by both; the cheapest vmalloc+vfree ({}, {} at {}) costs \
                 <b>{:.1}×</b> the dearest kmalloc+kfree ({} at {}).",
                esc(lazy),
                fmt_val(v, &unit),
                human_size(vs),
                v / k,
                fmt_val(k, &unit),
                human_size(ks)
            );
        } else {
            s.push_str("<p>");
        }
    }
    s.push_str(
        " vmalloc buys virtually contiguous memory the slab and buddy allocators can't serve; \
         where kmalloc can serve a size, it is the cheaper call. <i>vmalloc-phases</i> shows \
         where vmalloc's time goes on this host (page-table writes and TLB flushes exit to \
         the hypervisor under shadow paging).</p>",
    );
    s.push_str("</div>");
    Some(s)
}

/// How many of the largest working sets the verdict's median takes when no 4K TLB reach
/// is known (or fewer than two points lie past it).
const TOP_POINTS: usize = 3;

/// The verdict's statistic for one 4K/2M line: the median ratio over the working sets at
/// or past `reach` (the largest 4K TLB reach), else over the [`TOP_POINTS`] largest ones;
/// with a description of which points it took.
fn robust_ratio(pts: &[Pt], reach: Option<u64>) -> Option<(f64, String)> {
    let past: Vec<f64> = match reach {
        Some(r) => pts
            .iter()
            .filter(|p| p.x >= r as f64)
            .map(|p| p.y)
            .collect(),
        None => vec![],
    };
    let (ys, what) = if past.len() >= 2 {
        let n = past.len();
        (
            past,
            format!("{n} working sets ≥ {}", human_size(reach.unwrap_or(0))),
        )
    } else {
        let n = pts.len().min(TOP_POINTS);
        let ys: Vec<f64> = pts[pts.len() - n..].iter().map(|p| p.y).collect();
        (ys, format!("largest {n} working sets"))
    };
    let mut ys: Vec<f64> = ys.into_iter().filter(|y| y.is_finite()).collect();
    if ys.is_empty() {
        return None;
    }
    ys.sort_by(f64::total_cmp);
    let n = ys.len();
    let med = if n % 2 == 1 {
        ys[n / 2]
    } else {
        (ys[n / 2 - 1] + ys[n / 2]) / 2.0
    };
    Some((med, what))
}

/// 4K/2M at each variant's largest working set and a robust ratio: the median over the
/// working sets past the largest 4K TLB reach ([`robust_ratio`]).
fn answer_pages(run: &RunResults) -> Option<String> {
    let chart = charts::tlb_ratio(run)?;
    let reach = charts::max_4k_reach(run);
    let mut s = String::from(
        "<div class=\"card\"><h3>Huge pages or 4K?</h3><table><tr><th>access</th><th>pages compared [variant]</th>\
         <th class=n>4K/2M at largest working set</th><th class=n>median 4K/2M past the 4K TLB reach</th></tr>",
    );
    let mut best: Option<(f64, String)> = None;
    for p in &chart.panels {
        for l in &p.lines {
            let (Some(last), Some((med, what))) =
                (l.pts.last(), robust_ratio(&l.pts, reach.map(|r| r.0)))
            else {
                continue;
            };
            let _ = write!(
                s,
                "<tr><td>{}</td><td>{}</td><td class=n>{:.2} at {}</td><td class=n>{:.2} over {}</td></tr>",
                esc(&p.title),
                esc(&l.label),
                last.y,
                human_size(last.x as u64),
                med,
                esc(&what)
            );
            if best.as_ref().is_none_or(|b| med > b.0) {
                best = Some((med, format!("{} ({}, over {what})", l.label, p.title)));
            }
        }
    }
    s.push_str("</table>");
    if let Some((r, wher)) = best {
        let basis = match reach {
            Some((b, src)) => format!(
                "the median 4K/2M ratio over the working sets at or past the largest 4K TLB \
                 reach, {} ({src}), or over the {TOP_POINTS} largest working sets where fewer \
                 than two lie past it",
                human_size(b)
            ),
            None => format!(
                "the median 4K/2M ratio over the {TOP_POINTS} largest working sets (no 4K TLB \
                 reach is known: CPUID reports none and no latency step was found)"
            ),
        };
        let verdict = if r >= 1.1 {
            format!(
                "Huge pages pay off here: 4K pages are <b>{r:.2}×</b> slower, for {}.",
                esc(&wher)
            )
        } else {
            format!(
                "On this host huge pages change little: the largest ratio is <b>{r:.2}</b> ({}). \
                 Under shadow paging a guest 2M page is only a 2M TLB entry where the host backs it \
                 with huge pages; compare the panels per host backing.",
                esc(&wher)
            )
        };
        let _ = write!(
            s,
            "<p>{verdict}</p><p><small>Verdict statistic: {}.</small></p>",
            esc(&basis)
        );
    }
    s.push_str("</div>");
    Some(s)
}

fn health(run: &RunResults) -> String {
    let mut s = String::from("<div class=\"card\"><h3>Run</h3><ul>");
    let (cls, text) = match (&run.exit, run.complete) {
        (Some(x), true) => ("ok", format!("complete — {}", x.status)),
        (Some(x), false) => ("bad", format!("INCOMPLETE — {}: {}", x.status, x.message)),
        (None, true) => ("ok", "complete".to_string()),
        (None, false) => (
            "bad",
            "INCOMPLETE (still running or interrupted)".to_string(),
        ),
    };
    let _ = write!(
        s,
        "<li><span class=\"badge {cls}\">{}</span></li>",
        esc(&text)
    );
    let failed = run.selftests.iter().filter(|t| !t.passed).count();
    if !run.selftests.is_empty() {
        let _ = write!(
            s,
            "<li>self-tests: <span class=\"badge {}\">{} passed, {failed} failed</span></li>",
            if failed == 0 { "ok" } else { "bad" },
            run.selftests.len() - failed
        );
        for t in run.selftests.iter().filter(|t| !t.passed) {
            let _ = write!(s, "<li>FAIL {}: {}</li>", esc(&t.name), esc(&t.detail));
        }
    }
    for f in &run.faults {
        let _ = write!(
            s,
            "<li><span class=\"badge bad\">{}</span></li>",
            esc(&crate::report::table::describe_fault(f))
        );
    }
    // Not measured, grouped by status and reason (66 × unsupported: 1 GiB pages not offered).
    let mut not_ok: Vec<(String, usize)> = Vec::new();
    for e in run
        .benchmarks
        .iter()
        .filter(|e| e.status != BenchStatus::Ok)
    {
        let why = format!(
            "{}: {}",
            serde_json::to_value(e.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            e.message.as_deref().unwrap_or("")
        );
        match not_ok.iter_mut().find(|(w, _)| *w == why) {
            Some((_, n)) => *n += 1,
            None => not_ok.push((why, 1)),
        }
    }
    for (why, n) in not_ok {
        let _ = write!(
            s,
            "<li><span class=\"badge warn\">{n} not measured</span> {}</li>",
            esc(&why)
        );
    }
    if let Some(vs) = run.env.extra.get("variants").and_then(|v| v.as_array()) {
        for v in vs {
            let st = v.get("status").and_then(|x| x.as_str()).unwrap_or("");
            if st != "success" {
                let _ = write!(
                    s,
                    "<li><span class=\"badge warn\">variant {} {st}</span> {}</li>",
                    esc(v.get("name").and_then(|x| x.as_str()).unwrap_or("?")),
                    esc(v.get("message").and_then(|x| x.as_str()).unwrap_or(""))
                );
            }
        }
    }
    s.push_str("</ul></div>");
    s
}

fn env_table(run: &RunResults) -> String {
    let e = &run.env;
    let mut rows: Vec<(&str, String)> = vec![
        ("started", run.started_at.clone()),
        (
            "config",
            format!(
                "{} (sha256 {})",
                e.config_file,
                e.config_hash.get(..12).unwrap_or(&e.config_hash)
            ),
        ),
        (
            "accel / hypervisor / backend",
            format!("{} / {} / {}", e.accel, e.hypervisor, e.backend),
        ),
        ("guest CPL", format!("{} ({})", e.cpl, e.cpl_source)),
        ("CPU model", e.cpu_model.clone()),
        ("host", format!("{} / {}", e.host_cpu, e.host_kernel)),
        ("machine", e.machine.clone()),
        (
            "TSC",
            format!("{:.3} GHz ({})", e.tsc_hz as f64 / 1e9, e.tsc_source),
        ),
        ("guest memory", format!("{} MiB", e.guest_memory_mib)),
        (
            "direct map / host backing",
            format!("{} / {}", e.direct_map_page, e.host_backing),
        ),
        (
            "mm",
            format!(
                "flush {}, debug {}",
                e.flush_mode,
                if e.mm_debug { "on" } else { "off" }
            ),
        ),
        ("boots", e.boots.to_string()),
        ("boot", format!("{:.1} ms", e.boot_ms)),
        ("commit", e.kmbench_commit.clone()),
    ];
    if !e.qemu_version.is_empty() {
        rows.push(("QEMU", e.qemu_version.clone()));
    }
    if let Some(g) = &e.guest {
        rows.push((
            "guest sees",
            format!(
                "{} {}, 1G pages {}, PCID {}, PMU {}",
                g.guest_hypervisor,
                g.cpu_vendor,
                g.features.page_1g,
                g.features.pcid,
                g.features.pmu
            ),
        ));
    }
    let mut s = String::from("<table>");
    for (k, v) in rows {
        let _ = write!(s, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(&v));
    }
    s.push_str("</table>");
    s
}

/// The whole page for a run; `charts` are the (name, svg) pairs also written as files.
pub fn run_page(run: &RunResults, charts: &[(String, String)]) -> String {
    let mut b = String::new();
    let _ = write!(
        b,
        "<h1>kmbench run {}</h1><p class=\"sub\">{} · started {} · {} {} · CPL {}</p>",
        esc(&run.run_id),
        esc(&run.env.config_file),
        esc(&run.started_at),
        esc(&run.env.accel),
        esc(&run.env.hypervisor),
        run.env.cpl
    );
    b.push_str("<nav><a href=\"#answers\">answers</a><a href=\"#env\">environment</a><a href=\"#charts\">charts</a><a href=\"#tables\">tables</a>");
    if crate::report::tlb::has_tlb(run) {
        b.push_str("<a href=\"#tlb\">TLB analysis</a>");
    }
    b.push_str("</nav>");
    b.push_str("<h2 id=\"answers\">Answers</h2><div class=\"answers\">");
    b.push_str(&health(run));
    if let Some(a) = answer_alloc(run) {
        b.push_str(&a);
    }
    if let Some(a) = answer_pages(run) {
        b.push_str(&a);
    }
    b.push_str("</div>");
    b.push_str("<h2 id=\"env\">Environment</h2>");
    b.push_str(&env_table(run));
    b.push_str("<h2 id=\"charts\">Charts</h2>");
    if charts.is_empty() {
        b.push_str("<p>No charts: no benchmark of this run has a size.</p>");
    }
    for (name, svg) in charts {
        let _ = write!(
            b,
            "<figure id=\"chart-{0}\">{svg}<figcaption>{0}.svg</figcaption></figure>",
            esc(name)
        );
    }
    b.push_str("<h2 id=\"tables\">Tables</h2>");
    pre(&mut b, |o| crate::report::table::print(run, o));
    if crate::report::tlb::has_tlb(run) {
        b.push_str("<h2 id=\"tlb\">TLB analysis</h2>");
        pre(&mut b, |o| crate::report::tlb::print_report(run, o));
    }
    b.push_str("<h2>Details</h2>");
    pre(&mut b, |o| super::print_details(run, o));
    page(&format!("kmbench {}", run.run_id), &b)
}

/// The change chart's rows: every comparable benchmark, largest change first.
pub fn change_rows(cmp: &Comparison, max: usize) -> Vec<ChangeRow> {
    cmp.benchmarks
        .iter()
        .filter_map(|b| {
            Some(ChangeRow {
                name: b.name.clone(),
                change: b.change?,
                ci: b.ci,
                verdict: b
                    .verdict
                    .label()
                    .split(' ')
                    .next()
                    .unwrap_or("")
                    .to_string(),
            })
        })
        .take(max)
        .collect()
}

/// The page for a comparison (`kmbench compare --html FILE`).
pub fn compare_page(cmp: &Comparison) -> String {
    let mut b = String::new();
    let s = &cmp.summary;
    let _ = write!(
        b,
        "<h1>kmbench compare</h1><p class=\"sub\">base {} ({}) → new {} ({}) · threshold {:.0}% · α {}</p>",
        esc(&cmp.base.run_id),
        esc(&cmp.base.started_at),
        esc(&cmp.new.run_id),
        esc(&cmp.new.started_at),
        cmp.threshold * 100.0,
        cmp.alpha
    );
    let _ = write!(
        b,
        "<h2>Verdict</h2><p><span class=\"badge {}\">{}</span> {} regressed, {} improved, {} unchanged, {} broken, {} fixed, {} n/a</p>",
        if cmp.has_regression() { "bad" } else { "ok" },
        if cmp.has_regression() { "regression" } else { "no regression" },
        s.regressed, s.improved, s.unchanged, s.broken, s.fixed, s.not_applicable
    );
    if !cmp.env_differences.is_empty() {
        b.push_str("<h2>Environment differences</h2><table><tr><th>field</th><th>base</th><th>new</th></tr>");
        for d in &cmp.env_differences {
            let v = serde_json::to_value(d).unwrap_or_default();
            let g = |k: &str| {
                v.get(k)
                    .map(|x| {
                        x.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| x.to_string())
                    })
                    .unwrap_or_default()
            };
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&g("field")),
                esc(&g("base")),
                esc(&g("new"))
            );
        }
        b.push_str("</table>");
    }
    let rows = change_rows(cmp, 60);
    b.push_str("<h2>Change per benchmark</h2>");
    match plot::render_changes(
        "Change of the median per benchmark, with its CI",
        &format!(
            "red: regressed, green: improved, grey: within noise; shaded: ±{:.0}% threshold; largest changes first",
            cmp.threshold * 100.0
        ),
        &rows,
        cmp.threshold,
    ) {
        Ok(svg) => {
            let _ = write!(b, "<figure id=\"chart-changes\">{svg}<figcaption>changes.svg</figcaption></figure>");
        }
        Err(e) => {
            let _ = write!(b, "<p>No change chart: {}</p>", esc(&e.to_string()));
        }
    }
    b.push_str("<h2>Table</h2><table><tr><th>benchmark</th><th class=n>base</th><th class=n>new</th><th class=n>change</th><th class=n>CI</th><th class=n>p</th><th>verdict</th></tr>");
    for r in &cmp.benchmarks {
        let f = |ns: Option<f64>, raw: f64| {
            ns.map(fmt_ns_axis)
                .unwrap_or_else(|| format!("{} {}", crate::format::fmt_num(raw), r.unit))
        };
        let _ = write!(
            b,
            "<tr><td>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td>{}</td></tr>",
            esc(&r.name),
            f(r.base_median_ns, r.base_median),
            f(r.new_median_ns, r.new_median),
            r.change.map(|c| format!("{:+.1}%", c * 100.0)).unwrap_or("–".into()),
            r.ci.map(|(a, c)| format!("[{:+.1}%, {:+.1}%]", a * 100.0, c * 100.0)).unwrap_or("–".into()),
            r.p_value.map(|p| format!("{p:.3}")).unwrap_or("–".into()),
            esc(r.verdict.label())
        );
    }
    b.push_str("</table>");
    page("kmbench compare", &b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pages_verdict_is_a_median_past_the_reach_not_one_point() {
        let pts: Vec<Pt> = [
            (1u64 << 16, 1.0),
            (1 << 20, 1.5),
            (1 << 22, 9.0),
            (1 << 24, 2.0),
        ]
        .iter()
        .map(|(x, y)| Pt::new(*x as f64, *y))
        .collect();
        // Past a 1 MiB reach: 1.5, 9.0, 2.0 → median 2.0 (the 9.0 outlier does not decide).
        let (m, what) = robust_ratio(&pts, Some(1 << 20)).unwrap();
        assert_eq!(m, 2.0);
        assert_eq!(what, "3 working sets ≥ 1 MiB");
        // No reach known, or fewer than two points past it: the 3 largest working sets.
        assert_eq!(
            robust_ratio(&pts, None).unwrap(),
            (2.0, "largest 3 working sets".to_string())
        );
        assert_eq!(robust_ratio(&pts, Some(1 << 24)).unwrap().0, 2.0);
        let two = &pts[..2];
        assert_eq!(robust_ratio(two, None).unwrap().0, 1.25);
        assert!(robust_ratio(&[], None).is_none());
    }
}
