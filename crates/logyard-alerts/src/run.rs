//! The evaluator's loop: leases, windows, queries, the history table and deliveries (see
//! [`crate::evaluator`] for the protocol).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type};
use logyard_core::StreamName;
use logyard_core::parse::{BodyFormat, parse_body};
use logyard_ingest::build::build_batches;
use logyard_query::{QueryEngine, QueryError, SearchRequest};
use logyard_storage::tables::BuildFn;
use logyard_storage::{EntryLog, FencedOutcome, StorageError, Tables};
use serde_json::json;
use tokio::sync::watch;

use crate::evaluator::{Deliver, Entry, HISTORY_STREAM, LEASES_DIR, Notice, PendingWindow, deliver_due};
use crate::macros;
use crate::rule::{QueryKind, Rule, RuleError};
use crate::state::{Observation, Outcome, RuleState, Step};
use crate::store::{AlertStore, Silence};
use crate::template::{Template, Values};
use crate::window::{Window, Windows};

/// Windows evaluated per rule per pass (a rule far behind catches up over several passes,
/// its lease renewed between them).
const WINDOWS_PER_PASS: usize = 60;

/// How the evaluator runs.
#[derive(Debug, Clone)]
pub struct EvaluatorOptions {
    /// This replica's name in the leases.
    pub owner: String,
    /// A lease not renewed for this long moves to another replica.
    pub lease: Duration,
    /// How long after a window's end it is evaluated: the ingest flush interval and a margin.
    pub settle: Duration,
    /// How often the rules are looked at.
    pub tick: Duration,
    /// The history table's column limit (as any stream's).
    pub max_columns: usize,
}

/// Why a pass over a rule failed (it is tried again at the next tick).
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("alert rule {rule:?}: query: {source}")]
    Query { rule: String, source: QueryError },
    #[error("alert rule {rule:?}: {message}")]
    Rule { rule: String, message: String },
}

impl logyard_core::ServiceError for AlertError {
    fn kind(&self) -> logyard_core::ErrorKind {
        match self {
            AlertError::Storage(e) => e.kind(),
            AlertError::Query { source, .. } => source.kind(),
            AlertError::Rule { .. } => logyard_core::ErrorKind::BadRequest,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            AlertError::Storage(e) => e.code(),
            AlertError::Query { source, .. } => source.code(),
            AlertError::Rule { .. } => "bad_alert_rule",
        }
    }
}

/// A rule ready to evaluate.
struct Ready {
    rule: Rule,
    template: Template,
    windows: Windows,
    /// The rule as JSON: a changed rule starts with a fresh state.
    definition: String,
    log: EntryLog,
    app_id: String,
    /// The rule's latest entry as this replica last read or wrote it.
    latest: tokio::sync::Mutex<Option<(u64, Entry)>>,
}

impl Ready {
    fn new(rule: Rule, options: &EvaluatorOptions, tables: &Tables) -> Result<Self, RuleError> {
        let template = rule.template()?;
        let windows = Windows::new(rule.every, rule.window(), options.settle);
        let definition = serde_json::to_string(&rule).expect("a rule serializes");
        let log = EntryLog::new(tables.storage(), &format!("{LEASES_DIR}/{}", rule.name));
        let app_id = format!("alert:{}", rule.name);
        Ok(Self { rule, template, windows, definition, log, app_id, latest: Default::default() })
    }
}

/// Evaluates every rule, once per window across the replicas that run it.
pub struct Evaluator {
    store: AlertStore,
    /// The rules as last read from the configuration and the storage, by name.
    rules: Mutex<BTreeMap<String, Arc<Ready>>>,
    /// The silences as last read.
    silences: Mutex<Vec<Silence>>,
    query: QueryEngine,
    tables: Arc<Tables>,
    deliver: Arc<dyn Deliver>,
    options: EvaluatorOptions,
    history: StreamName,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Evaluator {
    /// Evaluates the rules of `store` (the configured ones, checked when the store was made,
    /// and those added through the API, read again at every tick).
    pub fn new(
        store: AlertStore,
        query: QueryEngine,
        tables: Arc<Tables>,
        deliver: Arc<dyn Deliver>,
        options: EvaluatorOptions,
    ) -> Self {
        let history = StreamName::new(HISTORY_STREAM).expect("a valid stream name");
        Self { store, rules: Mutex::default(), silences: Mutex::default(), query, tables, deliver, options, history }
    }

    /// Runs until `shutdown` turns true, then releases the leases it holds.
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) {
        loop {
            for rule in self.refresh().await {
                if *shutdown.borrow() {
                    break;
                }
                if let Err(e) = self.pass(&rule).await {
                    tracing::warn!(rule = %rule.rule.name, error = %e, "alert rule: evaluation failed; trying again");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.options.tick) => {}
                _ = shutdown.wait_for(|stop| *stop) => break,
            }
        }
        let rules: Vec<Arc<Ready>> = self.rules.lock().expect("not poisoned").values().cloned().collect();
        self.release_all(&rules).await;
    }

    async fn release_all(&self, rules: &[Arc<Ready>]) {
        for rule in rules {
            if let Err(e) = self.release(rule).await {
                tracing::debug!(rule = %rule.rule.name, error = %e, "alert rule: releasing the lease failed");
            }
        }
    }

    /// Reads the rules and silences again (a rule whose definition is unchanged keeps what
    /// this replica knows of it); a rule gone is let go. On a storage error the last ones
    /// read stay.
    async fn refresh(&self) -> Vec<Arc<Ready>> {
        match self.store.silences(now_ms()).await {
            Ok(silences) => *self.silences.lock().expect("not poisoned") = silences,
            Err(e) => tracing::warn!(error = %e, "alert silences cannot be read; keeping the last ones read"),
        }
        let rules = match self.store.rules().await {
            Ok(rules) => rules,
            Err(e) => {
                tracing::warn!(error = %e, "alert rules cannot be read; keeping the last ones read");
                return self.rules.lock().expect("not poisoned").values().cloned().collect();
            }
        };
        let (current, gone) = {
            let mut held = self.rules.lock().expect("not poisoned");
            let mut next = BTreeMap::new();
            for (rule, _) in rules {
                let definition = serde_json::to_string(&rule).expect("a rule serializes");
                match held.remove(&rule.name) {
                    Some(ready) if ready.definition == definition => {
                        next.insert(rule.name.clone(), ready);
                    }
                    _ => match Ready::new(rule, &self.options, &self.tables) {
                        Ok(ready) => {
                            next.insert(ready.rule.name.clone(), Arc::new(ready));
                        }
                        Err(e) => tracing::warn!(error = %e, "alert rule skipped"),
                    },
                }
            }
            let gone: Vec<Arc<Ready>> = std::mem::replace(&mut *held, next).into_values().collect();
            (held.values().cloned().collect::<Vec<_>>(), gone)
        };
        self.release_all(&gone).await;
        current
    }

    /// Hands a held lease over at once (shutdown).
    async fn release(&self, r: &Ready) -> Result<(), AlertError> {
        if let Some((index, entry)) = r.log.latest::<Entry>().await?
            && entry.owner == self.options.owner
            && entry.lease_until_ms > now_ms()
        {
            r.log.write(index + 1, &Entry { lease_until_ms: 0, ..entry }).await?;
        }
        Ok(())
    }

    /// Writes entry `index` of a rule's log; `false` when another replica wrote it first
    /// (then the log is read again next time).
    async fn write(&self, r: &Ready, index: u64, entry: &Entry) -> Result<bool, AlertError> {
        let written = r.log.write(index, entry).await?;
        *r.latest.lock().await = written.then(|| (index, entry.clone()));
        Ok(written)
    }

    /// One look at a rule: take or renew its lease, settle a pending window, evaluate the
    /// windows that are due, deliver what is queued. Nothing is read or written while this
    /// replica holds a fresh lease and has nothing to do, or another one holds the lease.
    async fn pass(&self, r: &Ready) -> Result<(), AlertError> {
        let now = now_ms();
        let Some((mut index, mut entry)) = self.claim(r, now).await? else { return Ok(()) };
        let silences = self.silences.lock().expect("not poisoned").clone();
        let lease = ms(self.options.lease);
        let (due, skipped) = r.windows.due(entry.done, now);
        if skipped > 0 {
            tracing::warn!(rule = %r.rule.name, skipped, "alert rule: windows more than a day behind are skipped");
        }
        for k in due.take(WINDOWS_PER_PASS) {
            if now_ms() > entry.lease_until_ms - lease / 2 {
                entry.lease_until_ms = now_ms() + lease;
                if !self.advance(r, &mut index, &entry).await? {
                    return Ok(());
                }
            }
            if !self.evaluate_window(r, k, skipped, &silences, &mut index, &mut entry).await? {
                return Ok(());
            }
        }
        if deliver_due(&mut entry.outbox, &self.deliver, now_ms()).await && !self.advance(r, &mut index, &entry).await?
        {
            tracing::debug!(rule = %r.rule.name, "alert rule: lease lost while delivering");
        }
        Ok(())
    }

    /// Writes `entry` after entry `index`, which then names it; `false` when another replica
    /// wrote there first.
    async fn advance(&self, r: &Ready, index: &mut u64, entry: &Entry) -> Result<bool, AlertError> {
        let written = self.write(r, *index + 1, entry).await?;
        if written {
            *index += 1;
        }
        Ok(written)
    }

    /// Takes or renews the rule's lease and settles a window left pending; `None` when
    /// another replica holds the lease, or this one holds it with nothing to do.
    async fn claim(&self, r: &Ready, now: i64) -> Result<Option<(u64, Entry)>, AlertError> {
        let lease = ms(self.options.lease);
        let cached = r.latest.lock().await.clone();
        let (mut index, latest) = match cached {
            Some((_, e)) if e.owner != self.options.owner && e.lease_until_ms > now => return Ok(None),
            Some((i, e)) if e.owner == self.options.owner && e.lease_until_ms - now > lease / 2 => (i, e),
            _ => r.log.latest::<Entry>().await?.unwrap_or_default(),
        };
        if latest.owner != self.options.owner && latest.lease_until_ms > now {
            *r.latest.lock().await = Some((index, latest));
            return Ok(None);
        }
        let idle = latest.owner == self.options.owner
            && latest.lease_until_ms - now > lease / 2
            && latest.pending.is_none()
            && latest.definition == r.definition
            && r.windows.due(latest.done, now).0.is_empty()
            && !latest.outbox.iter().any(|n| n.next_try_ms <= now);
        if idle {
            return Ok(None);
        }
        let mut entry = Entry { owner: self.options.owner.clone(), lease_until_ms: now + lease, ..latest };
        if let Some(p) = entry.pending.take() {
            let committed = self.tables.transaction_version(&self.history, &r.app_id).await?;
            if committed == Some(p.index) {
                entry.done = Some(p.index);
                entry.state = p.state;
                queue(&mut entry.outbox, p.notices);
            }
        }
        if entry.definition != r.definition {
            // A new or changed rule: its alerts start again (windows go on without repeats).
            entry.definition = r.definition.clone();
            entry.state = Default::default();
        }
        Ok(self.advance(r, &mut index, &entry).await?.then_some((index, entry)))
    }

    /// Evaluates window `k`: its state written as pending, its rows appended to the history
    /// under the window's transaction, then the state made current and its notices queued.
    /// `false` when another replica took over meanwhile.
    async fn evaluate_window(
        &self,
        r: &Ready,
        k: i64,
        skipped: i64,
        silences: &[Silence],
        index: &mut u64,
        entry: &mut Entry,
    ) -> Result<bool, AlertError> {
        let window = r.windows.get(k);
        let observed = self.observe(r, window, entry).await?;
        let mut state = entry.state.clone();
        let steps = state.step(window.to_ms, r.rule.for_, &observed);
        let notices = self.notices(r, window, &steps, &mut state, silences, now_ms());
        let intent = Entry {
            pending: Some(PendingWindow { index: k, state: state.clone(), notices: notices.clone() }),
            ..entry.clone()
        };
        if !self.advance(r, index, &intent).await? {
            return Ok(false);
        }
        let rows = self.history_rows(r, window, &steps, &state, &notices, skipped);
        let max_columns = self.options.max_columns;
        let build: BuildFn = Arc::new(move |schema, _| {
            let parsed = parse_body(rows.as_bytes(), BodyFormat::Ndjson, 0);
            let payload = parsed.events.finish();
            build_batches(schema, [(0u64, &payload[..])], max_columns)
        });
        match self.tables.append_after(&self.history, &r.app_id, entry.done, k, build).await? {
            FencedOutcome::Appended(_) => {}
            // Another replica recorded this window meanwhile: the next pass settles it.
            FencedOutcome::Superseded { .. } => {
                *r.latest.lock().await = None;
                return Ok(false);
            }
        }
        queue(&mut entry.outbox, notices);
        entry.done = Some(k);
        entry.state = state;
        entry.pending = None;
        self.advance(r, index, entry).await
    }

    /// What the window's query says, per group, against the condition.
    async fn observe(&self, r: &Ready, window: Window, entry: &Entry) -> Result<Vec<Observation>, AlertError> {
        let (_, observed) = observe(&self.query, &r.rule, &r.windows, window, entry.state.groups.keys()).await?;
        Ok(observed)
    }

    /// Who is told what after a window: a firing alert is told unless a silence covers it
    /// (then it is told when the silence ends, if it still fires), its resolve only if its
    /// firing was told; receivers that want to hear a firing alert again (Alertmanager) are
    /// told at every window while it fires.
    fn notices(
        &self,
        r: &Ready,
        window: Window,
        steps: &[Step],
        state: &mut RuleState,
        silences: &[Silence],
        now: i64,
    ) -> Vec<Notice> {
        let repeat_to: Vec<String> = r.rule.notify.iter().filter(|n| self.deliver.repeats(n)).cloned().collect();
        let mut out = Vec::new();
        for step in steps {
            let quiet = silences.iter().any(|s| s.active(now) && s.matches(&r.rule, &step.group));
            match step.outcome {
                Outcome::Fired | Outcome::Firing => {
                    let alert = state.groups.get_mut(&step.group).expect("a firing alert is in the state");
                    let untold = step.outcome == Outcome::Fired || alert.silenced;
                    alert.silenced = quiet && untold;
                    if quiet {
                        continue;
                    }
                    if untold {
                        out.push(self.notice(r, window, step, Outcome::Fired, r.rule.notify.clone()));
                    } else if !repeat_to.is_empty() {
                        out.push(self.notice(r, window, step, Outcome::Firing, repeat_to.clone()));
                    }
                }
                Outcome::Resolved if !step.silenced => {
                    out.push(self.notice(r, window, step, Outcome::Resolved, r.rule.notify.clone()));
                }
                _ => {}
            }
        }
        out
    }

    fn notice(&self, r: &Ready, window: Window, step: &Step, outcome: Outcome, receivers: Vec<String>) -> Notice {
        let resolved = outcome == Outcome::Resolved;
        let text = r.template.render(&values_for(r, step));
        // As Prometheus does: a firing alert not heard of again for four evaluations (at
        // least four minutes) is taken as resolved by Alertmanager.
        let valid = ms(r.rule.every.max(Duration::from_secs(60))) * 4;
        Notice {
            rule: r.rule.name.clone(),
            group: step.group.clone(),
            outcome,
            value: step.value,
            severity: r.rule.severity.as_str().to_owned(),
            labels: r.rule.labels.clone(),
            text,
            starts_ms: step.active_since_ms.unwrap_or(window.to_ms),
            ends_ms: resolved.then_some(window.to_ms),
            valid_until_ms: (!resolved).then_some(window.to_ms + valid),
            window_index: window.index,
            window_from_ms: window.from_ms,
            window_to_ms: window.to_ms,
            receivers,
            attempts: 0,
            next_try_ms: 0,
            last_error: None,
        }
    }

    /// The window's rows in the history table, as NDJSON: one per group looked at, or one
    /// for the rule when there was none.
    fn history_rows(
        &self,
        r: &Ready,
        window: Window,
        steps: &[Step],
        state: &RuleState,
        notices: &[Notice],
        skipped: i64,
    ) -> String {
        let time = chrono::DateTime::from_timestamp_millis(window.to_ms).unwrap_or_default().to_rfc3339();
        let row = |group: Option<&str>, value: Option<f64>, outcome: &str, silenced: bool, message: Option<&str>| {
            json!({
                "timestamp": time,
                "rule": r.rule.name,
                "group": group,
                "value": value,
                "state": outcome,
                "silenced": silenced.then_some(true),
                "severity": r.rule.severity.as_str(),
                "labels": r.rule.labels,
                "message": message,
                "window_index": window.index,
                "window_from": chrono::DateTime::from_timestamp_millis(window.from_ms).unwrap_or_default().to_rfc3339(),
                "skipped_windows": (skipped > 0).then_some(skipped),
                "evaluator": self.options.owner,
            })
            .to_string()
        };
        let mut out = String::new();
        if steps.is_empty() {
            out.push_str(&row(None, None, "inactive", false, None));
            out.push('\n');
        }
        for s in steps {
            let silenced = s.silenced || state.groups.get(&s.group).is_some_and(|a| a.silenced);
            let told = notices.iter().find(|n| n.group == s.group && n.outcome.notifies());
            out.push_str(&row(Some(&s.group), s.value, s.outcome.as_str(), silenced, told.map(|n| n.text.as_str())));
            out.push('\n');
        }
        out
    }
}

/// What a rule's query says over `window`, per group, against its condition (and its row
/// count); a search rule's `known` groups that found nothing count 0.
async fn observe<'a>(
    query: &QueryEngine,
    rule: &Rule,
    windows: &Windows,
    window: Window,
    known: impl Iterator<Item = &'a String>,
) -> Result<(usize, Vec<Observation>), AlertError> {
    let now = window_values(query, rule, window).await?;
    let before = match rule.condition.compare_back() {
        Some(back) => Some(window_values(query, rule, windows.shifted(window, back)).await?),
        None => None,
    };
    let mut groups = now.groups.clone();
    if matches!(rule.query(), QueryKind::Search(_)) {
        for g in known {
            groups.entry(g.clone()).or_insert(Some(0.0));
        }
    }
    let observed = groups
        .into_iter()
        .map(|(group, value)| {
            let earlier = before.as_ref().and_then(|b| b.groups.get(&group).copied().flatten());
            let holds = rule.condition.holds(value, now.rows, earlier);
            Observation { group, value, holds }
        })
        .collect();
    Ok((now.rows, observed))
}

/// What a rule would say about the window ending at the last multiple of its `every` at or
/// before `at_ms` (evaluated now, over the data there is now): for trying a rule out.
#[derive(Debug, Clone)]
pub struct Preview {
    pub window: Window,
    pub rows: usize,
    pub groups: Vec<Observation>,
}

/// Evaluates `rule` once, as [`Preview`] says, without state, leases or notifications.
pub async fn preview(query: &QueryEngine, rule: &Rule, at_ms: i64) -> Result<Preview, AlertError> {
    let windows = Windows::new(rule.every, rule.window(), Duration::ZERO);
    let every_ms = ms(rule.every).max(1);
    let window = windows.get(at_ms.div_euclid(every_ms));
    let (rows, groups) = observe(query, rule, &windows, window, std::iter::empty()).await?;
    Ok(Preview { window, rows, groups })
}

async fn window_values(query: &QueryEngine, rule: &Rule, window: Window) -> Result<WindowValues, AlertError> {
    let rule_error = |message: String| AlertError::Rule { rule: rule.name.clone(), message };
    let query_error = |source| AlertError::Query { rule: rule.name.clone(), source };
    let group_by = rule.group_by.as_deref();
    match rule.query() {
        QueryKind::Sql(sql) => {
            let sql = macros::expand(sql, window.from_ms, window.to_ms).map_err(rule_error)?;
            let (_, batches) = query.collect(&sql).await.map_err(query_error)?;
            read_values(&batches, group_by).map_err(rule_error)
        }
        QueryKind::Search(search) => {
            let streams = search
                .streams
                .iter()
                .map(|s| StreamName::new(s).map_err(|e| rule_error(e.to_string())))
                .collect::<Result<Vec<_>, _>>()?;
            let request = SearchRequest {
                streams,
                query: search.query.clone(),
                from: window.from_ms * 1_000,
                to: window.to_ms * 1_000,
                limit: 1,
                before: None,
                histogram: false,
            };
            let mut total = WindowValues::default();
            let statements = query
                .search_count_sql(&request, group_by, &logyard_auth::Principal::anonymous())
                .await
                .map_err(query_error)?;
            for sql in statements {
                let (_, batches) = query.collect(&sql).await.map_err(query_error)?;
                let part = read_values(&batches, group_by.map(|_| "group")).map_err(rule_error)?;
                total.rows += part.rows;
                for (g, v) in part.groups {
                    let sum = total.groups.entry(g).or_insert(Some(0.0));
                    *sum = Some(sum.unwrap_or(0.0) + v.unwrap_or(0.0));
                }
            }
            Ok(total)
        }
    }
}

fn values_for<'a>(r: &'a Ready, step: &'a Step) -> Values<'a> {
    Values {
        rule: &r.rule.name,
        value: step.value,
        group: (!step.group.is_empty()).then_some(step.group.as_str()),
        threshold: r.rule.condition.threshold,
        condition: r.rule.condition.to_string(),
        window: humantime::format_duration(r.rule.window()).to_string(),
        severity: r.rule.severity.as_str(),
        state: step.outcome.as_str(),
        labels: Some(&r.rule.labels),
    }
}

/// Adds notices to the outbox; a repeat of a firing alert replaces the one still waiting
/// (a receiver that was down hears the latest, not a backlog).
fn queue(outbox: &mut Vec<Notice>, notices: Vec<Notice>) {
    for notice in notices {
        if notice.outcome == Outcome::Firing {
            outbox.retain(|n| {
                !(n.outcome == Outcome::Firing
                    && n.alert_key() == notice.alert_key()
                    && n.receivers == notice.receivers)
            });
        }
        outbox.push(notice);
    }
}

/// What one query gave: its row count and the value per group (`""` without groups).
#[derive(Debug, Default, Clone)]
struct WindowValues {
    rows: usize,
    groups: BTreeMap<String, Option<f64>>,
}

/// Reads the `value` column (any number; NULL is no value) and the group column of a query's
/// rows. Without a group column the first row's value is the rule's.
fn read_values(batches: &[RecordBatch], group_by: Option<&str>) -> Result<WindowValues, String> {
    let mut out = WindowValues::default();
    for batch in batches {
        out.rows += batch.num_rows();
        if batch.num_rows() == 0 {
            continue;
        }
        let value = batch.column_by_name("value").ok_or("the query has no column named `value`")?;
        let value = arrow::compute::cast(value, &DataType::Float64)
            .map_err(|e| format!("its `value` column is not a number: {e}"))?;
        let value = value.as_primitive::<Float64Type>();
        let group = match group_by {
            Some(name) => {
                let column = batch
                    .column_by_name(name)
                    .ok_or_else(|| format!("the query has no column `{name}` to group by"))?;
                Some(arrow::compute::cast(column, &DataType::Utf8).map_err(|e| e.to_string())?)
            }
            None => None,
        };
        for row in 0..batch.num_rows() {
            let v = (!value.is_null(row)).then(|| value.value(row));
            match &group {
                Some(g) => {
                    let g = g.as_string::<i32>();
                    let key = if g.is_null(row) { String::new() } else { g.value(row).to_owned() };
                    out.groups.insert(key, v);
                }
                None => {
                    out.groups.entry(String::new()).or_insert(v);
                }
            }
        }
    }
    if group_by.is_none() {
        out.groups.entry(String::new()).or_insert(None);
    }
    Ok(out)
}
