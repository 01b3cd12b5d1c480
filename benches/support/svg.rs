//! Two small SVG charts for the benchmarks' results under `docs/bench/`,
//! written by hand (no plotting dependency): one strip of dots per series
//! (a distribution), and grouped bars. Each bench uses one of them.
#![allow(dead_code)]

use std::fmt::Write;

const WIDTH: f64 = 760.0;
const LEFT: f64 = 230.0;
const RIGHT: f64 = 30.0;
const ROW: f64 = 34.0;
const TOP: f64 = 40.0;
const COLORS: [&str; 6] = [
    "#4c78a8", "#f58518", "#54a24b", "#b279a2", "#e45756", "#72b7b2",
];

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A "nice" upper bound for an axis holding `max`, and its tick step.
fn axis(max: f64) -> (f64, f64) {
    let max = max.max(1e-9);
    let magnitude = 10f64.powf(max.log10().floor());
    // The finest round step that needs at most six ticks.
    let step = [0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| max / s <= 6.0)
        .unwrap_or(10.0 * magnitude);
    ((max / step).ceil() * step, step)
}

fn frame(title: &str, rows: usize, max: f64, unit: &str, right: f64) -> (String, f64, f64) {
    let height = TOP + ROW * rows as f64 + 40.0;
    let (top, step) = axis(max);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(
        svg,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{LEFT}" y="20" font-size="14">{}</text>"#,
        escape(title)
    );
    let plot = WIDTH - LEFT - right;
    let bottom = TOP + ROW * rows as f64;
    let mut tick = 0.0;
    while tick <= top + step / 2.0 {
        let x = LEFT + plot * tick / top;
        let _ = write!(
            svg,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{bottom}" stroke="#ddd"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            bottom + 16.0,
            tick_label(tick)
        );
        tick += step;
    }
    let _ = write!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        LEFT + plot / 2.0,
        bottom + 34.0,
        escape(unit)
    );
    (svg, top, plot)
}

fn tick_label(v: f64) -> String {
    if v.fract().abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

/// One strip per series: a dot per value, and a bar at the median.
pub fn strips(title: &str, unit: &str, series: &[(String, Vec<f64>)]) -> String {
    let max = series
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .fold(0.0, f64::max);
    let (mut svg, top, plot) = frame(title, series.len(), max, unit, RIGHT);
    for (i, (label, values)) in series.iter().enumerate() {
        let y = TOP + ROW * i as f64 + ROW / 2.0;
        let color = COLORS[i % COLORS.len()];
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            LEFT - 8.0,
            y + 4.0,
            escape(label)
        );
        for v in values {
            let _ = write!(
                svg,
                r#"<circle cx="{:.1}" cy="{y:.1}" r="2.5" fill="{color}" fill-opacity="0.5"/>"#,
                LEFT + plot * v / top
            );
        }
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        if let Some(median) = sorted.get(sorted.len() / 2) {
            let x = LEFT + plot * median / top;
            let _ = write!(
                svg,
                r#"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="black" stroke-width="2"/>"#,
                y - 10.0,
                y + 10.0
            );
        }
    }
    svg.push_str("</svg>\n");
    svg
}

/// Horizontal bars: one group per category, one bar per series in it.
pub fn bars(title: &str, unit: &str, series: &[&str], groups: &[(String, Vec<f64>)]) -> String {
    let rows: usize = groups.len() * series.len();
    let max = groups
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .fold(0.0, f64::max);
    // Room on the right for the longest bar's label.
    let (mut svg, top, plot) = frame(title, rows, max, unit, RIGHT + 130.0);
    for (g, (label, values)) in groups.iter().enumerate() {
        let y0 = TOP + ROW * (g * series.len()) as f64;
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            LEFT - 8.0,
            y0 + ROW * series.len() as f64 / 2.0 + 4.0,
            escape(label)
        );
        for (s, v) in values.iter().enumerate() {
            let y = y0 + ROW * s as f64 + 6.0;
            let w = plot * v / top;
            let color = COLORS[s % COLORS.len()];
            let _ = write!(
                svg,
                r#"<rect x="{LEFT}" y="{y:.1}" width="{w:.1}" height="{:.1}" fill="{color}"/><text x="{:.1}" y="{:.1}">{} {v:.1}</text>"#,
                ROW - 12.0,
                LEFT + w + 4.0,
                y + ROW / 2.0 - 2.0,
                escape(series.get(s).copied().unwrap_or(""))
            );
        }
    }
    svg.push_str("</svg>\n");
    svg
}
