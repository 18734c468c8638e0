//! logyard-alerts: alert rules over the logs, and what happens to them.
//!
//! A [`Rule`] names a query (SQL with time macros, or a search whose value is its count), how
//! often and over how long a window it runs, a [`Condition`] on its value, how long the
//! condition must hold, labels, a message [`Template`] and the receivers to tell. Each
//! evaluation covers one [`Window`]; its [`Observation`]s move the rule's [`RuleState`]
//! (pending → firing → resolved, per group).
//!
//! The [`Evaluator`] runs the rules: one replica at a time per rule (a lease in the storage),
//! each window once, recorded in the `logyard-alerts` table, notifications queued until
//! delivered. Everything but the evaluator loop is pure.

mod condition;
pub mod evaluator;
pub mod macros;
pub mod payload;
pub mod receivers;
mod rule;
mod run;
mod span;
mod state;
pub mod store;
pub mod template;
mod window;

pub use condition::{Condition, ConditionError, Op, Subject, change_percent};
pub use rule::{QueryKind, Rule, RuleError, SearchQuery, Severity};
pub use run::{AlertError, Evaluator, EvaluatorOptions, Preview, preview};
pub use state::{Alert, Observation, Outcome, Phase, RuleState, Step};
pub use store::{Ack, AlertStore, NewSilence, Silence, Source, StoreError};
pub use template::{Template, Values};
pub use window::{MAX_CATCH_UP, Window, Windows};
