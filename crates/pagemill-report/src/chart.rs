//! Charts as inline SVG, drawn here so they show without JavaScript and with nothing fetched.
//! Colours come from CSS classes (`s0`…`s7`), so the page's light and dark themes apply; every
//! point carries a `<title>` (the browser's own tooltip); every label is escaped by maud.

use maud::{Markup, html};

/// One line (or set of bars) of a chart.
#[derive(Debug, Clone, Default)]
pub struct Series {
    /// Its name, in the legend.
    pub name: String,
    /// (x, y) points, in x order.
    pub points: Vec<(f64, f64)>,
}

/// How the x axis reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XAxis {
    /// Numbers.
    Linear,
    /// Unix seconds, labelled as UTC times or dates.
    Time,
    /// Named places 0, 1, 2, …: x is an index into these labels.
    Labels(Vec<String>),
}

/// A line chart.
#[derive(Debug, Clone)]
pub struct Line<'a> {
    /// Heading.
    pub title: &'a str,
    /// X axis label.
    pub x_label: &'a str,
    /// Y axis label.
    pub y_label: &'a str,
    /// X axis kind.
    pub x: XAxis,
    /// Draw steps (for CDFs) instead of straight segments.
    pub step: bool,
    /// Formats y values.
    pub y_fmt: fn(f64) -> String,
    /// The lines.
    pub series: Vec<Series>,
}

const W: f64 = 720.0;
const H: f64 = 280.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 36.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 44.0;

/// Round tick positions covering `[lo, hi]`, about `n` of them.
fn ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    if hi <= lo || !lo.is_finite() || !hi.is_finite() {
        return vec![lo];
    }
    let raw = (hi - lo) / n as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let mut out = Vec::new();
    let mut t = (lo / step).ceil() * step;
    while t <= hi + step * 1e-9 && out.len() < 50 {
        out.push(if t.abs() < step * 1e-9 { 0.0 } else { t });
        t += step;
    }
    out
}

/// Round time ticks (Unix seconds) covering `[lo, hi]`.
fn time_ticks(lo: f64, hi: f64) -> Vec<f64> {
    const STEPS: [f64; 14] = [
        1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0, 10_800.0, 21_600.0, 43_200.0,
        86_400.0, 604_800.0,
    ];
    let span = hi - lo;
    let step = STEPS
        .into_iter()
        .find(|s| span / s <= 6.0)
        .unwrap_or(2_592_000.0);
    let mut out = Vec::new();
    let mut t = (lo / step).ceil() * step;
    while t <= hi && out.len() < 50 {
        out.push(t);
        t += step;
    }
    if out.is_empty() {
        out.push(lo);
    }
    out
}

fn fmt_x(x: &XAxis, v: f64, span: f64) -> String {
    match x {
        XAxis::Linear => crate::fmt::num(v),
        XAxis::Time => crate::time::tick(v as i64, span as i64),
        XAxis::Labels(l) => l
            .get(v.round().max(0.0) as usize)
            .cloned()
            .unwrap_or_default(),
    }
}

/// A tick's label on a numeric axis, with as many decimals as the step between ticks needs:
/// ticks 349.2, 349.6, 350.0 read so, not "349, 350, 350" (three significant digits).
fn tick_label(v: f64, step: f64) -> String {
    if !(step.is_finite() && step > 0.0) || step >= 1.0 {
        return crate::fmt::num(v);
    }
    let decimals = (-step.log10()).ceil().clamp(0.0, 6.0) as usize;
    // A step like 0.25 needs one more decimal than its magnitude says.
    let decimals = if ((step * 10f64.powi(decimals as i32)).fract()).abs() > 1e-9 {
        (decimals + 1).min(6)
    } else {
        decimals
    };
    format!("{v:.decimals$}")
}

/// Ticks at whole numbers from `lo` to `hi`, at most about eight of them.
fn whole_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let (lo, hi) = (lo.ceil() as i64, hi.floor() as i64);
    let step = ((hi - lo) / 8 + 1).max(1);
    (lo..=hi).step_by(step as usize).map(|v| v as f64).collect()
}

/// The top of an axis: its last tick, or the highest value when above it (never 0).
fn top(ticks: &[f64], max: f64) -> f64 {
    ticks
        .last()
        .copied()
        .unwrap_or(1.0)
        .max(max)
        .max(f64::MIN_POSITIVE)
}

/// Draws a line chart; a chart with no points says so.
pub fn line(c: &Line<'_>) -> Markup {
    let pts = c.series.iter().flat_map(|s| s.points.iter());
    let (mut x0, mut x1, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, 0.0f64);
    let mut any = false;
    for &(x, y) in pts {
        if x.is_finite() && y.is_finite() {
            any = true;
            x0 = x0.min(x);
            x1 = x1.max(x);
            y1 = y1.max(y);
        }
    }
    if !any {
        return empty(c.title);
    }
    if x1 <= x0 {
        // One x value: give it room, without inventing negative x for counts and times.
        if x0 >= 1.0 {
            x0 -= 1.0;
        }
        x1 += 1.0;
    }
    let mut yt = ticks(0.0, if y1 > 0.0 { y1 } else { 1.0 }, 5);
    // The top gridline sits at or above the highest point.
    if let (Some(&last), true) = (yt.last(), yt.len() >= 2)
        && last < y1
    {
        yt.push(last + (yt[1] - yt[0]));
    }
    let ytop = top(&yt, y1);
    let whole = c
        .series
        .iter()
        .flat_map(|s| s.points.iter())
        .all(|(x, _)| x.fract() == 0.0);
    let xt = match &c.x {
        XAxis::Linear if whole && x1 - x0 <= 8.0 => whole_ticks(x0, x1),
        XAxis::Linear => ticks(x0, x1, 6),
        XAxis::Time => time_ticks(x0, x1),
        XAxis::Labels(l) => whole_ticks(x0, x1)
            .into_iter()
            .filter(|t| *t >= 0.0 && (*t as usize) < l.len())
            .collect(),
    };
    let x_step = if xt.len() >= 2 { xt[1] - xt[0] } else { 1.0 };
    let sx = |x: f64| LEFT + (x - x0) / (x1 - x0) * (W - LEFT - RIGHT);
    let sy = |y: f64| TOP + (1.0 - y / ytop) * (H - TOP - BOTTOM);
    let path = |s: &Series| {
        let mut d = String::new();
        let mut prev: Option<(f64, f64)> = None;
        for &(x, y) in s
            .points
            .iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
        {
            let (px, py) = (sx(x), sy(y));
            match prev {
                None => d.push_str(&format!("M{px:.1},{py:.1}")),
                Some(_) if c.step => d.push_str(&format!("H{px:.1}V{py:.1}")),
                Some(_) => d.push_str(&format!("L{px:.1},{py:.1}")),
            }
            prev = Some((px, py));
        }
        d
    };
    let show_points = !c.step && c.series.iter().map(|s| s.points.len()).sum::<usize>() <= 400;
    html! {
        figure.chart data-kind="line" {
            figcaption { (c.title) }
            svg viewBox={"0 0 " (W) " " (H)} role="img" aria-label=(c.title) {
                g.grid {
                    @for t in &yt {
                        line x1=(LEFT) x2=(W - RIGHT) y1=(format!("{:.1}", sy(*t))) y2=(format!("{:.1}", sy(*t))) {}
                        text.ylab x=(LEFT - 6.0) y=(format!("{:.1}", sy(*t) + 4.0)) { ((c.y_fmt)(*t)) }
                    }
                    @for t in &xt {
                        text.xlab x=(format!("{:.1}", sx(*t))) y=(H - BOTTOM + 16.0) {
                            @if c.x == XAxis::Linear { (tick_label(*t, x_step)) } @else { (fmt_x(&c.x, *t, x1 - x0)) }
                        }
                    }
                    line.axis x1=(LEFT) x2=(W - RIGHT) y1=(H - BOTTOM) y2=(H - BOTTOM) {}
                }
                text.axislab x=(LEFT + (W - LEFT - RIGHT) / 2.0) y=(H - 6.0) { (c.x_label) }
                text.axislab transform={"translate(14," (TOP + (H - TOP - BOTTOM) / 2.0) ") rotate(-90)"} { (c.y_label) }
                @for (i, s) in c.series.iter().enumerate() {
                    g class=(format!("series s{}", i % 8)) data-series=(i) {
                        path d=(path(s)) {}
                        @if show_points {
                            @for &(x, y) in s.points.iter().filter(|(x, y)| x.is_finite() && y.is_finite()) {
                                circle cx=(format!("{:.1}", sx(x))) cy=(format!("{:.1}", sy(y))) r="3" {
                                    title { (s.name) ": " (fmt_x(&c.x, x, x1 - x0)) " → " ((c.y_fmt)(y)) }
                                }
                            }
                        } @else {
                            title { (s.name) }
                        }
                    }
                }
            }
            (legend(c.series.iter().map(|s| s.name.as_str())))
        }
    }
}

fn legend<'a>(names: impl Iterator<Item = &'a str>) -> Markup {
    html! {
        div.legend {
            @for (i, n) in names.enumerate() {
                button type="button" class=(format!("key s{}", i % 8)) data-series=(i) aria-pressed="true" {
                    span.swatch {} (n)
                }
            }
        }
    }
}

/// `s` cut to `n` characters with an ellipsis.
fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        s.chars().take(n - 1).chain(std::iter::once('…')).collect()
    }
}

fn empty(title: &str) -> Markup {
    html! {
        figure.chart.empty data-kind="empty" {
            figcaption { (title) }
            p.muted { "No data to draw." }
        }
    }
}

/// Horizontal bars, one per label; `None` values are shown as unknown.
pub fn bars(title: &str, fmt: fn(f64) -> String, rows: &[(String, Option<f64>)]) -> Markup {
    let max = rows
        .iter()
        .filter_map(|r| r.1)
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    if rows.is_empty() {
        return empty(title);
    }
    let row_h = 26.0;
    let label_w = 300.0;
    let h = rows.len() as f64 * row_h + 8.0;
    let bar_w = |v: f64| {
        if max > 0.0 {
            (v / max * (W - label_w - 110.0)).max(1.0)
        } else {
            1.0
        }
    };
    html! {
        figure.chart data-kind="bars" {
            figcaption { (title) }
            svg viewBox={"0 0 " (W) " " (h)} role="img" aria-label=(title) {
                @for (i, (label, v)) in rows.iter().enumerate() {
                    @let y = 4.0 + i as f64 * row_h;
                    g class=(format!("series s{}", i % 8)) data-series=(i) {
                        text.barlab x=(label_w - 8.0) y=(y + 17.0) { (short(label, 44)) title { (label) } }
                        @if let Some(v) = v.filter(|v| v.is_finite()) {
                            rect x=(label_w) y=(y + 3.0) width=(format!("{:.1}", bar_w(v))) height=(row_h - 8.0) rx="2" {
                                title { (label) ": " (fmt(v)) }
                            }
                            text.barval x=(format!("{:.1}", label_w + bar_w(v) + 6.0)) y=(y + 17.0) { (fmt(v)) }
                        } @else {
                            text.barval x=(label_w + 4.0) y=(y + 17.0) { "unknown" }
                        }
                    }
                }
            }
        }
    }
}

/// One point of a scatter chart.
#[derive(Debug, Clone)]
pub struct Point {
    /// Its name (beside it, and in its tooltip).
    pub label: String,
    /// X.
    pub x: f64,
    /// Y.
    pub y: f64,
    /// Drawn filled and named in bold (e.g. on a Pareto front).
    pub marked: bool,
}

/// A scatter chart of labelled points, both axes from 0 (y up to 1 when every y is a share).
pub fn scatter(
    title: &str,
    x_label: &str,
    y_label: &str,
    x_fmt: fn(f64) -> String,
    points: &[Point],
) -> Markup {
    let shown: Vec<&Point> = points
        .iter()
        .filter(|p| p.x.is_finite() && p.y.is_finite())
        .collect();
    if shown.is_empty() {
        return empty(title);
    }
    let x1 = shown.iter().map(|p| p.x).fold(0.0f64, f64::max);
    let y1 = shown.iter().map(|p| p.y).fold(0.0f64, f64::max);
    let xt = ticks(0.0, if x1 > 0.0 { x1 * 1.1 } else { 1.0 }, 5);
    let yt = ticks(0.0, if y1 <= 1.0 { 1.0 } else { y1 }, 5);
    let (xtop, ytop) = (top(&xt, x1), top(&yt, y1));
    let sx = |x: f64| LEFT + x / xtop * (W - LEFT - RIGHT - 200.0);
    let sy = |y: f64| TOP + (1.0 - y / ytop) * (H - TOP - BOTTOM);
    html! {
        figure.chart data-kind="scatter" {
            figcaption { (title) }
            svg viewBox={"0 0 " (W) " " (H)} role="img" aria-label=(title) {
                g.grid {
                    @for t in &yt {
                        line x1=(LEFT) x2=(W - RIGHT) y1=(format!("{:.1}", sy(*t))) y2=(format!("{:.1}", sy(*t))) {}
                        text.ylab x=(LEFT - 6.0) y=(format!("{:.1}", sy(*t) + 4.0)) { (crate::fmt::num(*t)) }
                    }
                    @for t in &xt {
                        text.xlab x=(format!("{:.1}", sx(*t))) y=(H - BOTTOM + 16.0) { (x_fmt(*t)) }
                    }
                    line.axis x1=(LEFT) x2=(W - RIGHT) y1=(H - BOTTOM) y2=(H - BOTTOM) {}
                }
                text.axislab x=(LEFT + (W - LEFT - RIGHT) / 2.0) y=(H - 6.0) { (x_label) }
                text.axislab transform={"translate(14," (TOP + (H - TOP - BOTTOM) / 2.0) ") rotate(-90)"} { (y_label) }
                @for (i, p) in shown.iter().enumerate() {
                    g class=(format!("series s{}{}", i % 8, if p.marked { " marked" } else { "" })) data-series=(i) {
                        circle.pt cx=(format!("{:.1}", sx(p.x))) cy=(format!("{:.1}", sy(p.y))) r=(if p.marked { "6" } else { "4" }) {
                            title { (p.label) ": " (x_fmt(p.x)) " → " (crate::fmt::num(p.y)) }
                        }
                        // Labels alternate above and below their point, so close points stay legible.
                        text.ptlab x=(format!("{:.1}", sx(p.x) - 6.0)) y=(format!("{:.1}", sy(p.y) + if i % 2 == 0 { -10.0 } else { 18.0 })) { (short(&p.label, 40)) }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_labels_have_the_precision_of_their_step() {
        // An axis from 349 to 351 ms: ticks 0.5 apart read as such.
        let labels: Vec<String> = ticks(349.0, 351.0, 4)
            .iter()
            .map(|t| tick_label(*t, 0.5))
            .collect();
        assert_eq!(labels, ["349.0", "349.5", "350.0", "350.5", "351.0"]);
        assert_eq!(tick_label(0.25, 0.25), "0.25");
        assert_eq!(tick_label(1200.0, 200.0), "1,200");
        // Every label of a fine axis differs from its neighbours.
        let fine: Vec<String> = ticks(349.2, 350.4, 6)
            .iter()
            .map(|t| tick_label(*t, 0.2))
            .collect();
        assert!(fine.windows(2).all(|w| w[0] != w[1]), "{fine:?}");
    }

    #[test]
    fn a_scatter_draws_every_finite_point_with_its_label() {
        let pts = [
            Point {
                label: "a <b>".into(),
                x: 0.001,
                y: 0.5,
                marked: true,
            },
            Point {
                label: "c".into(),
                x: 0.002,
                y: 0.4,
                marked: false,
            },
            Point {
                label: "unknown cost".into(),
                x: f64::INFINITY,
                y: 0.9,
                marked: false,
            },
        ];
        let out = scatter("q", "$", "F1", crate::fmt::num, &pts).into_string();
        assert_eq!(out.matches("<circle").count(), 2);
        assert_eq!(out.matches("marked").count(), 1);
        assert!(out.contains("a &lt;b&gt;"));
        assert!(
            scatter("q", "$", "F1", crate::fmt::num, &pts[2..])
                .into_string()
                .contains("No data")
        );
    }

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(ticks(0.0, 100.0, 5), [0.0, 20.0, 40.0, 60.0, 80.0, 100.0]);
        let small = ticks(0.0, 0.9, 5);
        assert_eq!(small.len(), 5);
        assert!((small[4] - 0.8).abs() < 1e-12);
        assert_eq!(ticks(3.0, 3.0, 5), [3.0]);
        assert_eq!(
            time_ticks(0.0, 3600.0),
            [0.0, 600.0, 1200.0, 1800.0, 2400.0, 3000.0, 3600.0]
        );
        assert_eq!(
            whole_ticks(1.0, 8.0),
            [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
        );
        assert_eq!(
            whole_ticks(0.0, 20.0),
            [0.0, 3.0, 6.0, 9.0, 12.0, 15.0, 18.0]
        );
        assert_eq!(whole_ticks(-0.5, 0.5), [0.0]);
    }

    #[test]
    fn charts_escape_names_and_say_when_empty() {
        let c = Line {
            title: "t<i>",
            x_label: "x",
            y_label: "y",
            x: XAxis::Linear,
            step: false,
            y_fmt: crate::fmt::num,
            series: vec![Series {
                name: "<script>alert(1)</script>".into(),
                points: vec![(1.0, 2.0), (2.0, f64::NAN), (3.0, 4.0)],
            }],
        };
        let out = line(&c).into_string();
        assert!(!out.contains("<script>"), "{out}");
        assert!(out.contains("&lt;script&gt;"));
        assert!(out.contains("t&lt;i&gt;"));
        assert_eq!(out.matches("<circle").count(), 2);
        let none = line(&Line {
            series: vec![],
            ..c
        })
        .into_string();
        assert!(none.contains("No data to draw."));
    }
}
