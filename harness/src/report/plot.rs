//! Drawing: a [`Chart`] (panels of lines with optional min–p99 bands and vertical markers)
//! rendered to an SVG string with plotters' SVG backend. Text is emitted as `<text>`
//! elements, so no font libraries are needed, and the same string is written as
//! `<name>.svg` and inlined into `index.html`.
//!
//! Conventions every chart follows (the reader should not have to check each one):
//! * x is a size on a log2 axis: bytes (`4 KiB`, `2 MiB`) or page orders (`order 9`),
//!   never an order read as bytes; or a count (CPUs, target CPUs) on a linear axis with
//!   integer ticks;
//! * y is latency on a log axis (so 1 ns and 200 ns are both readable) in the unit the
//!   data has: ns when every plotted entry has ns, otherwise the records' unit;
//!   ratio charts use a linear y with a reference line at 1;
//! * several panels share one y range, so side-by-side panels compare by eye;
//! * the legend sits right of the plot area, never over the data.
use plotters::coord::ranged1d::{
    AsRangedCoord, DefaultFormatting, KeyPointHint, Ranged, ValueFormatter,
};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use crate::format::human_size;

/// One point: the median and the band drawn around it (min and p99; equal when unknown).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pt {
    pub x: f64,
    pub y: f64,
    pub lo: f64,
    pub hi: f64,
}

impl Pt {
    pub fn new(x: f64, y: f64) -> Pt {
        Pt { x, y, lo: y, hi: y }
    }
}

/// One series: a label (the legend's), its points sorted by x, and whether it is a
/// reference drawn dashed.
#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    pub label: String,
    pub pts: Vec<Pt>,
    pub dashed: bool,
}

/// A vertical marker (e.g. a TLB's reach) at x, with a short label.
#[derive(Clone, Debug, PartialEq)]
pub struct Marker {
    pub x: f64,
    pub label: String,
    /// Inferred from measurements rather than reported (CPUID): drawn dotted, in orange.
    pub inferred: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Panel {
    /// Shown above the panel when the chart has several.
    pub title: String,
    pub lines: Vec<Line>,
    pub markers: Vec<Marker>,
}

/// What the x values are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XKind {
    /// Bytes, labelled `4 KiB`, `2 MiB`.
    Bytes,
    /// Bytes of an order-n block (4 KiB << n), labelled `order n`.
    Order,
    /// A count (CPUs, target CPUs): linear axis, integer ticks, may start at 0.
    Count,
}

/// What the y values are.
#[derive(Clone, Debug, PartialEq)]
pub enum YKind {
    /// A latency in `unit` ("ns" gets `ns`/`µs`/`ms` labels): log axis.
    Latency { unit: String },
    /// A dimensionless ratio: linear axis with a reference line at 1.
    Ratio,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Chart {
    /// File stem: `<name>.svg`.
    pub name: String,
    pub title: String,
    /// One line under the title: what is compared, and how to read it.
    pub note: String,
    pub x_desc: String,
    pub x_kind: XKind,
    pub y_desc: String,
    pub y: YKind,
    pub panels: Vec<Panel>,
}

impl Chart {
    /// The chart's series labels in legend order (first appearance across panels).
    pub fn legend(&self) -> Vec<(String, bool)> {
        let mut out: Vec<(String, bool)> = Vec::new();
        for l in self.panels.iter().flat_map(|p| &p.lines) {
            if !out.iter().any(|(s, _)| *s == l.label) {
                out.push((l.label.clone(), l.dashed));
            }
        }
        out
    }

    fn bounds(&self) -> Option<(f64, f64, f64, f64)> {
        let (mut x0, mut x1, mut y0, mut y1) = (f64::INFINITY, 0.0f64, f64::INFINITY, 0.0f64);
        for p in self
            .panels
            .iter()
            .flat_map(|p| &p.lines)
            .flat_map(|l| &l.pts)
        {
            x0 = x0.min(p.x);
            x1 = x1.max(p.x);
            y0 = y0.min(p.lo.min(p.y));
            y1 = y1.max(p.hi.max(p.y));
        }
        let x_ok = x0 > 0.0 || (self.x_kind == XKind::Count && x0 >= 0.0);
        (x0.is_finite() && x_ok && y1 > 0.0).then_some((x0, x1, y0, y1))
    }
}

/// Matplotlib's tab10: readable on white.
pub const TAB10: [(u8, u8, u8); 10] = [
    (0x1f, 0x77, 0xb4),
    (0xd6, 0x27, 0x28),
    (0x2c, 0xa0, 0x2c),
    (0xff, 0x7f, 0x0e),
    (0x94, 0x67, 0xbd),
    (0x8c, 0x56, 0x4b),
    (0xe3, 0x77, 0xc2),
    (0x7f, 0x7f, 0x7f),
    (0xbc, 0xbd, 0x22),
    (0x17, 0xbe, 0xcf),
];

fn color(i: usize) -> RGBColor {
    let (r, g, b) = TAB10[i % TAB10.len()];
    RGBColor(r, g, b)
}

/// Powers of two in `[lo, hi]`, thinned to at most `max` (sizes read best as 4 KiB, 2 MiB…).
pub fn pow2_points(lo: f64, hi: f64, max: usize) -> Vec<f64> {
    let (a, b) = (
        lo.max(1.0).log2().ceil() as i32,
        hi.max(1.0).log2().floor() as i32,
    );
    if b < a {
        return vec![];
    }
    let count = (b - a + 1) as usize;
    let stride = count.div_ceil(max.max(1)).max(1);
    (a..=b).step_by(stride).map(|e| 2f64.powi(e)).collect()
}

/// Integers in `[lo, hi]` (from 0 up), thinned to at most `max` by a 1-2-5 stride.
pub fn int_points(lo: f64, hi: f64, max: usize) -> Vec<f64> {
    let (a, b) = (lo.max(0.0).ceil() as u64, hi.max(0.0).floor() as u64);
    if b < a {
        return vec![];
    }
    let span = b - a + 1;
    let stride = [1u64, 2, 5, 10, 20, 50, 100, 200, 500, 1000]
        .into_iter()
        .find(|s| span.div_ceil(*s) <= max.max(1) as u64)
        .unwrap_or(span);
    (a..=b)
        .filter(|v| v % stride == 0)
        .map(|v| v as f64)
        .collect()
}

/// 1-2-5 ticks per decade in `[lo, hi]` (only 1×10^k when that would be too many).
pub fn decade_points(lo: f64, hi: f64) -> Vec<f64> {
    let mut out = Vec::new();
    if !(lo > 0.0 && hi >= lo) {
        return out;
    }
    let (a, b) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
    let steps: &[f64] = if b - a > 4 { &[1.0] } else { &[1.0, 2.0, 5.0] };
    for e in a..=b {
        for s in steps {
            let v = s * 10f64.powi(e);
            if v >= lo && v <= hi {
                out.push(v);
            }
        }
    }
    out
}

/// `750 ps`, `1.2 ns`, `38 ns`, `1.5 µs`, `2 ms`: compact, for axis labels.
pub fn fmt_ns_axis(ns: f64) -> String {
    let (v, u) = if ns >= 1e6 {
        (ns / 1e6, "ms")
    } else if ns >= 1e3 {
        (ns / 1e3, "µs")
    } else {
        (ns, "ns")
    };
    let s = if v >= 10.0 || (v - v.round()).abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    };
    format!("{s} {u}")
}

fn fmt_count(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.0}M", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if v >= 10.0 || (v - v.round()).abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// The x label of a size.
pub fn fmt_x(kind: XKind, x: f64) -> String {
    match kind {
        XKind::Bytes => human_size(x.round() as u64),
        XKind::Order => format!("order {}", (x / 4096.0).log2().round() as i64),
        XKind::Count => format!("{}", x.round() as i64),
    }
}

type BoxErr = Box<dyn std::error::Error>;

const PANEL_W: u32 = 560;
const LEGEND_W: u32 = 290;
const HEIGHT: u32 = 470;

/// Render a chart to an SVG document.
pub fn render(chart: &Chart) -> Result<String, BoxErr> {
    let (x0, x1, y0, y1) = chart.bounds().ok_or("nothing to plot")?;
    let legend = chart.legend();
    let n = chart.panels.len().max(1) as u32;
    let legend_h = 90 + 22 * legend.len() as u32;
    let (w, h) = (PANEL_W * n + LEGEND_W, HEIGHT.max(legend_h));
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE)?;
        let (head, body) = root.split_vertically(62);
        head.draw(&Text::new(
            chart.title.clone(),
            (14, 8),
            ("sans-serif", 21).into_font().style(FontStyle::Bold),
        ))?;
        head.draw(&Text::new(
            chart.note.clone(),
            (14, 36),
            ("sans-serif", 14).into_font().color(&RGBColor(80, 80, 80)),
        ))?;
        let (plots, legend_area) = body.split_horizontally(PANEL_W * n);
        let bands = chart
            .panels
            .iter()
            .flat_map(|p| &p.lines)
            .flat_map(|l| &l.pts)
            .any(|p| p.lo < p.y || p.hi > p.y);
        draw_legend(&legend_area, &legend, bands)?;
        let panels = plots.split_evenly((1, n as usize));
        for (i, (area, panel)) in panels.iter().zip(&chart.panels).enumerate() {
            let mut b = ChartBuilder::on(area);
            b.margin(10)
                .margin_right(18)
                .x_label_area_size(46)
                .y_label_area_size(if i == 0 { 72 } else { 52 });
            if n > 1 || !panel.title.is_empty() {
                b.caption(panel.title.clone(), ("sans-serif", 16));
            }
            // Pad so single points and flat lines have room; one y range for every panel.
            let y = (y0, y1);
            if chart.x_kind == XKind::Count {
                let pad = ((x1 - x0) * 0.08).max(0.5);
                let (a, z) = (x0 - pad, x1 + pad);
                let ticks = int_points(a, z, 10);
                let xr = CountAxis {
                    lo: a,
                    hi: z,
                    ticks,
                };
                draw_panel(&mut b, xr, chart, panel, &legend, y)?;
            } else {
                let (a, z) = (x0 / 1.6, x1 * 1.6);
                let xr = (a..z).log_scale().with_key_points(pow2_points(a, z, 8));
                draw_panel(&mut b, xr, chart, panel, &legend, y)?;
            }
        }
        root.present()?;
    }
    Ok(buf)
}

/// A linear axis with integer ticks (plotters' linear f64 axis picks fractional ones, and
/// its key-point wrapper has no label formatter for it).
struct CountAxis {
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
}

impl Ranged for CountAxis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        RangedCoordf64::from(self.lo..self.hi).map(v, limit)
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            vec![]
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.lo..self.hi
    }
}

/// One panel on x axis `xr`: the y axis of `chart.y`, then [`body_of`].
fn draw_panel<X>(
    b: &mut ChartBuilder<SVGBackend>,
    xr: X,
    chart: &Chart,
    panel: &Panel,
    legend: &[(String, bool)],
    (y0, y1): (f64, f64),
) -> Result<(), BoxErr>
where
    X: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
{
    match &chart.y {
        YKind::Latency { unit } => {
            let (lo, hi) = (y0 / 1.5, y1 * 1.5);
            let yr = (lo..hi).log_scale().with_key_points(decade_points(lo, hi));
            let mut c = b.build_cartesian_2d(xr, yr)?;
            let ns = unit == "ns";
            let unit = unit.clone();
            let yf = move |y: &f64| {
                if ns {
                    fmt_ns_axis(*y)
                } else {
                    format!("{} {unit}", fmt_count(*y))
                }
            };
            body_of(&mut c, chart, panel, legend, &yf, y0, y1, None)
        }
        YKind::Ratio => {
            let lo = y0.min(1.0);
            let hi = y1.max(1.0);
            let pad = ((hi - lo) * 0.1).max(0.05);
            let yr: RangedCoordf64 = ((lo - pad).max(0.0)..hi + pad).into();
            let mut c = b.build_cartesian_2d(xr, yr)?;
            let yf = |y: &f64| format!("{y:.2}");
            body_of(&mut c, chart, panel, legend, &yf, lo, hi, Some(1.0))
        }
    }
}

fn draw_legend(
    area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    legend: &[(String, bool)],
    bands: bool,
) -> Result<(), BoxErr> {
    let font = ("sans-serif", 13).into_font();
    let mut y = 26;
    if bands {
        area.draw(&Text::new(
            "median, band min–p99",
            (8, 6),
            ("sans-serif", 12).into_font().color(&RGBColor(90, 90, 90)),
        ))?;
    }
    for (i, (label, dashed)) in legend.iter().enumerate() {
        let c = color(i);
        if *dashed {
            for k in 0..3 {
                area.draw(&PathElement::new(
                    vec![(8 + k * 9, y + 7), (14 + k * 9, y + 7)],
                    c.stroke_width(2),
                ))?;
            }
        } else {
            area.draw(&PathElement::new(
                vec![(8, y + 7), (32, y + 7)],
                c.stroke_width(2),
            ))?;
            area.draw(&Circle::new((20, y + 7), 3, c.filled()))?;
        }
        area.draw(&Text::new(label.clone(), (40, y), font.clone()))?;
        y += 22;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn body_of<X, Y>(
    c: &mut ChartContext<SVGBackend, Cartesian2d<X, Y>>,
    chart: &Chart,
    panel: &Panel,
    legend: &[(String, bool)],
    y_fmt: &dyn Fn(&f64) -> String,
    y0: f64,
    y1: f64,
    hline: Option<f64>,
) -> Result<(), BoxErr>
where
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let kind = chart.x_kind;
    let x_fmt = move |x: &f64| fmt_x(kind, *x);
    c.configure_mesh()
        .x_desc(chart.x_desc.as_str())
        .y_desc(chart.y_desc.as_str())
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .label_style(("sans-serif", 12))
        .axis_desc_style(("sans-serif", 14))
        .light_line_style(if hline.is_some() {
            TRANSPARENT
        } else {
            RGBColor(238, 238, 238).to_rgba()
        })
        .bold_line_style(RGBColor(215, 215, 215))
        .draw()?;
    let (xa, xb) = {
        let r = c.x_range();
        (r.start, r.end)
    };
    if let Some(h) = hline {
        c.draw_series(DashedLineSeries::new(
            vec![(xa, h), (xb, h)],
            6,
            4,
            BLACK.mix(0.6).stroke_width(1),
        ))?;
    }
    // Markers: dashed verticals, labels staggered so neighbours don't overlap.
    for (k, m) in panel.markers.iter().enumerate() {
        if m.x <= xa || m.x >= xb {
            continue;
        }
        let (grey, dash, gap) = if m.inferred {
            (RGBColor(200, 100, 0), 1, 3)
        } else {
            (RGBColor(110, 110, 110), 4, 3)
        };
        c.draw_series(DashedLineSeries::new(
            vec![(m.x, y0), (m.x, y1)],
            dash,
            gap,
            grey.stroke_width(1),
        ))?;
        let (px, py) = c.backend_coord(&(m.x, y1));
        let drawing = c.plotting_area().strip_coord_spec();
        let (ox, oy) = c.plotting_area().get_base_pixel();
        drawing.draw(&Text::new(
            m.label.clone(),
            (px - ox + 3, py - oy + 2 + 14 * (k as i32 % 3)),
            ("sans-serif", 11).into_font().color(&grey),
        ))?;
    }
    for l in &panel.lines {
        let i = legend.iter().position(|(s, _)| *s == l.label).unwrap_or(0);
        let col = color(i);
        if l.pts.iter().any(|p| p.lo < p.y || p.hi > p.y) {
            let mut poly: Vec<(f64, f64)> = l.pts.iter().map(|p| (p.x, p.hi)).collect();
            poly.extend(l.pts.iter().rev().map(|p| (p.x, p.lo)));
            c.draw_series(std::iter::once(Polygon::new(poly, col.mix(0.13).filled())))?;
        }
        let pts = l.pts.iter().map(|p| (p.x, p.y));
        if l.dashed {
            c.draw_series(DashedLineSeries::new(pts, 7, 4, col.stroke_width(2)))?;
        } else {
            c.draw_series(LineSeries::new(pts, col.stroke_width(2)))?;
            c.draw_series(
                l.pts
                    .iter()
                    .map(|p| Circle::new((p.x, p.y), 3, col.filled())),
            )?;
        }
    }
    Ok(())
}

/// One row of a change chart: a benchmark's relative change with its CI.
#[derive(Clone, Debug, PartialEq)]
pub struct ChangeRow {
    pub name: String,
    /// `new / base - 1`.
    pub change: f64,
    pub ci: Option<(f64, f64)>,
    /// "regressed", "improved" or anything else (drawn grey).
    pub verdict: String,
}

/// Change with CI per benchmark (compare / ab): a dot at the change, a whisker for the CI,
/// the threshold band shaded; red = regressed, green = improved.
pub fn render_changes(
    title: &str,
    note: &str,
    rows: &[ChangeRow],
    threshold: f64,
) -> Result<String, BoxErr> {
    if rows.is_empty() {
        return Err("nothing to plot".into());
    }
    let lim = rows
        .iter()
        .flat_map(|r| {
            let (a, b) = r.ci.unwrap_or((r.change, r.change));
            [r.change.abs(), a.abs(), b.abs()]
        })
        .filter(|v| v.is_finite())
        .fold(threshold * 2.0, f64::max)
        .min(10.0)
        * 1.15;
    let name_w = rows
        .iter()
        .map(|r| r.name.chars().count())
        .max()
        .unwrap_or(10) as u32
        * 7
        + 20;
    let (w, h) = ((name_w + 640).max(760), 110 + 20 * rows.len() as u32);
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE)?;
        let (head, body) = root.split_vertically(56);
        head.draw(&Text::new(
            title.to_string(),
            (14, 8),
            ("sans-serif", 20).into_font().style(FontStyle::Bold),
        ))?;
        head.draw(&Text::new(
            note.to_string(),
            (14, 34),
            ("sans-serif", 13).into_font().color(&RGBColor(80, 80, 80)),
        ))?;
        let n = rows.len() as f64;
        let mut c = ChartBuilder::on(&body)
            .margin(10)
            .margin_right(24)
            .x_label_area_size(40)
            .y_label_area_size(name_w)
            .build_cartesian_2d(-lim..lim, -0.5..n - 0.5)?;
        c.configure_mesh()
            .disable_y_mesh()
            .y_labels(0)
            .x_desc("change of the median (new / base − 1), whisker = CI")
            .x_label_formatter(&|x: &f64| format!("{:+.0}%", x * 100.0))
            .label_style(("sans-serif", 12))
            .axis_desc_style(("sans-serif", 13))
            .light_line_style(TRANSPARENT)
            .draw()?;
        c.draw_series(std::iter::once(Rectangle::new(
            [(-threshold, -0.5), (threshold, n - 0.5)],
            RGBColor(120, 120, 120).mix(0.12).filled(),
        )))?;
        c.draw_series(std::iter::once(PathElement::new(
            vec![(0.0, -0.5), (0.0, n - 0.5)],
            BLACK.mix(0.5).stroke_width(1),
        )))?;
        let (ox, oy) = c.plotting_area().get_base_pixel();
        let (bx, by) = body.get_base_pixel();
        for (i, r) in rows.iter().enumerate() {
            let y = n - 1.0 - i as f64;
            let col = match r.verdict.as_str() {
                "regressed" | "broken" => RGBColor(0xd6, 0x27, 0x28),
                "improved" | "fixed" => RGBColor(0x2c, 0xa0, 0x2c),
                _ => RGBColor(110, 110, 110),
            };
            let clamp = |v: f64| v.clamp(-lim, lim);
            if let Some((a, b)) = r.ci {
                c.draw_series(std::iter::once(PathElement::new(
                    vec![(clamp(a), y), (clamp(b), y)],
                    col.stroke_width(2),
                )))?;
            }
            c.draw_series(std::iter::once(Circle::new(
                (clamp(r.change), y),
                4,
                col.filled(),
            )))?;
            let (_, py) = c.backend_coord(&(0.0, y));
            body.draw(&Text::new(
                r.name.clone(),
                (8, py - by - 7),
                ("sans-serif", 12).into_font().color(&col),
            ))?;
            let _ = (ox, oy, bx);
        }
        root.present()?;
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks() {
        assert_eq!(pow2_points(4096.0, 16384.0, 10), [4096.0, 8192.0, 16384.0]);
        assert_eq!(decade_points(0.9, 30.0), [1.0, 2.0, 5.0, 10.0, 20.0]);
        assert_eq!(
            decade_points(1.0, 1e6),
            [1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6]
        );
        assert_eq!(fmt_ns_axis(1.2), "1.2 ns");
        assert_eq!(fmt_ns_axis(200.0), "200 ns");
        assert_eq!(fmt_ns_axis(1500.0), "1.5 µs");
        assert_eq!(fmt_x(XKind::Order, 4096.0 * 512.0), "order 9");
        assert_eq!(fmt_x(XKind::Bytes, 2097152.0), "2 MiB");
        assert_eq!(fmt_x(XKind::Count, 4.0), "4");
        assert_eq!(int_points(0.5, 4.5, 10), [1.0, 2.0, 3.0, 4.0]);
        assert_eq!(int_points(-0.5, 0.5, 10), [0.0]);
        assert_eq!(
            int_points(0.0, 64.0, 10),
            [0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0]
        );
    }
}
