//! A deterministic generator of e-commerce storefront access logs.
//!
//! The same seed gives the same events on every machine and every version of this crate
//! (the random numbers come from SplitMix64, written out here). Shape:
//! - sessions that browse (home, search, categories, product pages with a few hot products),
//!   some add to the cart, some of those check out, most checkouts pay;
//! - order ids (`o-0000001`, ...) are given at checkout, in order; customer ids (`c-000001`,
//!   ...) come from a fixed pool, anonymous sessions have none;
//! - 1-3 % 5xx, more on the payment and checkout routes, with slow, timed-out latencies;
//! - latencies and response sizes drawn from log-normal distributions (heavy tails);
//! - traffic spread over the days with a daily rhythm (busier evenings);
//! - sessions that last minutes (a visitor reads a page for about 20 s), so that hundreds
//!   are open at once and their events interleave, each line reaching the log up to a
//!   second after its time, as lines shipped from many pods do;
//! - a random 128-bit trace id per event.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io::{self, Write};

/// SplitMix64: small, fast, and fully specified, so output never changes with a dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.f64().max(1e-12);
        let u2 = self.f64();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// Log-normal with the given median and shape.
    pub fn lognormal(&mut self, median: f64, sigma: f64) -> f64 {
        median * (sigma * self.normal()).exp()
    }

    /// Zipf-like rank in [0, n): low ranks are much more likely (hot items).
    pub fn zipf(&mut self, n: u64) -> u64 {
        // Inverse of a continuous power law with exponent ~1.1.
        let u = self.f64();
        let r = ((n as f64).powf(u) - 1.0).max(0.0);
        (r as u64).min(n - 1)
    }
}

/// Settings of a generated data set.
#[derive(Debug, Clone)]
pub struct Spec {
    pub seed: u64,
    pub events: u64,
    /// First day, UTC, at 00:00.
    pub start: chrono::NaiveDate,
    pub days: u32,
    pub customers: u64,
    pub products: u64,
}

impl Default for Spec {
    fn default() -> Self {
        Self {
            seed: 42,
            events: 1_000_000,
            start: chrono::NaiveDate::from_ymd_opt(2026, 11, 20).expect("valid date"),
            days: 3,
            customers: 50_000,
            products: 5_000,
        }
    }
}

const USER_AGENTS: [&str; 10] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:132.0) Gecko/20100101 Firefox/132.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "ShopApp/5.12.1 (iOS 18.1; iPhone15,2)",
    "ShopApp/5.12.0 (Android 14; SM-S918B)",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
];

const CATEGORIES: [&str; 12] = [
    "shoes", "jackets", "shirts", "bags", "watches", "toys", "kitchen", "garden", "books", "audio", "phones", "beauty",
];

const SEARCH_TERMS: [&str; 12] = [
    "sneakers",
    "winter+coat",
    "headphones",
    "gift",
    "sale",
    "lego",
    "coffee",
    "yoga+mat",
    "backpack",
    "usb-c",
    "dress",
    "socks",
];

const ERRORS: [(&str, &str); 6] = [
    ("upstream timeout", "upstream request timeout after 3000 ms: payments-service"),
    ("reset", "connection reset by peer while reading response header from upstream"),
    ("deadlock", "database error: deadlock detected while updating inventory"),
    ("pool", "database connection pool exhausted (max 50)"),
    ("oom", "worker killed: out of memory"),
    ("unavailable", "service unavailable: circuit breaker open for recommendations"),
];

/// One page or API call of a session.
#[derive(Debug, Clone, Copy)]
struct Step {
    method: &'static str,
    route: &'static str,
    /// Median latency (ms), median response size (bytes), base 5xx probability.
    latency: f64,
    bytes: f64,
    fail: f64,
}

const HOME: Step = Step { method: "GET", route: "/", latency: 35.0, bytes: 48_000.0, fail: 0.008 };
const SEARCH: Step = Step { method: "GET", route: "/search", latency: 120.0, bytes: 36_000.0, fail: 0.015 };
const CATEGORY: Step = Step { method: "GET", route: "/c/{category}", latency: 60.0, bytes: 40_000.0, fail: 0.01 };
const PRODUCT: Step = Step { method: "GET", route: "/products/{id}", latency: 45.0, bytes: 52_000.0, fail: 0.01 };
const RECOMMEND: Step =
    Step { method: "GET", route: "/api/recommendations", latency: 80.0, bytes: 6_000.0, fail: 0.03 };
const ADD_TO_CART: Step = Step { method: "POST", route: "/api/cart/items", latency: 55.0, bytes: 900.0, fail: 0.012 };
const CART: Step = Step { method: "GET", route: "/cart", latency: 40.0, bytes: 22_000.0, fail: 0.01 };
const CHECKOUT: Step = Step { method: "GET", route: "/checkout", latency: 90.0, bytes: 30_000.0, fail: 0.02 };
const PLACE_ORDER: Step = Step { method: "POST", route: "/api/checkout", latency: 250.0, bytes: 1_200.0, fail: 0.035 };
const PAY: Step = Step { method: "POST", route: "/api/payments", latency: 600.0, bytes: 700.0, fail: 0.05 };

/// Writes events as NDJSON.
#[derive(Debug)]
pub struct Generator {
    spec: Spec,
    rng: Rng,
    /// Events planned so far (by their sessions).
    planned: u64,
    next_order: u64,
    next_session: u64,
    start_micros: i64,
    span_micros: f64,
    orders: Vec<Order>,
    /// Planned events not yet written, the next to arrive first.
    pending: BinaryHeap<Reverse<Planned>>,
    /// The sessions that still have events to write, by number.
    sessions: HashMap<u64, Session>,
}

/// A visitor's session: many of them are open at once, so their events interleave in the log.
#[derive(Debug)]
struct Session {
    id: String,
    customer: Option<String>,
    agent: &'static str,
    /// Given when its checkout call is written.
    order: Option<u64>,
    /// Its events still to be written.
    left: usize,
}

/// An event its session has planned.
#[derive(Debug)]
struct Planned {
    /// When the line reaches the log: the event's time plus up to a second of the pod's and
    /// the shipper's buffering, so the log is in time order to within a second.
    arrives: i64,
    seq: u64,
    time: i64,
    session: u64,
    step: Step,
    path: String,
}

impl PartialEq for Planned {
    fn eq(&self, other: &Self) -> bool {
        (self.arrives, self.seq) == (other.arrives, other.seq)
    }
}

impl Eq for Planned {}

impl PartialOrd for Planned {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Planned {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.arrives, self.seq).cmp(&(other.arrives, other.seq))
    }
}

/// The most a session's start is moved from its even place in the days (see `time_of`).
const START_JITTER_MICROS: u64 = 2_000_000;
/// The most a line reaches the log after its event's time.
const ARRIVAL_DELAY_MICROS: u64 = 1_000_000;

/// An order placed in the generated logs, as the shop's database holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    /// `o-0000001`, as in the logs' `order_id`.
    pub id: String,
    /// `c-000123`, as in the logs; `None` for a guest checkout.
    pub customer_id: Option<String>,
    /// `paid` when the payment call succeeded, else `pending`.
    pub status: &'static str,
    /// In cents.
    pub amount_cents: u64,
    pub currency: &'static str,
    /// When `POST /api/checkout` was logged, microseconds since the epoch.
    pub created_at: i64,
    /// When the payment was logged (or `created_at`).
    pub updated_at: i64,
}

impl Order {
    /// The orders table's CSV header (see `scripts/orders/schema.sql`).
    pub const CSV_HEADER: &'static str = "id,customer_id,status,amount,currency,created_at,updated_at";

    pub fn csv_line(&self) -> String {
        let time = |t: i64| {
            chrono::DateTime::from_timestamp_micros(t)
                .expect("time in range")
                .format("%Y-%m-%dT%H:%M:%S%.6fZ")
                .to_string()
        };
        format!(
            "{},{},{},{}.{:02},{},{},{}",
            self.id,
            self.customer_id.as_deref().unwrap_or(""),
            self.status,
            self.amount_cents / 100,
            self.amount_cents % 100,
            self.currency,
            time(self.created_at),
            time(self.updated_at)
        )
    }
}

impl Generator {
    pub fn new(spec: Spec) -> Self {
        let start_micros = spec.start.and_hms_opt(0, 0, 0).expect("midnight").and_utc().timestamp_micros();
        let span_micros = f64::from(spec.days) * 86_400e6;
        Self {
            rng: Rng::new(spec.seed),
            spec,
            planned: 0,
            next_order: 1,
            next_session: 1,
            start_micros,
            span_micros,
            orders: Vec::new(),
            pending: BinaryHeap::new(),
            sessions: HashMap::new(),
        }
    }

    /// The orders placed in the events written so far, in id order.
    pub fn placed_orders(&self) -> &[Order] {
        &self.orders
    }

    /// Orders given so far (ids `o-0000001` up to this many).
    pub fn orders(&self) -> u64 {
        self.next_order - 1
    }

    /// Writes all events of the spec, in the order they reach the log.
    pub fn write_all(&mut self, out: &mut impl Write) -> io::Result<()> {
        let mut line = Vec::with_capacity(1024);
        while self.planned < self.spec.events {
            let start = self.session();
            // A later session starts at most the jitter before this one, so every event
            // arriving before that is final.
            self.write_arrived_before(start - START_JITTER_MICROS as i64, out, &mut line)?;
        }
        self.write_arrived_before(i64::MAX, out, &mut line)
    }

    /// The time of the n-th event: even progress through the days, with a daily rhythm
    /// folded in (the night is compressed, the evening stretched).
    fn time_of(&mut self, n: u64) -> i64 {
        let x = n as f64 / self.spec.events as f64;
        let day = (x * f64::from(self.spec.days)).floor();
        let frac = x * f64::from(self.spec.days) - day;
        // Map [0,1) onto the day so that density peaks around 20:00 UTC.
        let warped = frac - 0.08 * (2.0 * std::f64::consts::PI * (frac - 0.58)).sin();
        let micros = (day + warped.clamp(0.0, 0.999_999)) * 86_400e6;
        self.start_micros + micros.min(self.span_micros - 1.0) as i64 + self.rng.below(START_JITTER_MICROS) as i64
    }

    /// Plans a session's events, from its first at the time of the next event in the days'
    /// rhythm to its last a few minutes later, and returns its start. Calls that load with
    /// a page follow it within a fraction of a second, the payment its checkout within
    /// seconds, and a visitor reads a page for about 20 s before the next. A session ends
    /// early at the end of the last day.
    fn session(&mut self) -> i64 {
        let end = self.start_micros + self.span_micros as i64;
        let number = self.next_session;
        self.next_session += 1;
        let start = self.time_of(self.planned).min(end - 1);
        let rng = &mut self.rng;
        let id = format!("s-{:016x}", Rng::new(self.spec.seed ^ number.wrapping_mul(0x2545_F491_4F6C_DD1D)).next_u64());
        let customer =
            if rng.chance(0.65) { Some(format!("c-{:06}", 1 + rng.zipf(self.spec.customers))) } else { None };
        let agent = USER_AGENTS[rng.below(USER_AGENTS.len() as u64) as usize];
        let mut steps: Vec<(Step, String)> = Vec::with_capacity(16);
        steps.push((HOME, "/".into()));
        let browse = 1 + rng.below(8);
        let mut product = 0;
        for _ in 0..browse {
            match rng.below(10) {
                0..=1 => {
                    let q = SEARCH_TERMS[rng.below(SEARCH_TERMS.len() as u64) as usize];
                    steps.push((SEARCH, format!("/search?q={q}")));
                }
                2..=3 => {
                    let c = CATEGORIES[rng.below(CATEGORIES.len() as u64) as usize];
                    steps.push((CATEGORY, format!("/c/{c}")));
                }
                _ => {
                    product = 1 + rng.zipf(self.spec.products);
                    steps.push((PRODUCT, format!("/products/{product}")));
                    if rng.chance(0.5) {
                        steps.push((RECOMMEND, format!("/api/recommendations?product={product}")));
                    }
                }
            }
        }
        if product > 0 && rng.chance(0.3) {
            steps.push((ADD_TO_CART, "/api/cart/items".into()));
            steps.push((CART, "/cart".into()));
            if rng.chance(0.45) {
                steps.push((CHECKOUT, "/checkout".into()));
                steps.push((PLACE_ORDER, "/api/checkout".into()));
                if rng.chance(0.88) {
                    steps.push((PAY, "/api/payments".into()));
                }
            }
        }
        let mut time = start;
        let mut left = 0;
        for (i, (step, path)) in steps.into_iter().enumerate() {
            if i > 0 {
                let gap = match step.route {
                    "/api/recommendations" => 50_000 + rng.below(350_000),
                    "/cart" => 200_000 + rng.below(800_000),
                    // After the checkout call, so that its line always arrives first.
                    "/api/payments" => ARRIVAL_DELAY_MICROS + rng.below(2_000_000),
                    _ => (rng.lognormal(20e6, 0.9) as u64).min(600_000_000),
                };
                time += gap as i64;
            }
            if self.planned >= self.spec.events || time >= end {
                break;
            }
            let arrives = time + rng.below(ARRIVAL_DELAY_MICROS) as i64;
            self.pending.push(Reverse(Planned { arrives, seq: self.planned, time, session: number, step, path }));
            self.planned += 1;
            left += 1;
        }
        if left > 0 {
            self.sessions.insert(number, Session { id, customer, agent, order: None, left });
        }
        start
    }

    /// Writes the planned events that arrive before `before`, in the order they arrive.
    fn write_arrived_before(&mut self, before: i64, out: &mut impl Write, line: &mut Vec<u8>) -> io::Result<()> {
        while self.pending.peek().is_some_and(|Reverse(p)| p.arrives < before) {
            let Reverse(planned) = self.pending.pop().expect("peeked");
            let mut session = self.sessions.remove(&planned.session).expect("a planned event's session");
            if planned.step.route == "/api/checkout" {
                session.order = Some(self.next_order);
                self.next_order += 1;
            }
            let carries_order = matches!(planned.step.route, "/api/checkout" | "/api/payments");
            let order = session.order.filter(|_| carries_order);
            let status = self.event(
                out,
                line,
                planned.step,
                &planned.path,
                planned.time,
                &session.id,
                session.customer.as_deref(),
                session.agent,
                order,
            )?;
            if let Some(id) = order {
                self.record_order(id, planned.step.route, planned.time, status, session.customer.as_deref());
            }
            session.left -= 1;
            if session.left > 0 {
                self.sessions.insert(planned.session, session);
            }
        }
        Ok(())
    }

    /// Keeps the database's view of an order: placed at its checkout call, paid when its
    /// payment call succeeded. Amounts and currencies come from a generator of their own, so
    /// that the logs are the same with or without orders.
    fn record_order(&mut self, id: u64, route: &str, time: i64, status: u16, customer: Option<&str>) {
        match route {
            "/api/checkout" => {
                let mut rng = Rng::new(self.spec.seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15));
                let amount_cents = (rng.lognormal(6_500.0, 0.7) as u64).max(199);
                let currency = match rng.below(10) {
                    0..=6 => "EUR",
                    7..=8 => "USD",
                    _ => "GBP",
                };
                self.orders.push(Order {
                    id: format!("o-{id:07}"),
                    customer_id: customer.map(str::to_owned),
                    status: "pending",
                    amount_cents,
                    currency,
                    created_at: time,
                    updated_at: time,
                });
            }
            "/api/payments" if status < 400 => {
                if let Some(order) = self.orders.get_mut(id as usize - 1) {
                    order.status = "paid";
                    order.updated_at = time;
                }
            }
            _ => {}
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn event(
        &mut self,
        out: &mut impl Write,
        line: &mut Vec<u8>,
        step: Step,
        path: &str,
        time: i64,
        session: &str,
        customer: Option<&str>,
        agent: &str,
        order: Option<u64>,
    ) -> io::Result<u16> {
        let rng = &mut self.rng;
        // An incident window each day (13:00-13:20 UTC) multiplies failures on payments.
        let minute_of_day = (time.rem_euclid(86_400_000_000) / 60_000_000) as u32;
        let incident = (780..800).contains(&minute_of_day) && step.route == "/api/payments";
        let fail = if incident { 0.4 } else { step.fail };
        let (status, error) = if rng.chance(fail) {
            let (kind, message) = ERRORS[rng.below(ERRORS.len() as u64) as usize];
            let status = match kind {
                "upstream timeout" => 504,
                "reset" | "unavailable" => 503,
                "oom" => 502,
                _ => 500,
            };
            (status, Some(message))
        } else if step.route == "/products/{id}" && rng.chance(0.01) {
            (404, None)
        } else if step.method == "GET" && rng.chance(0.04) {
            (304, None)
        } else {
            (200, None)
        };
        let mut latency = rng.lognormal(step.latency, 0.6);
        if status == 504 {
            latency = 3000.0 + rng.f64() * 50.0;
        } else if status >= 500 {
            latency *= 3.0;
        }
        let bytes = if status == 304 {
            0
        } else if status >= 500 {
            180 + rng.below(200)
        } else {
            rng.lognormal(step.bytes, 0.4) as u64
        };
        let trace_hi = rng.next_u64();
        let trace_lo = rng.next_u64();
        let level = match status {
            500.. => "error",
            400..=499 => "warn",
            _ => "info",
        };

        line.clear();
        let ts = chrono::DateTime::from_timestamp_micros(time).expect("time in range");
        write!(line, "{{\"timestamp\":\"{}\"", ts.format("%Y-%m-%dT%H:%M:%S%.3fZ"))?;
        write!(
            line,
            ",\"method\":\"{}\",\"route\":\"{}\",\"path\":\"{}\",\"status\":{status}",
            step.method, step.route, path
        )?;
        write!(line, ",\"latency_ms\":{:.1},\"bytes\":{bytes}", latency)?;
        match customer {
            Some(c) => write!(line, ",\"customer_id\":\"{c}\"")?,
            None => line.extend_from_slice(b",\"customer_id\":null"),
        }
        match order {
            Some(o) => write!(line, ",\"order_id\":\"o-{o:07}\"")?,
            None => line.extend_from_slice(b",\"order_id\":null"),
        }
        write!(line, ",\"session_id\":\"{session}\",\"user_agent\":\"{agent}\"")?;
        write!(line, ",\"trace_id\":\"{trace_hi:016x}{trace_lo:016x}\",\"level\":\"{level}\"")?;
        match error {
            Some(e) => write!(line, ",\"message\":\"{e}\"")?,
            None => write!(line, ",\"message\":\"{} {} {status}\"", step.method, path)?,
        }
        line.extend_from_slice(b"}\n");
        out.write_all(line)?;
        Ok(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generate(events: u64, seed: u64) -> Vec<u8> {
        let mut out = Vec::new();
        Generator::new(Spec { events, seed, ..Spec::default() }).write_all(&mut out).unwrap();
        out
    }

    #[test]
    fn the_same_seed_gives_the_same_bytes() {
        assert_eq!(generate(2_000, 7), generate(2_000, 7));
        assert_ne!(generate(2_000, 7), generate(2_000, 8));
    }

    #[test]
    fn orders_match_the_logs() {
        let mut out = Vec::new();
        let mut generator = Generator::new(Spec { events: 50_000, seed: 3, ..Spec::default() });
        generator.write_all(&mut out).unwrap();
        let lines: Vec<serde_json::Value> =
            out.split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(|l| serde_json::from_slice(l).unwrap()).collect();
        let orders = generator.placed_orders();
        let checkouts: Vec<&serde_json::Value> = lines.iter().filter(|l| l["route"] == "/api/checkout").collect();
        assert_eq!(orders.len(), checkouts.len(), "one order per checkout call");
        for (order, line) in orders.iter().zip(&checkouts) {
            assert_eq!(line["order_id"], order.id.as_str());
            assert_eq!(line["customer_id"].as_str(), order.customer_id.as_deref());
        }
        let paid_calls = lines.iter().filter(|l| l["route"] == "/api/payments" && l["status"].as_u64().unwrap() < 400);
        let paid: std::collections::HashSet<&str> = paid_calls.map(|l| l["order_id"].as_str().unwrap()).collect();
        for order in orders {
            assert_eq!(order.status == "paid", paid.contains(order.id.as_str()), "{}", order.id);
        }
        assert!(orders.iter().any(|o| o.status == "pending") && orders.iter().any(|o| o.currency == "USD"));
        // The logs are the same bytes as without looking at orders.
        assert_eq!(out, generate(50_000, 3));
        assert!(orders[0].csv_line().starts_with("o-0000001,"));
    }

    #[test]
    fn the_shape_is_realistic() {
        let out = generate(200_000, 42);
        let lines: Vec<serde_json::Value> =
            out.split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(|l| serde_json::from_slice(l).unwrap()).collect();
        assert_eq!(lines.len(), 200_000);
        let errors = lines.iter().filter(|l| l["status"].as_u64().unwrap() >= 500).count() as f64 / 200_000.0;
        assert!((0.01..=0.03).contains(&errors), "5xx share {errors}");
        let paid = lines.iter().filter(|l| l["route"] == "/api/payments").count();
        let orders = lines.iter().filter(|l| l["route"] == "/api/checkout").count();
        assert!(paid > 0 && paid < orders, "{paid} payments of {orders} orders");
        let times: Vec<&str> = lines.iter().map(|l| l["timestamp"].as_str().unwrap()).collect();
        assert!(times.first().unwrap().starts_with("2026-11-20"));
        assert!(times.last().unwrap().starts_with("2026-11-22"));
        // The log is in time order to within a second, and sessions last minutes, so that
        // the lines of hundreds of them interleave.
        let micros: Vec<i64> =
            times.iter().map(|t| chrono::DateTime::parse_from_rfc3339(t).unwrap().timestamp_micros()).collect();
        let mut latest = micros[0];
        for (i, &t) in micros.iter().enumerate() {
            assert!(
                t > latest - ARRIVAL_DELAY_MICROS as i64,
                "line {i} is more than a second older than one before it"
            );
            latest = latest.max(t);
        }
        assert!(micros.windows(2).any(|w| w[1] < w[0]), "lines arrive slightly out of order");
        let mut spans: std::collections::HashMap<&str, (i64, i64)> = std::collections::HashMap::new();
        for (line, &t) in lines.iter().zip(&micros) {
            let span = spans.entry(line["session_id"].as_str().unwrap()).or_insert((t, t));
            *span = (span.0.min(t), span.1.max(t));
        }
        let mut lengths: Vec<i64> = spans.values().map(|(a, b)| b - a).collect();
        lengths.sort_unstable();
        let median = lengths[lengths.len() / 2];
        assert!((60_000_000..600_000_000).contains(&median), "median session {median} µs");
        let switches = lines.windows(2).filter(|w| w[0]["session_id"] != w[1]["session_id"]).count();
        assert!(switches * 4 > lines.len() * 3, "{switches} session changes in {} lines", lines.len());
        let mut lat: Vec<f64> = lines.iter().map(|l| l["latency_ms"].as_f64().unwrap()).collect();
        lat.sort_by(f64::total_cmp);
        let (p50, p99) = (lat[lat.len() / 2], lat[lat.len() * 99 / 100]);
        assert!(p99 > 8.0 * p50, "heavy tail: p50 {p50}, p99 {p99}");
    }
}
