//! DataFusion filters as PostgreSQL `WHERE` clauses, with every value a parameter.
//!
//! A filter is pushed down only when PostgreSQL answers it exactly as DataFusion would
//! (then DataFusion does not check it again): comparisons, `IN`, `BETWEEN`, `IS [NOT] NULL`,
//! `NOT`, `AND`, `OR` between a column and literals. Values are sent as text parameters and
//! cast to the column's own type in the statement (`"status" = $1::text::text`); ordering of
//! text uses the `C` collation, which is the byte order DataFusion compares strings by.
//! Anything else (functions, casts of columns, `LIKE`, ranges over uuid or json) stays with
//! DataFusion.

use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator};
use datafusion::scalar::ScalarValue;

/// What a column holds, as far as pushdown and conversion care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bool,
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    /// `numeric(p, s)` with p <= 38.
    Decimal {
        precision: u8,
        scale: i8,
    },
    /// `text`, `varchar`, `char`: ordered by the C collation when pushed down.
    Text,
    /// Anything else, read as its text form (uuid, json, enums, unconstrained numeric, ...):
    /// only equality is pushed down.
    Other,
    Timestamp,
    TimestampTz,
    Date,
}

/// One column of a PostgreSQL table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgColumn {
    pub name: String,
    /// PostgreSQL's name of the type, with modifiers (`numeric(12,2)`, `timestamp with time zone`).
    pub pg_type: String,
    pub kind: Kind,
    pub nullable: bool,
}

impl PgColumn {
    /// The expression that selects it: text forms for decimals and other types.
    pub fn select_expr(&self) -> String {
        match self.kind {
            Kind::Decimal { .. } | Kind::Text | Kind::Other => format!("{}::text", quote_ident(&self.name)),
            _ => quote_ident(&self.name),
        }
    }
}

/// `"name"`, with inner quotes doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A `WHERE` clause fragment for `expr`, adding its values to `params` (numbered from
/// `params.len() + 1`); `None` when it cannot be answered exactly by PostgreSQL.
pub fn filter(expr: &Expr, columns: &[PgColumn], params: &mut Vec<String>) -> Option<String> {
    let mark = params.len();
    let out = translate(expr, columns, params);
    if out.is_none() {
        params.truncate(mark);
    }
    out
}

fn translate(expr: &Expr, columns: &[PgColumn], params: &mut Vec<String>) -> Option<String> {
    match expr {
        Expr::BinaryExpr(BinaryExpr { left, op: op @ (Operator::And | Operator::Or), right }) => {
            let l = translate(left, columns, params)?;
            let r = translate(right, columns, params)?;
            Some(format!("({l} {} {r})", if *op == Operator::And { "AND" } else { "OR" }))
        }
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let (column, value, op) =
                match (column(left, columns), literal(right), column(right, columns), literal(left)) {
                    (Some(c), Some(v), _, _) => (c, v, *op),
                    (_, _, Some(c), Some(v)) => (c, v, op.swap()?),
                    _ => return None,
                };
            let sql_op = match op {
                Operator::Eq => "=",
                Operator::NotEq => "<>",
                Operator::Lt => "<",
                Operator::LtEq => "<=",
                Operator::Gt => ">",
                Operator::GtEq => ">=",
                _ => return None,
            };
            let ordered = !matches!(op, Operator::Eq | Operator::NotEq);
            if ordered && column.kind == Kind::Other {
                return None;
            }
            let value = param(column, value, params)?;
            Some(format!("{} {sql_op} {value}", operand(column, ordered)))
        }
        Expr::Not(inner) => Some(format!("(NOT {})", translate(inner, columns, params)?)),
        Expr::IsNull(inner) => Some(format!("{} IS NULL", quote_ident(&column(inner, columns)?.name))),
        Expr::IsNotNull(inner) => Some(format!("{} IS NOT NULL", quote_ident(&column(inner, columns)?.name))),
        Expr::InList(list) => {
            let column = column(&list.expr, columns)?;
            let values = list.list.iter().map(|e| param(column, literal(e)?, params)).collect::<Option<Vec<_>>>()?;
            if values.is_empty() {
                return None;
            }
            let not = if list.negated { "NOT " } else { "" };
            Some(format!("{} {not}IN ({})", quote_ident(&column.name), values.join(", ")))
        }
        Expr::Between(Between { expr, negated, low, high }) => {
            let column = column(expr, columns)?;
            if column.kind == Kind::Other {
                return None;
            }
            let low = param(column, literal(low)?, params)?;
            let high = param(column, literal(high)?, params)?;
            let not = if *negated { "NOT " } else { "" };
            Some(format!("{} {not}BETWEEN {low} AND {high}", operand(column, true)))
        }
        _ => None,
    }
}

fn column<'a>(expr: &Expr, columns: &'a [PgColumn]) -> Option<&'a PgColumn> {
    match expr {
        Expr::Column(c) => columns.iter().find(|pc| pc.name == c.name),
        _ => None,
    }
}

fn literal(expr: &Expr) -> Option<&ScalarValue> {
    match expr {
        Expr::Literal(v, _) if !v.is_null() => Some(v),
        _ => None,
    }
}

/// The column as an operand: text compared by byte order when the comparison orders.
fn operand(column: &PgColumn, ordered: bool) -> String {
    if ordered && column.kind == Kind::Text {
        format!("{} COLLATE \"C\"", quote_ident(&column.name))
    } else {
        quote_ident(&column.name)
    }
}

/// Adds a value as a text parameter; returns `$n::text::<column type>`.
fn param(column: &PgColumn, value: &ScalarValue, params: &mut Vec<String>) -> Option<String> {
    params.push(literal_text(value, column.kind)?);
    Some(format!("${}::text::{}", params.len(), column.pg_type))
}

/// The text form PostgreSQL reads for `value` as a value of a column of `kind`; `None`
/// when the two do not fit together exactly.
fn literal_text(value: &ScalarValue, kind: Kind) -> Option<String> {
    use ScalarValue as S;
    let micros_text = |micros: i64| -> Option<String> {
        let at = chrono::DateTime::from_timestamp_micros(micros)?;
        Some(match kind {
            Kind::TimestampTz => at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
            _ => at.naive_utc().format("%Y-%m-%d %H:%M:%S%.6f").to_string(),
        })
    };
    match (value, kind) {
        (S::Boolean(Some(b)), Kind::Bool) => Some(b.to_string()),
        (
            S::Int8(Some(_))
            | S::Int16(Some(_))
            | S::Int32(Some(_))
            | S::Int64(Some(_))
            | S::UInt8(Some(_))
            | S::UInt16(Some(_))
            | S::UInt32(Some(_))
            | S::UInt64(Some(_)),
            Kind::Int16 | Kind::Int32 | Kind::Int64 | Kind::Decimal { .. } | Kind::Float32 | Kind::Float64,
        ) => Some(value.to_string()),
        (S::Float64(Some(f)), Kind::Float64) if f.is_finite() => Some(f.to_string()),
        (S::Float32(Some(f)), Kind::Float32) if f.is_finite() => Some(f.to_string()),
        (S::Decimal128(Some(_), _, _), Kind::Decimal { .. }) => Some(value.to_string()),
        (S::Utf8(Some(s)) | S::LargeUtf8(Some(s)) | S::Utf8View(Some(s)), Kind::Text | Kind::Other) => Some(s.clone()),
        (S::Date32(Some(days)), Kind::Date) => {
            let date = chrono::NaiveDate::from_ymd_opt(1970, 1, 1)?
                .checked_add_signed(chrono::Duration::days((*days).into()))?;
            Some(date.format("%Y-%m-%d").to_string())
        }
        // An instant for a column with a time zone; a wall time for one without.
        (S::TimestampMicrosecond(Some(v), tz), Kind::TimestampTz | Kind::Timestamp)
            if tz.is_some() == (kind == Kind::TimestampTz) =>
        {
            micros_text(*v)
        }
        (S::TimestampMillisecond(Some(v), tz), Kind::TimestampTz | Kind::Timestamp)
            if tz.is_some() == (kind == Kind::TimestampTz) =>
        {
            micros_text(v.checked_mul(1000)?)
        }
        (S::TimestampSecond(Some(v), tz), Kind::TimestampTz | Kind::Timestamp)
            if tz.is_some() == (kind == Kind::TimestampTz) =>
        {
            micros_text(v.checked_mul(1_000_000)?)
        }
        // Nanoseconds only when whole microseconds: PostgreSQL would round the rest.
        (S::TimestampNanosecond(Some(v), tz), Kind::TimestampTz | Kind::Timestamp)
            if tz.is_some() == (kind == Kind::TimestampTz) && v % 1000 == 0 =>
        {
            micros_text(v / 1000)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::{col, lit};
    use std::ops::Not;
    use std::sync::Arc;

    fn columns() -> Vec<PgColumn> {
        let c = |name: &str, pg_type: &str, kind| PgColumn {
            name: name.into(),
            pg_type: pg_type.into(),
            kind,
            nullable: true,
        };
        vec![
            c("id", "bigint", Kind::Int64),
            c("status", "text", Kind::Text),
            c("amount", "numeric(12,2)", Kind::Decimal { precision: 12, scale: 2 }),
            c("created_at", "timestamp with time zone", Kind::TimestampTz),
            c("token", "uuid", Kind::Other),
        ]
    }

    fn sql(expr: Expr) -> Option<(String, Vec<String>)> {
        let mut params = Vec::new();
        filter(&expr, &columns(), &mut params).map(|s| (s, params))
    }

    #[test]
    fn comparisons_become_parameterized_sql() {
        let (s, p) = sql(col("status").eq(lit("pending")).and(col("id").gt(lit(10i64)))).unwrap();
        assert_eq!(s, "(\"status\" = $1::text::text AND \"id\" > $2::text::bigint)");
        assert_eq!(p, ["pending", "10"]);
        // A value never lands in the statement, whatever it holds.
        let (s, p) = sql(col("status").eq(lit("x'; DROP TABLE orders; --"))).unwrap();
        assert_eq!(s, "\"status\" = $1::text::text");
        assert_eq!(p, ["x'; DROP TABLE orders; --"]);
        // Literal on the left: the operator turns around.
        assert_eq!(sql(lit(5i64).lt(col("id"))).unwrap().0, "\"id\" > $1::text::bigint");
        // Text is ordered by bytes, as DataFusion orders it.
        assert_eq!(sql(col("status").lt(lit("p"))).unwrap().0, "\"status\" COLLATE \"C\" < $1::text::text");
    }

    #[test]
    fn lists_ranges_nulls_and_negations() {
        let (s, p) = sql(col("status").in_list(vec![lit("a"), lit("b")], true)).unwrap();
        assert_eq!(s, "\"status\" NOT IN ($1::text::text, $2::text::text)");
        assert_eq!(p, ["a", "b"]);
        let at = |micros| Expr::Literal(ScalarValue::TimestampMicrosecond(Some(micros), Some(Arc::from("UTC"))), None);
        let (s, p) = sql(col("created_at").between(at(1_764_064_800_000_000), at(1_764_068_400_000_000))).unwrap();
        assert_eq!(
            s,
            "\"created_at\" BETWEEN $1::text::timestamp with time zone AND $2::text::timestamp with time zone"
        );
        assert_eq!(p, ["2025-11-25T10:00:00.000000Z", "2025-11-25T11:00:00.000000Z"]);
        assert_eq!(sql(col("amount").is_null().not()).unwrap().0, "(NOT \"amount\" IS NULL)");
        let (s, _) = sql(col("status").eq(lit("a")).or(col("token").is_not_null())).unwrap();
        assert_eq!(s, "(\"status\" = $1::text::text OR \"token\" IS NOT NULL)");
    }

    #[test]
    fn what_postgres_would_answer_differently_stays_with_datafusion() {
        // Ordering of uuids (or json, enums) is not DataFusion's ordering of their text.
        assert!(sql(col("token").gt(lit("a"))).is_none());
        // Functions, casts of columns, LIKE.
        assert!(sql(datafusion::functions::expr_fn::lower(col("status")).eq(lit("a"))).is_none());
        assert!(sql(col("status").like(lit("p%"))).is_none());
        // A value of another type than the column's.
        assert!(sql(col("id").eq(lit("7"))).is_none());
        // Nanoseconds PostgreSQL would round.
        let ns = Expr::Literal(ScalarValue::TimestampNanosecond(Some(1_500), Some(Arc::from("UTC"))), None);
        assert!(sql(col("created_at").gt(ns)).is_none());
        // Half of an OR is not enough; the parameters of the failed half are dropped.
        let mut params = vec!["kept".to_owned()];
        let or = col("status").eq(lit("a")).or(col("status").like(lit("b%")));
        assert!(filter(&or, &columns(), &mut params).is_none());
        assert_eq!(params, ["kept"]);
        assert!(sql(col("nope").eq(lit(1i64))).is_none());
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
    }
}
