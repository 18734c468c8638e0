//! The daily report as one self-contained HTML page: inline CSS and inline SVG charts, no
//! JavaScript, nothing loaded from elsewhere (fonts included), so the file can be mailed,
//! archived and printed as it is.
//!
//! Every chart is an `<svg>` with `role="img"`, an `aria-label`, a `<title>` and a `viewBox`.
//! Its data marks carry `class="datum"`: in the traffic chart one `<rect>` per non-zero
//! segment of a stacked column (an hour without 4xx answers has no 4xx rect), in the bar
//! charts one `<rect>` per bar shown (a zero value is a bar of zero width).
//!
//! All text that comes from the report is HTML-escaped; in charts it is also shortened with
//! an ellipsis so that it fits, the full text staying in the mark's tooltip.

use std::fmt::{self, Write};

use crate::model::{
    DailyReport, ErrorGroup, FunnelStep, HourTraffic, Order, OrderAtRisk, PendingOrders, RouteStats, Summary,
};

/// The colours of the charts: successful answers (and every plain bar), 4xx and 5xx answers.
const BLUE: &str = "#2563eb";
const AMBER: &str = "#d97706";
const RED: &str = "#dc2626";

/// What is shown for a missing value.
const DASH: &str = "–";

/// The width of every chart's `viewBox`; the page is about as wide, so a unit is about a pixel.
const CHART_WIDTH: f64 = 1000.0;

/// The size of chart text in chart units, as the style below sets it.
const FONT_SIZE: f64 = 14.0;

/// The routes shown in the error rate chart; the others are only in the latency table.
const MAX_CHART_ROUTES: usize = 15;

const STYLE: &str = r#"
* { box-sizing: border-box; }
body { max-width: 1100px; margin: 0 auto; padding: 24px 24px 48px; background: #fff; color: #1f2937;
  font: 16px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, "Noto Sans",
  "Liberation Sans", sans-serif; }
h1 { font-size: 1.75rem; margin: 0 0 4px; }
h2 { font-size: 1.3rem; margin: 0 0 12px; padding-bottom: 4px; border-bottom: 1px solid #d1d5db; break-after: avoid; }
h3 { font-size: 1.05rem; margin: 20px 0 8px; }
section { margin-top: 36px; }
p { margin: 0 0 12px; }
.muted { color: #4b5563; }
.tiles { display: grid; grid-template-columns: repeat(4, 1fr); gap: 12px; margin-top: 24px; }
.tile { border: 1px solid #d1d5db; border-left: 5px solid #9ca3af; border-radius: 6px; padding: 10px 14px; }
.tile.ok { border-left-color: #2563eb; }
.tile.client { border-left-color: #d97706; }
.tile.server { border-left-color: #dc2626; }
.tile .label { font-size: 0.9rem; color: #4b5563; }
.tile .value { font-size: 1.6rem; font-weight: 600; font-variant-numeric: tabular-nums; }
figure { margin: 0; break-inside: avoid; }
figcaption { margin-top: 6px; font-size: 0.9rem; color: #4b5563; }
svg.chart { display: block; width: 100%; height: auto; }
svg.chart text { font-size: 14px; fill: #1f2937; }
svg.chart .axis { fill: #4b5563; }
svg.chart .grid { stroke: #e5e7eb; stroke-width: 1; }
table { width: 100%; border-collapse: collapse; font-size: 0.95rem; }
th, td { padding: 6px 10px; border-bottom: 1px solid #e5e7eb; text-align: left; vertical-align: top;
  overflow-wrap: anywhere; }
th { background: #f3f4f6; font-weight: 600; }
.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; overflow-wrap: normal; }
@media (max-width: 700px) { .tiles { grid-template-columns: repeat(2, 1fr); } }
@media print {
  body { max-width: none; padding: 0; }
  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  tr { break-inside: avoid; }
}
"#;

/// The report as an HTML page.
pub fn render(report: &DailyReport) -> String {
    let mut out = String::new();
    write_page(&mut out, report).expect("writing to a String cannot fail");
    out
}

fn write_page(out: &mut String, report: &DailyReport) -> fmt::Result {
    let title = escape(&format!("Daily report — {} — {}", report.stream, report.date));
    writeln!(out, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">")?;
    writeln!(out, "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">")?;
    writeln!(out, "<title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>")?;
    writeln!(out, "<header>\n<h1>{title}</h1>")?;
    writeln!(out, "<p class=\"muted\">Generated at {}</p>\n</header>", escape(&report.generated_at))?;
    summary(out, &report.summary)?;
    traffic(out, &report.traffic_by_hour)?;
    error_rates(out, &report.routes)?;
    latencies(out, &report.routes)?;
    top_errors(out, &report.top_errors)?;
    funnel(out, &report.funnel)?;
    pending(out, report.pending.as_ref())?;
    orders_at_risk(out, &report.orders_at_risk)?;
    writeln!(out, "</body>\n</html>")
}

fn summary(out: &mut String, s: &Summary) -> fmt::Result {
    let tiles = [
        ("Requests", "ok", int(s.requests)),
        ("5xx", "server", int(s.errors_5xx)),
        ("4xx", "client", int(s.errors_4xx)),
        ("Error rate (5xx)", "server", percent(s.error_rate)),
        ("p50 latency (ms)", "", ms(s.p50_ms)),
        ("p95 latency (ms)", "", ms(s.p95_ms)),
        ("p99 latency (ms)", "", ms(s.p99_ms)),
        ("Sessions", "", int(s.sessions)),
    ];
    writeln!(out, "<section class=\"tiles\" aria-label=\"Summary\">")?;
    for (label, kind, value) in tiles {
        writeln!(
            out,
            "<div class=\"tile {kind}\"><div class=\"label\">{label}</div><div class=\"value\">{value}</div></div>"
        )?;
    }
    writeln!(out, "</section>")
}

/// A column chart of the 24 hours, each column stacked bottom up: successful answers, 4xx, 5xx.
fn traffic(out: &mut String, hours: &[HourTraffic]) -> fmt::Result {
    const HEIGHT: f64 = 330.0;
    const LEFT: f64 = 100.0;
    const RIGHT: f64 = 990.0;
    const TOP: f64 = 44.0;
    const BOTTOM: f64 = 290.0;
    const SEGMENTS: [(&str, &str); 3] = [("2xx/3xx", BLUE), ("4xx", AMBER), ("5xx", RED)];
    let column = (RIGHT - LEFT) / 24.0;

    // Per hour: the successful answers, 4xx and 5xx. Hours outside 0-23 cannot be placed.
    let mut stacks = [[0u64; 3]; 24];
    for h in hours.iter().filter(|h| h.hour < 24) {
        let errors = h.errors_4xx.saturating_add(h.errors_5xx);
        stacks[usize::from(h.hour)] = [h.requests.saturating_sub(errors), h.errors_4xx, h.errors_5xx];
    }
    let highest = stacks.iter().map(|s| s.iter().fold(0, |sum: u64, n| sum.saturating_add(*n))).max().unwrap_or(0);
    let (top, step) = axis(highest);
    let y = |value: f64| BOTTOM - share(value, top as f64) * (BOTTOM - TOP);

    writeln!(out, "<section>\n<h2>Traffic by hour</h2>\n<figure>")?;
    svg_open(out, "traffic-chart", "Requests per hour (UTC), stacked: successful, 4xx, 5xx", HEIGHT)?;
    let mut x = LEFT;
    for (name, colour) in SEGMENTS {
        writeln!(out, "<rect x=\"{x:.1}\" y=\"8\" width=\"14\" height=\"14\" fill=\"{colour}\"/>")?;
        writeln!(out, "<text x=\"{:.1}\" y=\"20\">{name}</text>", x + 20.0)?;
        x += 20.0 + text_width(name) * FONT_SIZE + 20.0;
    }
    for tick in (0..=top / step).map(|i| i * step) {
        let ty = y(tick as f64);
        writeln!(out, "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{RIGHT}\" y1=\"{ty:.1}\" y2=\"{ty:.1}\"/>")?;
        writeln!(
            out,
            "<text class=\"axis\" x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            LEFT - 8.0,
            ty + 5.0,
            int(tick)
        )?;
    }
    for (hour, stack) in stacks.iter().enumerate() {
        let x = LEFT + column * hour as f64;
        let mut base = 0u64;
        for (&count, (name, colour)) in stack.iter().zip(SEGMENTS) {
            if count == 0 {
                continue;
            }
            let (y0, y1) = (y(base as f64), y(base.saturating_add(count) as f64));
            writeln!(
                out,
                "<rect class=\"datum\" x=\"{:.1}\" y=\"{y1:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{colour}\">\
                 <title>{hour:02}:00 UTC, {name}: {}</title></rect>",
                x + column * 0.15,
                column * 0.7,
                y0 - y1,
                int(count),
            )?;
            base = base.saturating_add(count);
        }
        writeln!(
            out,
            "<text class=\"axis\" x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{hour:02}</text>",
            x + column / 2.0,
            BOTTOM + 18.0
        )?;
    }
    writeln!(out, "<line x1=\"{LEFT}\" x2=\"{RIGHT}\" y1=\"{BOTTOM}\" y2=\"{BOTTOM}\" stroke=\"#6b7280\"/>")?;
    writeln!(
        out,
        "<text class=\"axis\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">hour (UTC)</text>",
        (LEFT + RIGHT) / 2.0,
        HEIGHT - 6.0
    )?;
    writeln!(out, "</svg>\n</figure>\n</section>")
}

/// The 5xx rate of the routes with the highest rates, as horizontal bars scaled to the highest.
fn error_rates(out: &mut String, routes: &[RouteStats]) -> fmt::Result {
    writeln!(out, "<section>\n<h2>Error rate by route</h2>")?;
    if routes.is_empty() {
        return writeln!(out, "<p>No requests.</p>\n</section>");
    }
    let mut ranked: Vec<&RouteStats> = routes.iter().collect();
    // Stable: among equal rates, the busier route (the report's order) comes first.
    ranked.sort_by(|a, b| share(b.error_rate, 1.0).total_cmp(&share(a.error_rate, 1.0)));
    ranked.truncate(MAX_CHART_ROUTES);
    let highest = ranked.iter().map(|r| share(r.error_rate, 1.0)).fold(0.0, f64::max);
    let bars: Vec<Bar> = ranked
        .iter()
        .map(|r| Bar {
            label: r.route.clone(),
            fraction: share(r.error_rate, highest),
            value: format!("{} ({} of {})", percent(r.error_rate), int(r.errors_5xx), int(r.requests)),
        })
        .collect();
    writeln!(out, "<figure>")?;
    bar_chart(out, "error-rate-chart", "5xx rate by route, highest first", RED, &bars)?;
    if routes.len() > bars.len() {
        writeln!(
            out,
            "<figcaption>The {} routes with the highest 5xx rate; {} more routes are in the latency table below.</figcaption>",
            bars.len(),
            routes.len() - bars.len()
        )?;
    }
    writeln!(out, "</figure>\n</section>")
}

fn latencies(out: &mut String, routes: &[RouteStats]) -> fmt::Result {
    writeln!(out, "<section>\n<h2>Latency by route</h2>")?;
    if routes.is_empty() {
        return writeln!(out, "<p>No requests.</p>\n</section>");
    }
    table(
        out,
        [("Route", Left), ("Requests", Right), ("p50 (ms)", Right), ("p95 (ms)", Right), ("p99 (ms)", Right)],
        routes.iter().map(|r| [r.route.clone(), int(r.requests), ms(r.p50_ms), ms(r.p95_ms), ms(r.p99_ms)]),
    )?;
    writeln!(out, "</section>")
}

fn top_errors(out: &mut String, errors: &[ErrorGroup]) -> fmt::Result {
    writeln!(out, "<section>\n<h2>Top 5xx</h2>")?;
    if errors.is_empty() {
        return writeln!(out, "<p>No 5xx answers.</p>\n</section>");
    }
    table(
        out,
        [("Route", Left), ("Status", Right), ("Message", Left), ("Count", Right)],
        errors.iter().map(|e| {
            [e.route.clone(), e.status.to_string(), e.message.clone().unwrap_or_else(|| DASH.into()), int(e.count)]
        }),
    )?;
    writeln!(out, "</section>")
}

/// The sessions of each step as bars scaled to the largest step, with the share of the first
/// step and the conversion from the step before.
fn funnel(out: &mut String, steps: &[FunnelStep]) -> fmt::Result {
    writeln!(out, "<section>\n<h2>Checkout funnel</h2>")?;
    let Some(first) = steps.first() else {
        return writeln!(out, "<p>No funnel data.</p>\n</section>");
    };
    let largest = steps.iter().map(|s| s.sessions).max().unwrap_or(0);
    let mut bars = Vec::with_capacity(steps.len());
    for (i, step) in steps.iter().enumerate() {
        let mut value = format!("{} sessions", int(step.sessions));
        if i > 0 {
            write!(value, " · {} of {}", percent_of(step.sessions, first.sessions), first.step)?;
        }
        // The conversion from the step before, unless that is the first step (said already).
        if i > 1 {
            let previous = &steps[i - 1];
            write!(value, " · {} of {}", percent_of(step.sessions, previous.sessions), previous.step)?;
        }
        bars.push(Bar { label: step.step.clone(), fraction: share(step.sessions as f64, largest as f64), value });
    }
    writeln!(out, "<figure>")?;
    bar_chart(out, "funnel-chart", "Sessions reaching each checkout step", BLUE, &bars)?;
    writeln!(
        out,
        "<figcaption>Sessions that reached each step, with their share of the first step and the \
         conversion from the step before.</figcaption>\n</figure>\n</section>"
    )
}

fn pending(out: &mut String, pending: Option<&PendingOrders>) -> fmt::Result {
    writeln!(out, "<section>\n<h2>Pending orders</h2>")?;
    let Some(p) = pending else {
        return writeln!(out, "<p>No orders database is configured.</p>\n</section>");
    };
    writeln!(out, "<p>Orders pending: <strong>{}</strong></p>", int(p.count))?;

    writeln!(out, "<h3>Value by currency</h3>")?;
    if p.value_by_currency.is_empty() {
        writeln!(out, "<p>None.</p>")?;
    } else {
        table(
            out,
            [("Currency", Left), ("Orders", Right), ("Amount", Right)],
            p.value_by_currency.iter().map(|c| [c.currency.clone(), int(c.orders), group_thousands(&c.amount)]),
        )?;
    }

    writeln!(out, "<h3>Age</h3>")?;
    let largest = p.age_buckets.iter().map(|b| b.orders).max().unwrap_or(0);
    let bars: Vec<Bar> = p
        .age_buckets
        .iter()
        .map(|b| Bar {
            label: b.label.clone(),
            fraction: share(b.orders as f64, largest as f64),
            value: format!("{} ({})", int(b.orders), percent_of(b.orders, p.count)),
        })
        .collect();
    writeln!(out, "<figure>")?;
    bar_chart(out, "pending-age-chart", "Pending orders by age", BLUE, &bars)?;
    writeln!(out, "</figure>")?;

    writeln!(out, "<h3>Oldest</h3>")?;
    match &p.oldest {
        None => writeln!(out, "<p>None.</p>")?,
        Some(order) => table(
            out,
            [
                ("Order", Left),
                ("Customer", Left),
                ("Amount", Right),
                ("Status", Left),
                ("Created", Left),
                ("Age (h)", Right),
            ],
            [[
                order.id.clone(),
                customer(order),
                amount(order),
                order.status.clone(),
                order.created_at.clone(),
                one_decimal(order.age_hours),
            ]],
        )?,
    }
    writeln!(out, "</section>")
}

fn orders_at_risk(out: &mut String, orders: &[OrderAtRisk]) -> fmt::Result {
    writeln!(out, "<section>\n<h2>Pending orders whose session hit a 5xx at checkout</h2>")?;
    if orders.is_empty() {
        return writeln!(out, "<p>None.</p>\n</section>");
    }
    table(
        out,
        [
            ("Order", Left),
            ("Customer", Left),
            ("Amount", Right),
            ("Created", Left),
            ("Session", Left),
            ("5xx at", Left),
            ("Route", Left),
            ("Status", Right),
        ],
        orders.iter().map(|r| {
            [
                r.order.id.clone(),
                customer(&r.order),
                amount(&r.order),
                r.order.created_at.clone(),
                r.session_id.clone(),
                r.error_at.clone(),
                r.route.clone(),
                r.status.to_string(),
            ]
        }),
    )?;
    writeln!(out, "</section>")
}

fn customer(order: &Order) -> String {
    order.customer_id.clone().unwrap_or_else(|| DASH.into())
}

fn amount(order: &Order) -> String {
    format!("{} {}", group_thousands(&order.amount), order.currency)
}

/// How a table column is aligned: text left, numbers right.
#[derive(Clone, Copy)]
enum Align {
    Left,
    Right,
}
use Align::{Left, Right};

/// A table of plain-text cells (escaped here).
fn table<const N: usize>(
    out: &mut String,
    columns: [(&str, Align); N],
    rows: impl IntoIterator<Item = [String; N]>,
) -> fmt::Result {
    let class = |align| match align {
        Left => "",
        Right => " class=\"num\"",
    };
    writeln!(out, "<table>\n<thead><tr>")?;
    for (title, align) in columns {
        write!(out, "<th{}>{}</th>", class(align), escape(title))?;
    }
    writeln!(out, "</tr></thead>\n<tbody>")?;
    for row in rows {
        write!(out, "<tr>")?;
        for (cell, (_, align)) in row.iter().zip(columns) {
            write!(out, "<td{}>{}</td>", class(align), escape(cell))?;
        }
        writeln!(out, "</tr>")?;
    }
    writeln!(out, "</tbody>\n</table>")
}

/// One bar of a horizontal bar chart.
struct Bar {
    /// Plain text; shortened to fit.
    label: String,
    /// The bar's length as a share of the full length, 0 to 1.
    fraction: f64,
    /// Plain text shown after the bars.
    value: String,
}

/// Horizontal bars, one row each: the label right-aligned on the left, the bar, then the value
/// in a column of its own so that it never overlaps a bar.
fn bar_chart(out: &mut String, id: &str, title: &str, colour: &str, bars: &[Bar]) -> fmt::Result {
    const ROW: f64 = 30.0;
    const BAR: f64 = 20.0;
    const LABEL_END: f64 = 280.0;
    const BARS_START: f64 = 290.0;
    const BARS_LENGTH: f64 = 280.0;
    const VALUE_START: f64 = BARS_START + BARS_LENGTH + 10.0;

    let height = ROW * bars.len() as f64 + 10.0;
    svg_open(out, id, title, height)?;
    writeln!(out, "<line x1=\"{BARS_START}\" x2=\"{BARS_START}\" y1=\"0\" y2=\"{height}\" stroke=\"#6b7280\"/>")?;
    for (i, bar) in bars.iter().enumerate() {
        let top = 5.0 + ROW * i as f64;
        let middle = top + ROW / 2.0 + 5.0;
        let tooltip = escape(&format!("{}: {}", bar.label, bar.value));
        writeln!(
            out,
            "<text x=\"{LABEL_END}\" y=\"{middle}\" text-anchor=\"end\">{}</text>",
            escape(&fit(&bar.label, LABEL_END - 5.0))
        )?;
        writeln!(
            out,
            "<rect class=\"datum\" x=\"{BARS_START}\" y=\"{}\" width=\"{:.1}\" height=\"{BAR}\" fill=\"{colour}\">\
             <title>{tooltip}</title></rect>",
            top + (ROW - BAR) / 2.0,
            share(bar.fraction, 1.0) * BARS_LENGTH,
        )?;
        writeln!(
            out,
            "<text x=\"{VALUE_START}\" y=\"{middle}\">{}</text>",
            escape(&fit(&bar.value, CHART_WIDTH - VALUE_START - 5.0))
        )?;
    }
    writeln!(out, "</svg>")
}

/// The start of an accessible chart whose coordinates are `CHART_WIDTH` × `height`.
fn svg_open(out: &mut String, id: &str, title: &str, height: f64) -> fmt::Result {
    let title = escape(title);
    writeln!(
        out,
        "<svg id=\"{id}\" class=\"chart\" role=\"img\" aria-label=\"{title}\" viewBox=\"0 0 {CHART_WIDTH} {height}\" \
         xmlns=\"http://www.w3.org/2000/svg\"><title>{title}</title>"
    )
}

/// The top of a value axis starting at 0 and its tick step: a round step (1, 2 or 5 times a
/// power of ten) such that at most five steps reach `highest`. An axis of all zeros goes to 1.
fn axis(highest: u64) -> (u64, u64) {
    const STEPS: u64 = 5;
    let mut magnitude = 1u64;
    let step = loop {
        if let Some(step) =
            [1u64, 2, 5].map(|m| m.saturating_mul(magnitude)).into_iter().find(|s| s.saturating_mul(STEPS) >= highest)
        {
            break step;
        }
        magnitude = magnitude.saturating_mul(10);
    };
    (step.saturating_mul(highest.div_ceil(step).max(1)), step)
}

/// `part / whole` limited to 0..=1, and 0 where that is not a number (as for an empty chart).
fn share(part: f64, whole: f64) -> f64 {
    let share = part / whole;
    if share.is_finite() { share.clamp(0.0, 1.0) } else { 0.0 }
}

/// Text made safe to put in HTML, in content and in quoted attributes.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            _ => escaped.push(c),
        }
    }
    escaped
}

/// Chart text cut with an ellipsis so that it is at most `width` chart units wide.
fn fit(text: &str, width: f64) -> String {
    let ems = width / FONT_SIZE;
    if text_width(text) <= ems {
        return text.to_owned();
    }
    let mut used = char_width('…');
    let mut short: String = text
        .chars()
        .take_while(|&c| {
            used += char_width(c);
            used <= ems
        })
        .collect();
    short.push('…');
    short
}

/// The width of text in ems, by `char_width`.
fn text_width(text: &str) -> f64 {
    text.chars().map(char_width).sum()
}

/// A character's width in ems, erring wide for the common sans-serif fonts (the page leaves
/// the choice to the system), so that text cut to a width by it does not overflow.
fn char_width(c: char) -> f64 {
    match c {
        'i' | 'j' | 'l' | '.' | ',' | ':' | ';' | '\'' | '|' | '!' | ' ' | '·' => 0.35,
        'f' | 't' | 'r' | 'I' | '/' | '\\' | '(' | ')' | '[' | ']' | '-' => 0.45,
        'm' | 'w' | 'M' | 'W' | '@' | '%' => 1.0,
        'A'..='Z' => 0.8,
        _ if c.is_ascii() => 0.65,
        _ => 1.0,
    }
}

/// `12345` → `12,345`.
fn int(n: u64) -> String {
    group_thousands(&n.to_string())
}

/// A number with one decimal and thousands separators; a dash when it is not a number.
fn one_decimal(x: f64) -> String {
    if x.is_finite() { group_thousands(&format!("{x:.1}")) } else { DASH.into() }
}

/// Milliseconds with one decimal; a dash when there are none.
fn ms(value: Option<f64>) -> String {
    value.map_or_else(|| DASH.into(), one_decimal)
}

/// A fraction as a percentage with one decimal: `0.1234` → `12.3%`.
fn percent(fraction: f64) -> String {
    if fraction.is_finite() { format!("{}%", one_decimal(fraction * 100.0)) } else { DASH.into() }
}

/// `part` as a percentage of `whole`; a dash when `whole` is 0.
fn percent_of(part: u64, whole: u64) -> String {
    if whole == 0 { DASH.into() } else { percent(part as f64 / whole as f64) }
}

/// A decimal number with its integer digits grouped by three (`-1234.50` → `-1,234.50`);
/// anything that is not such a number is returned as it is.
fn group_thousands(number: &str) -> String {
    let (sign, unsigned) = number.strip_prefix('-').map_or(("", number), |rest| ("-", rest));
    let (whole, fraction) = unsigned.split_once('.').map_or((unsigned, None), |(w, f)| (w, Some(f)));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || fraction.is_some_and(|f| !digits(f)) {
        return number.to_owned();
    }
    let mut grouped = String::from(sign);
    for (i, digit) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    if let Some(fraction) = fraction {
        grouped.push('.');
        grouped.push_str(fraction);
    }
    grouped
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AgeBucket, CurrencyTotal};

    fn route(name: &str, requests: u64, errors_5xx: u64) -> RouteStats {
        RouteStats {
            route: name.into(),
            requests,
            errors_5xx,
            error_rate: if requests == 0 { 0.0 } else { errors_5xx as f64 / requests as f64 },
            p50_ms: Some(12.25),
            p95_ms: Some(80.0),
            p99_ms: None,
        }
    }

    /// A report of a day without any traffic, and every list as long as it can be.
    fn empty_day() -> DailyReport {
        DailyReport {
            date: "2025-03-14".into(),
            generated_at: "2025-03-15T00:10:00Z".into(),
            stream: "storefront".into(),
            summary: Summary {
                requests: 0,
                errors_5xx: 0,
                errors_4xx: 0,
                error_rate: 0.0,
                p50_ms: None,
                p95_ms: None,
                p99_ms: None,
                sessions: 0,
            },
            traffic_by_hour: (0..24)
                .map(|hour| HourTraffic { hour, requests: 0, errors_4xx: 0, errors_5xx: 0 })
                .collect(),
            routes: vec![route("/", 0, 0)],
            top_errors: Vec::new(),
            funnel: ["view", "cart", "checkout", "paid"]
                .map(|step| FunnelStep { step: step.into(), sessions: 0 })
                .into(),
            pending: Some(PendingOrders {
                count: 0,
                value_by_currency: Vec::new(),
                age_buckets: ["< 1h", "1-6h", "6-24h", "1-3d", "> 3d"]
                    .map(|label| AgeBucket { label: label.into(), orders: 0 })
                    .into(),
                oldest: None,
            }),
            orders_at_risk: Vec::new(),
        }
    }

    /// The `<svg>` element with this id.
    fn svg<'a>(html: &'a str, id: &str) -> &'a str {
        let start = html.find(&format!("<svg id=\"{id}\"")).unwrap_or_else(|| panic!("no chart {id}"));
        let end = start + html[start..].find("</svg>").expect("an open svg");
        &html[start..end]
    }

    fn data(svg: &str) -> usize {
        svg.matches("class=\"datum\"").count()
    }

    #[test]
    fn escape_makes_hostile_text_inert() {
        assert_eq!(
            escape(r#"<script>alert('x')</script> & "q""#),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        assert_eq!(escape("/products/{id} – ok"), "/products/{id} – ok");
    }

    #[test]
    fn text_from_the_logs_is_escaped_everywhere() {
        let hostile = r#"<script>alert("x")</script>&'"#;
        let mut report = empty_day();
        report.stream = hostile.into();
        report.routes = vec![route(hostile, 10, 1)];
        report.top_errors =
            vec![ErrorGroup { route: hostile.into(), status: 500, message: Some(hostile.into()), count: 1 }];
        report.funnel[0].step = hostile.into();
        let html = render(&report);
        assert!(!html.contains("<script"), "unescaped: {html}");
        assert!(!html.contains("&'"));
        // Title, h1, chart label and tooltip, two table cells each for route and message.
        assert!(html.matches("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;").count() >= 6);
    }

    #[test]
    fn a_day_without_traffic_renders_without_nan_or_infinity() {
        let mut reports = vec![empty_day()];
        let mut nothing = empty_day();
        nothing.traffic_by_hour.clear();
        nothing.routes.clear();
        nothing.funnel.clear();
        nothing.pending = None;
        reports.push(nothing);
        for report in reports {
            let html = render(&report).to_lowercase();
            assert!(!html.contains("nan"), "{html}");
            assert!(!html.contains("inf"), "{html}");
            // 24 hour labels but no segments.
            assert_eq!(data(svg(&html, "traffic-chart")), 0);
            assert!(svg(&html, "traffic-chart").contains(">23</text>"));
        }
    }

    #[test]
    fn traffic_chart_has_one_datum_per_non_zero_segment() {
        let mut report = empty_day();
        report.traffic_by_hour[3] = HourTraffic { hour: 3, requests: 10, errors_4xx: 0, errors_5xx: 0 };
        report.traffic_by_hour[12] = HourTraffic { hour: 12, requests: 100, errors_4xx: 5, errors_5xx: 2 };
        report.traffic_by_hour[13] = HourTraffic { hour: 13, requests: 4, errors_4xx: 0, errors_5xx: 4 };
        let chart = render(&report);
        let chart = svg(&chart, "traffic-chart");
        assert_eq!(data(chart), 1 + 3 + 1);
        assert!(chart.contains("<title>12:00 UTC, 2xx/3xx: 93</title>"));
        assert!(chart.contains("<title>13:00 UTC, 5xx: 4</title>"));
        // A round axis: 0 to 100 in steps of 20.
        assert!(chart.contains(">100</text>"));
        assert!(chart.contains(">80</text>"));
    }

    #[test]
    fn fifty_routes_chart_the_fifteen_highest_error_rates_and_say_how_many_more() {
        let mut report = empty_day();
        report.routes = (0..50).map(|i| route(&format!("/r{i}"), 1000, i)).collect();
        let html = render(&report);
        let chart = svg(&html, "error-rate-chart");
        assert_eq!(data(chart), 15);
        assert!(chart.find(">/r49<").expect("the worst route") < chart.find(">/r35<").expect("the 15th"));
        assert!(!chart.contains(">/r34<"));
        assert!(html.contains("35 more routes"));
        assert_eq!(html.matches("<td>/r").count(), 50);
    }

    #[test]
    fn one_route_charts_one_bar_and_no_caption() {
        let mut report = empty_day();
        report.routes = vec![route("/only", 4, 1)];
        let html = render(&report);
        assert_eq!(data(svg(&html, "error-rate-chart")), 1);
        assert!(html.contains("25.0% (1 of 4)"));
        assert!(!html.contains("more routes"));
    }

    #[test]
    fn long_names_are_cut_in_charts_but_whole_in_tables() {
        let long = format!("/products/{}", "x".repeat(200));
        let mut report = empty_day();
        report.routes = vec![route(&long, 10, 1)];
        let html = render(&report);
        let chart = svg(&html, "error-rate-chart");
        let start = chart.find(">/products/").expect("the route's label") + 1;
        let label = &chart[start..start + chart[start..].find("</text>").expect("a closed label")];
        assert!(label.ends_with("xxx…") && label.len() < 100, "{label}");
        assert!(html.contains(&format!("<td>{long}</td>")));
    }

    #[test]
    fn fit_cuts_text_to_a_width() {
        assert_eq!(fit("/r1", 100.0), "/r1");
        for text in ["W".repeat(100), "i".repeat(1000), "/products/{id}".repeat(10), "商品".repeat(50)] {
            let cut = fit(&text, 280.0);
            assert!(cut.ends_with('…') && cut.len() < text.len(), "{cut}");
            assert!(text_width(&cut) * FONT_SIZE <= 280.0, "{cut} is too wide");
            assert!(text_width(&cut) * FONT_SIZE > 250.0, "{cut} is cut too short");
        }
    }

    #[test]
    fn sections_come_in_order() {
        let mut report = empty_day();
        report.pending = None;
        let html = render(&report);
        let headings = [
            "<h1>Daily report — storefront — 2025-03-14</h1>",
            "Generated at 2025-03-15T00:10:00Z",
            "<section class=\"tiles\"",
            "<h2>Traffic by hour</h2>",
            "<h2>Error rate by route</h2>",
            "<h2>Latency by route</h2>",
            "<h2>Top 5xx</h2>",
            "<h2>Checkout funnel</h2>",
            "<h2>Pending orders</h2>\n<p>No orders database is configured.</p>",
            "<h2>Pending orders whose session hit a 5xx at checkout</h2>\n<p>None.</p>",
        ];
        let positions: Vec<usize> = headings.iter().map(|h| html.find(h).unwrap_or_else(|| panic!("no {h}"))).collect();
        assert!(positions.is_sorted(), "{positions:?}");
    }

    #[test]
    fn every_chart_is_labelled() {
        let html = render(&empty_day());
        let charts: Vec<&str> =
            html.split("<svg ").skip(1).map(|rest| &rest[..rest.find("</svg>").expect("a closed svg")]).collect();
        assert_eq!(charts.len(), 4);
        for chart in charts {
            for part in ["role=\"img\"", "aria-label=\"", "viewBox=\"0 0 1000 ", "><title>"] {
                assert!(chart.contains(part), "{part} missing in {chart}");
            }
        }
    }

    #[test]
    fn funnel_shows_share_of_first_step_and_conversion() {
        let mut report = empty_day();
        for (step, sessions) in report.funnel.iter_mut().zip([1000, 400, 100, 80]) {
            step.sessions = sessions;
        }
        let html = render(&report);
        let chart = svg(&html, "funnel-chart");
        assert!(chart.contains("1,000 sessions</text>"));
        assert!(chart.contains("80 sessions · 8.0% of view · 80.0% of checkout</text>"));
        assert!(chart.contains("width=\"280.0\""));
        assert!(chart.contains("width=\"22.4\""));
    }

    #[test]
    fn pending_orders_show_value_age_and_oldest() {
        let mut report = empty_day();
        report.pending = Some(PendingOrders {
            count: 3,
            value_by_currency: vec![CurrencyTotal { currency: "EUR".into(), orders: 3, amount: "12345.50".into() }],
            age_buckets: vec![
                AgeBucket { label: "< 1h".into(), orders: 1 },
                AgeBucket { label: "> 3d".into(), orders: 2 },
            ],
            oldest: Some(Order {
                id: "o-1".into(),
                customer_id: None,
                amount: "99.00".into(),
                currency: "EUR".into(),
                status: "pending".into(),
                created_at: "2025-03-10T08:00:00Z".into(),
                age_hours: 111.96,
            }),
        });
        let html = render(&report);
        assert!(html.contains("<td class=\"num\">12,345.50</td>"));
        assert_eq!(data(svg(&html, "pending-age-chart")), 2);
        assert!(html.contains("2 (66.7%)</text>"));
        assert!(html.contains("<td>o-1</td><td>–</td><td class=\"num\">99.00 EUR</td>"));
        assert!(html.contains("<td class=\"num\">112.0</td>"));
    }

    #[test]
    fn numbers_are_grouped_and_rounded() {
        assert_eq!(int(0), "0");
        assert_eq!(int(999), "999");
        assert_eq!(int(12_345), "12,345");
        assert_eq!(int(1_234_567), "1,234,567");
        assert_eq!(group_thousands("-1234.50"), "-1,234.50");
        assert_eq!(group_thousands("12.3.4"), "12.3.4");
        assert_eq!(percent(0.12345), "12.3%");
        assert_eq!(percent(f64::NAN), "–");
        assert_eq!(percent_of(1, 0), "–");
        assert_eq!(ms(Some(1234.56)), "1,234.6");
        assert_eq!(ms(None), "–");
    }

    #[test]
    fn axes_end_on_round_numbers() {
        assert_eq!(axis(0), (1, 1));
        assert_eq!(axis(7), (8, 2));
        assert_eq!(axis(100), (100, 20));
        assert_eq!(axis(12_345), (15_000, 5_000));
        assert_eq!(axis(u64::MAX).0, u64::MAX);
    }
}
