//! A Gantt chart of a plan as a standalone SVG: one row per GPU (`host:index`), one colour
//! per job, job labels where they fit, a time axis, and the makespan against the bound.

use std::collections::HashMap;
use std::fmt::Write;

use crate::instance::Instance;
use crate::plan::Plan;

const WIDTH: f64 = 1200.0;
const LEFT: f64 = 120.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 50.0;
const AXIS: f64 = 40.0;
/// Average glyph width of the 11 px sans-serif labels, to decide whether a label fits.
const CHAR_W: f64 = 6.2;

/// Renders the plan as an SVG document.
pub fn render_svg(instance: &Instance, plan: &Plan) -> String {
    let rows: Vec<(&str, u32)> =
        instance.hosts.iter().flat_map(|h| (0..h.gpus).map(move |g| (h.name.as_str(), g))).collect();
    let row_h = match rows.len() {
        0..=48 => 22.0,
        49..=160 => 10.0,
        161..=400 => 5.0,
        _ => 3.0,
    };
    let plot_w = WIDTH - LEFT - RIGHT;
    let height = TOP + row_h * rows.len() as f64 + AXIS;
    let span = if plan.makespan_s > 0.0 { plan.makespan_s } else { 1.0 };
    let x = |t: f64| LEFT + t / span * plot_w;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{LEFT}" y="22" font-size="15" font-weight="bold">{}</text>"#,
        escape(&title(instance, plan))
    );
    let (step, unit, per_unit) = tick_step(span);
    let mut t = 0.0;
    while t <= span * 1.0001 {
        let tx = x(t);
        let bottom = TOP + row_h * rows.len() as f64;
        let _ = writeln!(
            svg,
            r##"<line x1="{tx:.1}" y1="{TOP}" x2="{tx:.1}" y2="{:.1}" stroke="#ddd"/><text x="{tx:.1}" y="{:.1}" text-anchor="middle">{} {unit}</text>"##,
            bottom + 4.0,
            bottom + 18.0,
            trim(t / per_unit)
        );
        t += step;
    }
    for (i, (host, gpu)) in rows.iter().enumerate() {
        let y = TOP + row_h * i as f64;
        if i % 2 == 0 {
            let _ = writeln!(svg, r##"<rect x="{LEFT}" y="{y}" width="{plot_w}" height="{row_h}" fill="#f6f6f6"/>"##);
        }
        if row_h >= 10.0 {
            let _ = writeln!(
                svg,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end" font-size="{}">{}:{gpu}</text>"#,
                LEFT - 6.0,
                y + row_h * 0.72,
                if row_h >= 20.0 { 11 } else { 8 },
                escape(host)
            );
        }
    }
    let row_of: HashMap<(&str, u32), usize> = rows.iter().enumerate().map(|(i, &r)| (r, i)).collect();
    for (j, a) in plan.assignments.iter().enumerate() {
        let colour = format!("hsl({:.0},62%,{}%)", (j as f64 * 137.508) % 360.0, 48 + (j % 3) * 8);
        let (x0, x1) = (x(a.start_s), x(a.end_s));
        let tip = format!("{} ({}) {:.0}s - {:.0}s", a.job, a.technique, a.start_s, a.end_s);
        for entry in &a.placement {
            for &gpu in &entry.gpus {
                let Some(&row) = row_of.get(&(entry.host.as_str(), gpu)) else { continue };
                let y = TOP + row_h * row as f64;
                let _ = writeln!(
                    svg,
                    r#"<rect x="{x0:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{colour}" stroke="white" stroke-width="0.5"><title>{}</title></rect>"#,
                    y + 0.5,
                    (x1 - x0).max(0.5),
                    row_h - 1.0,
                    escape(&tip)
                );
                if row_h >= 20.0 && (x1 - x0) >= CHAR_W * 4.0 {
                    let fit = ((x1 - x0 - 6.0) / CHAR_W) as usize;
                    let label: String = if a.job.chars().count() <= fit {
                        a.job.clone()
                    } else {
                        a.job.chars().take(fit.saturating_sub(1)).chain(std::iter::once('…')).collect()
                    };
                    let _ = writeln!(
                        svg,
                        r#"<text x="{:.1}" y="{:.1}" fill="black">{}</text>"#,
                        x0 + 3.0,
                        y + row_h * 0.68,
                        escape(&label)
                    );
                }
            }
        }
    }
    svg.push_str("</svg>\n");
    svg
}

fn title(instance: &Instance, plan: &Plan) -> String {
    let gpus: u32 = instance.hosts.iter().map(|h| h.gpus).sum();
    format!(
        "makespan {:.0} s ({:.2} h) · lower bound {:.0} s (x{:.3}) · {} · {} jobs on {gpus} GPUs",
        plan.makespan_s,
        plan.makespan_s / 3600.0,
        plan.lower_bound_s,
        plan.gap_ratio(),
        plan.solver,
        plan.assignments.len()
    )
}

/// A 1-2-5 tick step giving 5 to 12 ticks, in seconds or hours: (step s, unit, s per unit).
fn tick_step(span: f64) -> (f64, &'static str, f64) {
    let (unit, per_unit) = if span >= 3.0 * 3600.0 { ("h", 3600.0) } else { ("s", 1.0) };
    let raw = span / per_unit / 8.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * magnitude).find(|s| *s >= raw).unwrap_or(raw);
    (step * per_unit, unit, per_unit)
}

fn trim(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}
