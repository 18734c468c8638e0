//! Deterministic, realistic ALB access-log text for tests and benchmarks (`logyard-bench
//! alb`, the ALB import tests), with the lines every case of the format takes.

/// `n` lines, each ending with `\n`; the same text for the same `seed`. They cover every
/// request type (http, https, h2, grpcs, ws, wss), IPv4 and IPv6 clients (with and
/// without brackets), requests that reached no target (`-`, timings of `-1`, the
/// unreadable request `"- - -"`), Lambda targets and failures, redirects, WAF blocks,
/// user agents with spaces and escaped quotes, desync classifications, request transforms,
/// the shorter lines of older files (25, 27, 29 and 30 fields) and lines with fields newer
/// than [`logyard_core::alb::KNOWN_FIELDS`]. Every line parses.
pub fn lines(n: usize, seed: u64) -> String {
    let mut rng = Rng(seed);
    let mut out = String::with_capacity(n * 560);
    // 2026-09-29T00:00:00Z, then a request every 20 ms on average.
    let mut t: i64 = 1_790_640_000_000_000;
    for _ in 0..n {
        t += rng.below(40_000) as i64;
        line(&mut out, &mut rng, t);
    }
    out
}

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    fn hex(&mut self, n: usize) -> String {
        (0..n).map(|_| char::from(b"0123456789abcdef"[self.below(16) as usize])).collect()
    }
}

const USER_AGENTS: [&str; 8] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
    "curl/8.4.0",
    "python-requests/2.32.3",
    "okhttp/4.12.0",
    r#"Mozilla/5.0 (compatible; "Example Crawler" 2.1; +https://crawler.example/bot)"#,
    r#"Custom "Agent" \ v1"#,
];

const PATHS: [&str; 8] = [
    "/",
    "/index.html",
    "/api/v1/users/{n}",
    "/api/v1/orders?page={n}&sort=desc",
    "/static/app.{hex}.js",
    "/search?q=caf%C3%A9+au+lait&lang=fr",
    "/login",
    "/images/{n}.png",
];

fn rfc3339(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        .unwrap_or_default()
}

/// A quoted field, with `"` and `\` escaped.
fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn seconds(millis: u64) -> String {
    format!("{}.{:03}", millis / 1000, millis % 1000)
}

#[derive(Clone, Copy, PartialEq)]
enum Case {
    /// The load balancer could not read the request.
    Malformed,
    /// Blocked by AWS WAF.
    WafBlock,
    Redirect,
    Lambda {
        failed: bool,
    },
    Forward,
}

fn line(out: &mut String, rng: &mut Rng, t: i64) {
    let ty = rng.pick(&["https", "https", "https", "h2", "h2", "http", "http", "grpcs", "ws", "wss"]);
    let tls = !matches!(ty, "http" | "ws");
    let (scheme, port) = if tls { ("https", 443) } else { ("http", 80) };
    let plain = matches!(ty, "http" | "https" | "h2");
    let case = match rng.below(100) {
        0..3 => Case::Malformed,
        3..5 if plain => Case::WafBlock,
        5..8 if plain => Case::Redirect,
        8..12 if plain => Case::Lambda { failed: rng.percent(30) },
        _ => Case::Forward,
    };
    let reaches_target = matches!(case, Case::Forward);

    let client = match rng.below(100) {
        0..85 => format!(
            "{}.{}.{}.{}:{}",
            rng.pick(&[203, 198, 192, 100, 52]),
            rng.below(256),
            rng.below(256),
            1 + rng.below(254),
            1024 + rng.below(64_000)
        ),
        85..97 => {
            format!("2001:db8:{:x}::{:x}:{}", rng.below(0xffff), 1 + rng.below(0xffff), 1024 + rng.below(64_000))
        }
        _ => format!("[2001:db8::{:x}]:{}", 1 + rng.below(0xffff), 1024 + rng.below(64_000)),
    };
    let target_port = match ty {
        "ws" | "wss" => 8010,
        "grpcs" => 50051,
        _ => rng.pick(&[80, 8080, 9000]),
    };
    let target = format!("10.0.{}.{}:{}", rng.below(4), 1 + rng.below(254), target_port);

    let mut elb_status = match (case, ty) {
        (Case::Malformed, _) => rng.pick(&[400, 400, 408, 460]),
        (Case::WafBlock, _) => 403,
        (Case::Redirect, _) => rng.pick(&[301, 302]),
        (Case::Lambda { failed: true }, _) => 502,
        (_, "ws" | "wss") => 101,
        (_, "grpcs") => 200,
        _ => rng.pick(&[200, 200, 200, 200, 200, 200, 200, 200, 201, 204, 304, 304, 404, 404, 500, 502, 503]),
    };
    let target_answered = match case {
        Case::Forward => !matches!(elb_status, 502 | 503),
        Case::Lambda { failed } => !failed,
        _ => false,
    };
    let timings = match case {
        Case::Malformed | Case::WafBlock | Case::Redirect => "-1 -1 -1".to_owned(),
        _ if !target_answered => format!("{} -1 -1", seconds(rng.below(2))),
        _ => format!("{} {} {}", seconds(rng.below(2)), seconds(1 + rng.below(2_500)), seconds(rng.below(2))),
    };
    if case == Case::Forward && !target_answered && elb_status == 200 {
        elb_status = 502;
    }
    let target_status = if target_answered { elb_status.to_string() } else { "-".to_owned() };

    let n = rng.below(100_000);
    let path = rng.pick(&PATHS).replace("{n}", &n.to_string()).replace("{hex}", &rng.hex(8));
    let request = match (case, ty) {
        (Case::Malformed, _) if rng.percent(50) => "- - -".to_owned(),
        (Case::Malformed, _) => format!("- {scheme}://www.example.com:{port}- -"),
        (_, "grpcs") => "POST https://grpc.example.com:443/helloworld.Greeter/SayHello HTTP/2.0".to_owned(),
        (_, "ws" | "wss") => format!("GET {scheme}://www.example.com:{port}/socket?room={n} HTTP/1.1"),
        _ => format!(
            "{} {scheme}://www.example.com:{port}{path} {}",
            rng.pick(&["GET", "GET", "GET", "GET", "GET", "GET", "POST", "POST", "PUT", "DELETE", "HEAD", "OPTIONS"]),
            if ty == "h2" { "HTTP/2.0" } else { "HTTP/1.1" }
        ),
    };
    let user_agent = match (case, ty) {
        (Case::Malformed, _) => "-",
        (_, "grpcs") => "grpc-go/1.64.0",
        (_, "ws" | "wss") if rng.percent(50) => "-",
        _ => rng.pick(&USER_AGENTS),
    };
    let ssl =
        if tls { rng.pick(&["ECDHE-RSA-AES128-GCM-SHA256 TLSv1.2", "TLS_AES_128_GCM_SHA256 TLSv1.3"]) } else { "- -" };
    let group = match (case, ty) {
        (Case::Malformed | Case::WafBlock | Case::Redirect, _) => "-",
        (Case::Lambda { .. }, _) => TARGET_GROUPS[0],
        (_, "grpcs") => TARGET_GROUPS[1],
        (_, "ws" | "wss") => TARGET_GROUPS[2],
        _ => rng.pick(&TARGET_GROUPS[3..]),
    };
    let trace = match case {
        Case::Malformed => "-".to_owned(),
        _ if rng.percent(10) => {
            format!("Self=1-{}-{};Root=1-{}-{}", rng.hex(8), rng.hex(24), rng.hex(8), rng.hex(24))
        }
        _ => format!("Root=1-{}-{}", rng.hex(8), rng.hex(24)),
    };
    let (domain, cert) = if tls && case != Case::Malformed {
        (
            rng.pick(&["www.example.com", "api.example.com", "-"]),
            rng.pick(&[
                "arn:aws:acm:us-east-2:123456789012:certificate/12345678-1234-1234-1234-123456789012",
                "session-reused",
            ]),
        )
    } else {
        ("-", "-")
    };
    let priority = if case == Case::Malformed { "-".to_owned() } else { rng.pick(&[0, 0, 1, 2, 3, 10]).to_string() };
    let created = rfc3339(t - rng.below(3_000_000) as i64);
    let actions = match case {
        Case::Malformed => "-",
        Case::WafBlock => "waf",
        Case::Redirect => "redirect",
        Case::Lambda { .. } => "forward",
        Case::Forward => rng.pick(&["forward", "forward", "forward", "forward", "waf,forward", "authenticate,forward"]),
    };
    let redirect =
        if case == Case::Redirect { format!("https://www.example.com:443/new{path}") } else { "-".to_owned() };
    let error = match case {
        Case::Lambda { failed: true } => rng.pick(&["LambdaUnhandled", "LambdaInvalidResponse", "LambdaThrottling"]),
        _ => "-",
    };
    let (targets, statuses) = if reaches_target { (target.as_str(), target_status.as_str()) } else { ("-", "-") };
    let (class, reason) = if rng.percent(4) {
        rng.pick(&[
            ("Ambiguous", "UndefinedContentLengthSemantics"),
            ("Acceptable", "NonCompliantHeader"),
            ("Severe", "BadTransferEncoding"),
        ])
    } else {
        ("-", "-")
    };
    let conn = format!("TID_{}", rng.hex(32));
    let (host, uri, transform) = if plain && reaches_target && rng.percent(5) {
        ("internal.example.com".to_owned(), format!("/v2{path}"), "TransformSuccess")
    } else {
        ("-".to_owned(), "-".to_owned(), "-")
    };

    // 30 entries make 33 fields: `timings` holds three, `ssl` two.
    let fields: [String; 30] = [
        ty.to_owned(),
        rfc3339(t),
        "app/my-loadbalancer/50dc6c495c0c9188".to_owned(),
        client,
        if reaches_target { target.clone() } else { "-".to_owned() },
        timings,
        elb_status.to_string(),
        target_status.clone(),
        rng.below(2_000).to_string(),
        // The load balancer's own answers are small.
        if reaches_target { 200 + rng.below(200_000) } else { 100 + rng.below(400) }.to_string(),
        quoted(&request),
        quoted(user_agent),
        ssl.to_owned(),
        group.to_owned(),
        quoted(&trace),
        quoted(domain),
        quoted(cert),
        priority,
        created,
        quoted(actions),
        quoted(&redirect),
        quoted(error),
        quoted(targets),
        quoted(statuses),
        quoted(class),
        quoted(reason),
        conn,
        quoted(&host),
        quoted(&uri),
        quoted(transform),
    ];
    // Older files stop after 25, 27, 29 or 30 fields (entries 22, 24, 26, 27 here);
    // files newer than this parser have more.
    let (kept, extra) = match rng.below(100) {
        0..8 => (22, false),
        8..16 => (24, false),
        16..22 => (26, false),
        22..28 => (27, false),
        28..33 => (30, true),
        _ => (30, false),
    };
    for (i, field) in fields[..kept].iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(field);
    }
    if extra {
        out.push_str(" 10.0.0.9 \"-\" \"-\"");
    }
    out.push('\n');
}

/// The load balancer's target groups, as a listener's rules forward to them: a Lambda
/// function, a gRPC service, websockets, and the web and API services (several each, as
/// for blue/green deployments). A real load balancer has a handful; each line names one.
const TARGET_GROUPS: [&str; 7] = [
    "arn:aws:elasticloadbalancing:us-east-2:123456789012:targetgroup/lambda-fn/2ba5d6c0e1f34a77",
    "arn:aws:elasticloadbalancing:us-east-2:123456789012:targetgroup/grpc/5e0c4ab1d2f3e6a8",
    "arn:aws:elasticloadbalancing:us-east-2:123456789012:targetgroup/sockets/8d1f2e3c4b5a6978",
    "arn:aws:elasticloadbalancing:us-east-2:123456789012:targetgroup/web-blue/943f017f100becff",
    "arn:aws:elasticloadbalancing:us-east-2:123456789012:targetgroup/web-green/1c9e4d7a02b8f365",
    "arn:aws:elasticloadbalancing:us-east-2:123456789012:targetgroup/api-blue/73e2d6bc24d8a067",
    "arn:aws:elasticloadbalancing:us-east-2:123456789012:targetgroup/api-green/b04f61a9e8c2d713",
];

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use logyard_core::alb::{EXTRA_COLUMN, parse};

    fn null_count(b: &arrow::record_batch::RecordBatch, column: &str) -> usize {
        b.column_by_name(column).unwrap().null_count()
    }

    #[test]
    fn fixture_lines_all_parse() {
        let p = parse(lines(10_000, 1).as_bytes());
        assert_eq!((p.rows, p.rejected), (10_000, 0), "{:?}", p.errors.first());
        assert_eq!(p.batch.num_rows(), 10_000);
    }

    #[test]
    fn fixture_lines_are_deterministic_and_cover_the_cases() {
        assert_eq!(lines(200, 7), lines(200, 7));
        assert_ne!(lines(200, 7), lines(200, 8));
        assert_eq!(lines(200, 7).lines().count(), 200);
        let p = parse(lines(5_000, 2).as_bytes());
        assert_eq!((p.rows, p.rejected), (5_000, 0), "{:?}", p.errors.first());
        let b = &p.batch;
        let types = b.column_by_name("type").unwrap().as_string::<i32>();
        for ty in ["http", "https", "h2", "grpcs", "ws", "wss"] {
            assert!(types.iter().any(|t| t == Some(ty)), "{ty}");
        }
        let count = |column: &str, f: &dyn Fn(&str) -> bool| {
            b.column_by_name(column).unwrap().as_string::<i32>().iter().flatten().filter(|v| f(v)).count()
        };
        assert!(count("client_ip", &|ip| ip.contains(':')) > 0, "IPv6 clients");
        assert!(count("user_agent", &|ua| ua.contains('"')) > 0, "quotes in user agents");
        assert!(count("user_agent", &|ua| ua.contains('\\')) > 0, "backslashes in user agents");
        assert!(count("error_reason", &|e| e.starts_with("Lambda")) > 0);
        assert!(count("actions_executed", &|a| a == "redirect") > 0);
        assert!(count("classification", &|_| true) > 0);
        assert!(count("transformed_host", &|_| true) > 0);
        assert!(count(EXTRA_COLUMN, &|_| true) > 0, "fields newer than the parser");
        let groups = b.column_by_name("target_group_arn").unwrap().as_string::<i32>();
        let groups: std::collections::BTreeSet<&str> = groups.iter().flatten().collect();
        assert_eq!(groups.len(), TARGET_GROUPS.len(), "a load balancer's few target groups: {groups:?}");
        for c in [
            "target_ip",
            "request_processing_time",
            "request_method",
            "conn_trace_id",
            "target_port_list",
            "transformed_uri",
        ] {
            let nulls = null_count(b, c);
            assert!(nulls > 0 && nulls < 5_000, "{c}: {nulls}");
        }
    }
}
