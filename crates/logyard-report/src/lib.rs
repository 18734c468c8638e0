//! logyard-report: the daily report's contents and how they are written (HTML with inline
//! SVG charts, JSON, a CSV per table).

pub mod model;

pub use model::DailyReport;
