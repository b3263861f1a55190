//! Server-rendered SVG line charts: no script, no library, readable by a screen reader
//! through their title and a table of the same figures beside them.

use std::fmt::Write;

/// One line of a chart: its CSS class and its points, one per day.
pub struct Series<'a> {
    pub class: &'static str,
    pub name: &'a str,
    pub values: Vec<f64>,
}

const WIDTH: f64 = 600.0;
const HEIGHT: f64 = 180.0;
const PAD: f64 = 32.0;

/// An SVG of `series` over `days` (the x-axis labels, first and last shown), with
/// `title` as its accessible name. Only numbers and the given labels go into it, escaped.
pub fn line_chart(title: &str, days: &[String], series: &[Series<'_>], as_percent: bool) -> String {
    let max = series
        .iter()
        .flat_map(|series| series.values.iter().copied())
        .fold(0.0_f64, f64::max)
        .max(1.0);
    let span = (days.len().max(2) - 1) as f64;
    let x = |index: usize| PAD + index as f64 * (WIDTH - 2.0 * PAD) / span;
    let y = |value: f64| HEIGHT - PAD - value / max * (HEIGHT - 2.0 * PAD);
    let label = |value: f64| {
        if as_percent {
            format!("{value:.1} %")
        } else {
            format!("{value:.0}")
        }
    };
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{}" xmlns="http://www.w3.org/2000/svg"><title>{}</title>"#,
        escape(title),
        escape(title)
    );
    let _ = write!(
        svg,
        r#"<line class="axis" x1="{PAD}" y1="{b}" x2="{r}" y2="{b}"/><line class="axis" x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{b}"/>"#,
        b = HEIGHT - PAD,
        r = WIDTH - PAD
    );
    let _ = write!(
        svg,
        r#"<text x="2" y="{}">{}</text><text x="2" y="{}">0</text>"#,
        PAD + 4.0,
        escape(&label(max)),
        HEIGHT - PAD
    );
    if let (Some(first), Some(last)) = (days.first(), days.last()) {
        let _ = write!(
            svg,
            r#"<text x="{PAD}" y="{}">{}</text><text x="{}" y="{}" text-anchor="end">{}</text>"#,
            HEIGHT - 10.0,
            escape(first),
            WIDTH - PAD,
            HEIGHT - 10.0,
            escape(last)
        );
    }
    for (position, line) in series.iter().enumerate() {
        let points: Vec<String> = line
            .values
            .iter()
            .enumerate()
            .map(|(index, value)| format!("{:.1},{:.1}", x(index), y(*value)))
            .collect();
        let _ = write!(
            svg,
            r#"<polyline class="{}" points="{}"/><text x="{}" y="14" text-anchor="end">{}</text>"#,
            line.class,
            points.join(" "),
            WIDTH - PAD - position as f64 * 140.0,
            escape(line.name)
        );
    }
    svg.push_str("</svg>");
    svg
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
