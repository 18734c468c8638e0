//! A search (`logyard_search`) as people type it, read and turned into SQL.
//!
//! Invariants: nothing panics; a search that reads is written back (`Display`) as text that
//! reads as the same search; its SQL condition, read by DataFusion's SQL parser, is one
//! expression made only of the columns of the stream, literals, AND/OR, comparisons,
//! `LIKE`/`ILIKE`, `IS NOT NULL`, `IS NOT TRUE`, casts and negative numbers: nothing typed
//! becomes SQL syntax. The live tail's matcher answers it for an event without panicking.

#![no_main]

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use libfuzzer_sys::fuzz_target;
use logyard_core::event::Scalar;
use logyard_search::{FieldKind, Fields, Leaves, Matcher, parse, to_sql};
use sqlparser::ast::{Expr, UnaryOperator, visit_expressions};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;

/// A stream with a column of each kind, one with a quote in its name, and dotted names.
fn fields() -> Fields {
    let columns: BTreeMap<String, FieldKind> = [
        ("message", FieldKind::Text),
        ("route", FieldKind::Text),
        ("status", FieldKind::Integer),
        ("latency_ms", FieldKind::Float),
        ("cached", FieldKind::Boolean),
        ("timestamp", FieldKind::Timestamp),
        ("tags", FieldKind::Other),
        ("http.method", FieldKind::Text),
        ("a\"b", FieldKind::Text),
        ("it's", FieldKind::Integer),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    Fields { columns, text: vec!["message".into(), "route".into()] }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(expr) = parse(text) else { return };
    let written = expr.to_string();
    let again =
        parse(&written).unwrap_or_else(|e| panic!("{text:?} was written as {written:?}, which does not read: {e}"));
    assert_eq!(again.to_string(), written, "{text:?}");

    let event: Leaves = [
        ("message", Scalar::Text("Payment DECLINED 100% off, it's \\ done".into())),
        ("route", Scalar::Text("/api/checkout".into())),
        ("status", Scalar::Int(502)),
        ("latency_ms", Scalar::Float(930.5)),
        ("cached", Scalar::Bool(false)),
        ("tags", Scalar::Json("[\"a\"]")),
        ("http.method", Scalar::Text("POST".into())),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    Matcher::new(expr.clone(), vec!["message".to_owned(), "route".to_owned()]).matches(&event);

    let fields = fields();
    let Ok(sql) = to_sql(&expr, &fields) else { return };
    let mut parser = Parser::new(&GenericDialect {}).try_with_sql(&sql).unwrap_or_else(|e| panic!("{sql:?}: {e}"));
    let condition = parser.parse_expr().unwrap_or_else(|e| panic!("{text:?} -> {sql:?}: {e}"));
    assert_eq!(
        parser.next_token().token,
        sqlparser::tokenizer::Token::EOF,
        "{text:?} -> {sql:?}: more than one expression"
    );
    let _ = visit_expressions(&condition, |e| {
        let allowed = match e {
            Expr::Identifier(id) => {
                assert!(id.quote_style == Some('"'), "{sql:?}: unquoted identifier {id}");
                assert!(fields.columns.contains_key(&id.value), "{sql:?}: {id} is not a column");
                true
            }
            Expr::Value(_) | Expr::Nested(_) | Expr::IsNotNull(_) | Expr::IsNotTrue(_) => true,
            Expr::BinaryOp { .. } => true,
            Expr::Like { escape_char: None, any: false, .. } | Expr::ILike { escape_char: None, any: false, .. } => {
                true
            }
            Expr::Cast { .. } => true,
            // A negative number.
            Expr::UnaryOp { op: UnaryOperator::Minus, expr } => matches!(expr.as_ref(), Expr::Value(_)),
            _ => false,
        };
        assert!(allowed, "{text:?} -> {sql:?}: {e:?} is not what a search becomes");
        ControlFlow::<()>::Continue(())
    });
});
