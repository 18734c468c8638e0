//! logyard-report: the daily report's contents and how they are written: [`html::render`]
//! makes one self-contained HTML page with inline SVG charts, [`csv::tables`] a CSV file per
//! table, and the report itself serializes to JSON (`report.json`).

pub mod csv;
pub mod html;
pub mod model;

pub use model::DailyReport;
