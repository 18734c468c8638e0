//! logyard-report: the daily report. [`daily::build`] asks SQL for the day's traffic, errors,
//! latency, checkout funnel and (from the orders database) pending orders and orders at
//! risk; [`html::render`] makes one self-contained HTML page with inline SVG charts,
//! [`csv::tables`] a CSV file per table, and the report itself serializes to JSON; [`store`]
//! writes them with a manifest last, so that a half-written report is never visible.

pub mod csv;
pub mod daily;
pub mod html;
pub mod model;
pub mod store;

pub use model::DailyReport;
