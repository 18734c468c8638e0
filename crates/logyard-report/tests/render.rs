//! Renders the HTML report of a realistic day with headless Chromium and checks that the
//! screenshot shows a page with charts in their colours, not a blank or broken one.
//!
//! Chromium is the binary named by `LOGYARD_CHROMIUM`, else `chromium` on PATH (Debian's
//! `chromium` package). Set `LOGYARD_REPORT_SCREENSHOT` to a file path to keep a copy of the
//! screenshot there; otherwise everything is written in temporary directories.

use std::fs::{self, File};
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use logyard_report::html;
use logyard_report::model::{
    AgeBucket, CurrencyTotal, DailyReport, ErrorGroup, FunnelStep, HourTraffic, Order, OrderAtRisk, PendingOrders,
    RouteStats, Summary,
};

/// The page's background and the chart colours of `html.rs`, as RGB.
const BACKGROUND: [u8; 3] = [255, 255, 255];
const BLUE: [u8; 3] = [0x25, 0x63, 0xeb];
const RED: [u8; 3] = [0xdc, 0x26, 0x26];
const AMBER: [u8; 3] = [0xd9, 0x77, 0x06];

const WIDTH: u32 = 1280;
const HEIGHT: u32 = 2400;

#[test]
fn report_renders_in_chromium_with_visible_charts() {
    let report = sample_day();
    let page = html::render(&report);
    let traffic = &page[page.find("<svg id=\"traffic-chart\"").expect("a traffic chart")..];
    let traffic = &traffic[..traffic.find("</svg>").expect("a closed traffic chart")];
    assert!(traffic.matches("class=\"datum\"").count() >= 24, "fewer than 24 marks in the traffic chart");

    let dir = tempfile::tempdir().expect("a temp dir");
    let html_path = dir.path().join("report.html");
    fs::write(&html_path, &page).expect("write the page");
    let png_path = dir.path().join("report.png");
    screenshot(&html_path, &png_path, dir.path());
    if let Some(keep) = std::env::var_os("LOGYARD_REPORT_SCREENSHOT") {
        fs::copy(&png_path, &keep).expect("copy the screenshot to LOGYARD_REPORT_SCREENSHOT");
    }

    let pixels = decode_rgb(&png_path);
    let total = pixels.len();
    let count = |colour: [u8; 3], tolerance: u8| pixels.iter().filter(|p| close(**p, colour, tolerance)).count();
    let drawn = total - count(BACKGROUND, 0);
    assert!(drawn * 100 > total * 5, "only {drawn} of {total} pixels differ from the background: a blank page?");
    // Bars and columns are solid rectangles of these colours (anti-aliased only at the edges).
    let (blue, red, amber) = (count(BLUE, 24), count(RED, 24), count(AMBER, 24));
    assert!(blue > 20_000, "only {blue} pixels of the bar blue");
    assert!(red > 3_000, "only {red} pixels of the 5xx red");
    assert!(amber > 500, "only {amber} pixels of the 4xx amber");
}

/// Takes a screenshot of the page at `html` into `png`, with a new Chromium profile (and home)
/// in `scratch`.
fn screenshot(html: &Path, png: &Path, scratch: &Path) {
    let chromium = std::env::var_os("LOGYARD_CHROMIUM").map_or_else(|| PathBuf::from("chromium"), PathBuf::from);
    let profile = scratch.join("profile");
    fs::create_dir(&profile).expect("create the profile dir");
    let log_path = scratch.join("chromium.log");
    let log = File::create(&log_path).expect("create the log");
    let spawned = Command::new(&chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--window-size={WIDTH},{HEIGHT}"))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", html.display()))
        .env("HOME", scratch)
        .env("XDG_CONFIG_HOME", scratch.join("config"))
        .env("XDG_CACHE_HOME", scratch.join("cache"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone the log"))
        .stderr(log)
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "Chromium not found ({}): install Debian's `chromium` package \
             (apt-get install chromium) or set LOGYARD_CHROMIUM to its binary",
            chromium.display()
        ),
        Err(e) => panic!("cannot run {}: {e}", chromium.display()),
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for Chromium") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("Chromium took over 2 minutes:\n{}", fs::read_to_string(&log_path).unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        status.success() && png.exists(),
        "Chromium failed ({status}) to take the screenshot:\n{}",
        fs::read_to_string(&log_path).unwrap_or_default()
    );
}

/// The screenshot's pixels as RGB, checking its size.
fn decode_rgb(path: &Path) -> Vec<[u8; 3]> {
    let mut decoder = png::Decoder::new(BufReader::new(File::open(path).expect("open the screenshot")));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buffer = vec![0; reader.output_buffer_size().expect("a screenshot that fits in memory")];
    let frame = reader.next_frame(&mut buffer).expect("a decodable PNG");
    assert_eq!((frame.width, frame.height), (WIDTH, HEIGHT), "screenshot size");
    let channels = match reader.output_color_type().0 {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        other => panic!("unexpected screenshot colour type {other:?}"),
    };
    buffer[..frame.buffer_size()].chunks_exact(channels).map(|p| [p[0], p[1], p[2]]).collect()
}

fn close(pixel: [u8; 3], colour: [u8; 3], tolerance: u8) -> bool {
    pixel.iter().zip(colour).all(|(p, c)| p.abs_diff(c) <= tolerance)
}

/// A storefront's day: traffic peaking at midday, a payment route that fails now and then,
/// pending orders in two currencies, two of them at risk.
fn sample_day() -> DailyReport {
    let traffic_by_hour: Vec<HourTraffic> = (0..24u8)
        .map(|hour| {
            let peak = (-(f64::from(hour) - 13.0).powi(2) / 18.0).exp();
            let requests = (300.0 + 4200.0 * peak).round() as u64;
            // An incident at 14:00 adds 5xx answers.
            let errors_5xx = requests / 150 + if hour == 14 { 260 } else { 0 };
            HourTraffic { hour, requests, errors_4xx: requests * 3 / 100, errors_5xx }
        })
        .collect();
    let requests: u64 = traffic_by_hour.iter().map(|h| h.requests).sum();
    let errors_5xx: u64 = traffic_by_hour.iter().map(|h| h.errors_5xx).sum();
    let errors_4xx: u64 = traffic_by_hour.iter().map(|h| h.errors_4xx).sum();

    let route = |route: &str, requests: u64, errors_5xx: u64, p50: f64| RouteStats {
        route: route.into(),
        requests,
        errors_5xx,
        error_rate: errors_5xx as f64 / requests as f64,
        p50_ms: Some(p50),
        p95_ms: Some(p50 * 3.4),
        p99_ms: Some(p50 * 7.9),
    };
    let routes = vec![
        route("/products/{id}", 18_420, 21, 38.2),
        route("/", 9_870, 4, 22.5),
        route("/search", 6_310, 12, 71.9),
        route("/cart", 4_120, 9, 30.4),
        route("/api/cart/items", 3_905, 18, 26.0),
        route("/checkout", 1_512, 35, 95.3),
        route("/api/payment", 1_231, 298, 412.7),
        route("/api/recommendations/for-customer/{customer_id}/similar-products", 2_080, 6, 144.0),
    ];
    let order =
        |id: &str, customer: Option<&str>, amount: &str, currency: &str, created_at: &str, age_hours: f64| Order {
            id: id.into(),
            customer_id: customer.map(Into::into),
            amount: amount.into(),
            currency: currency.into(),
            status: "pending".into(),
            created_at: created_at.into(),
            age_hours,
        };
    DailyReport {
        date: "2025-03-14".into(),
        generated_at: "2025-03-15T00:10:04Z".into(),
        stream: "storefront".into(),
        summary: Summary {
            requests,
            errors_5xx,
            errors_4xx,
            error_rate: errors_5xx as f64 / requests as f64,
            p50_ms: Some(34.8),
            p95_ms: Some(188.1),
            p99_ms: Some(702.4),
            sessions: 14_902,
        },
        traffic_by_hour,
        routes,
        top_errors: vec![
            ErrorGroup {
                route: "/api/payment".into(),
                status: 502,
                message: Some("payment provider: upstream connect error or disconnect/reset before headers".into()),
                count: 241,
            },
            ErrorGroup {
                route: "/api/payment".into(),
                status: 504,
                message: Some("payment provider timed out after 10000 ms".into()),
                count: 57,
            },
            ErrorGroup {
                route: "/checkout".into(),
                status: 500,
                message: Some("inventory: row lock timeout on sku <A&B \"gift\" set>".into()),
                count: 35,
            },
            ErrorGroup { route: "/products/{id}".into(), status: 500, message: None, count: 21 },
        ],
        funnel: vec![
            FunnelStep { step: "view".into(), sessions: 12_400 },
            FunnelStep { step: "cart".into(), sessions: 3_100 },
            FunnelStep { step: "checkout".into(), sessions: 1_420 },
            FunnelStep { step: "paid".into(), sessions: 1_180 },
        ],
        pending: Some(PendingOrders {
            count: 37,
            value_by_currency: vec![
                CurrencyTotal { currency: "EUR".into(), orders: 25, amount: "4310.75".into() },
                CurrencyTotal { currency: "USD".into(), orders: 12, amount: "1289.40".into() },
            ],
            age_buckets: vec![
                AgeBucket { label: "< 1h".into(), orders: 14 },
                AgeBucket { label: "1-6h".into(), orders: 11 },
                AgeBucket { label: "6-24h".into(), orders: 7 },
                AgeBucket { label: "1-3d".into(), orders: 3 },
                AgeBucket { label: "> 3d".into(), orders: 2 },
            ],
            oldest: Some(order("o-0012873", Some("c-88412"), "219.00", "EUR", "2025-03-09T17:42:10Z", 126.3)),
        }),
        orders_at_risk: vec![
            OrderAtRisk {
                order: order("o-0013307", Some("c-90114"), "89.90", "EUR", "2025-03-14T14:05:31Z", 9.9),
                session_id: "s-4f1c2a9e".into(),
                error_at: "2025-03-14T14:06:02Z".into(),
                route: "/api/payment".into(),
                status: 502,
            },
            OrderAtRisk {
                order: order("o-0013342", None, "1249.00", "USD", "2025-03-14T14:21:48Z", 9.6),
                session_id: "s-9b07d311".into(),
                error_at: "2025-03-14T14:22:15Z".into(),
                route: "/checkout".into(),
                status: 500,
            },
        ],
    }
}
