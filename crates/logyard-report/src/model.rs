//! What a daily report holds: plain data, filled by the report job from SQL over the logs and
//! the orders database, and written as HTML, JSON and CSV. `report.json` is this, serialized.

use serde::{Deserialize, Serialize};

/// The daily report of one UTC day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DailyReport {
    /// `YYYY-MM-DD`.
    pub date: String,
    /// When the report was made, RFC 3339.
    pub generated_at: String,
    /// The stream the web traffic comes from (e.g. `storefront`).
    pub stream: String,
    pub summary: Summary,
    /// 24 entries, hours 0-23 (UTC), hours without traffic included with zeros.
    pub traffic_by_hour: Vec<HourTraffic>,
    /// Busiest routes first.
    pub routes: Vec<RouteStats>,
    /// Routes and messages of 5xx answers, most frequent first.
    pub top_errors: Vec<ErrorGroup>,
    /// The checkout funnel, in step order.
    pub funnel: Vec<FunnelStep>,
    /// `None` when no orders database is configured.
    pub pending: Option<PendingOrders>,
    /// Orders still pending whose session hit a 5xx at checkout; oldest first.
    pub orders_at_risk: Vec<OrderAtRisk>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub requests: u64,
    pub errors_5xx: u64,
    pub errors_4xx: u64,
    /// 5xx answers / requests (0 when there were none).
    pub error_rate: f64,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub sessions: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HourTraffic {
    /// 0-23.
    pub hour: u8,
    pub requests: u64,
    pub errors_4xx: u64,
    pub errors_5xx: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteStats {
    pub route: String,
    pub requests: u64,
    pub errors_5xx: u64,
    /// 5xx answers / requests.
    pub error_rate: f64,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorGroup {
    pub route: String,
    pub status: u16,
    /// The error message logged with it, if any.
    pub message: Option<String>,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunnelStep {
    /// `view`, `cart`, `checkout`, `paid`.
    pub step: String,
    /// Distinct sessions that reached the step.
    pub sessions: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingOrders {
    pub count: u64,
    /// Total value per currency, largest count first. Amounts are decimal strings, exact
    /// (e.g. `"1234.50"`).
    pub value_by_currency: Vec<CurrencyTotal>,
    /// Fixed buckets in order: `< 1h`, `1-6h`, `6-24h`, `1-3d`, `> 3d`.
    pub age_buckets: Vec<AgeBucket>,
    pub oldest: Option<Order>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurrencyTotal {
    pub currency: String,
    pub orders: u64,
    pub amount: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgeBucket {
    pub label: String,
    pub orders: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    pub id: String,
    pub customer_id: Option<String>,
    pub amount: String,
    pub currency: String,
    pub status: String,
    /// RFC 3339.
    pub created_at: String,
    /// Hours between `created_at` and the end of the report's day (or now, if earlier).
    pub age_hours: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderAtRisk {
    pub order: Order,
    pub session_id: String,
    /// The first 5xx at checkout in that session: when (RFC 3339), where, which status.
    pub error_at: String,
    pub route: String,
    pub status: u16,
}
