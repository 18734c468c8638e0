//! Translating a search into a SQL condition for one stream's table.
//!
//! What a user types reaches the SQL only inside a quoted identifier (`"field"`, a `"` doubled)
//! or a string literal (`'value'`, a `'` doubled; DataFusion's SQL dialect has no backslash
//! escapes in strings) or as a number this code printed itself. Patterns go through `LIKE`,
//! whose escape character is the backslash: `%`, `_` and `\` of a value are escaped.
//!
//! A field the stream does not have matches nothing (`FALSE`), so `-field:x` matches every
//! event there; negation is `IS NOT TRUE`, so an event without the field matches
//! `-field:value` too (SQL's `NOT` would drop it as NULL).

use std::collections::BTreeMap;

use crate::SearchError;
use crate::parse::{Expr, Op, Part, Pattern};

/// What a column holds, as far as the translation cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    Text,
    Integer,
    Float,
    Boolean,
    Timestamp,
    /// Anything else (dates, lists, binary): compared as its text.
    Other,
}

/// The columns of one stream's table and which of them free text is looked for in.
#[derive(Debug, Clone, Default)]
pub struct Fields {
    pub columns: BTreeMap<String, FieldKind>,
    /// Text columns searched by words and phrases (`message`, and those the stream names).
    pub text: Vec<String>,
}

/// The SQL condition (for a `WHERE`) that selects what `expr` selects in a table with `fields`.
pub fn to_sql(expr: &Expr, fields: &Fields) -> Result<String, SearchError> {
    Ok(match expr {
        Expr::All => "TRUE".into(),
        Expr::Text { pattern, .. } => {
            let like = format!("'%{}%'", like_body(pattern).replace('\'', "''"));
            let ors: Vec<String> = fields
                .text
                .iter()
                .filter(|f| fields.columns.get(*f) == Some(&FieldKind::Text))
                .map(|f| format!("{} ILIKE {like}", ident(f)))
                .collect();
            match ors.len() {
                0 => "FALSE".into(),
                1 => ors.into_iter().next().unwrap(),
                _ => format!("({})", ors.join(" OR ")),
            }
        }
        Expr::Exists { field, .. } => match fields.columns.get(field) {
            Some(_) => format!("{} IS NOT NULL", ident(field)),
            None => "FALSE".into(),
        },
        Expr::Field { field, op, value, at } => match fields.columns.get(field) {
            Some(kind) => compare(field, *kind, *op, value, *at)?,
            None => "FALSE".into(),
        },
        Expr::Not(inner) => format!("({}) IS NOT TRUE", to_sql(inner, fields)?),
        Expr::And(terms) => joined(terms, " AND ", fields, |e| matches!(e, Expr::Or(_)))?,
        Expr::Or(terms) => joined(terms, " OR ", fields, |_| false)?,
    })
}

fn joined(terms: &[Expr], sep: &str, fields: &Fields, group: fn(&Expr) -> bool) -> Result<String, SearchError> {
    let mut out = Vec::with_capacity(terms.len());
    for term in terms {
        let sql = to_sql(term, fields)?;
        out.push(if group(term) { format!("({sql})") } else { sql });
    }
    Ok(out.join(sep))
}

/// `field <op> value` for a column of `kind`.
fn compare(field: &str, kind: FieldKind, op: Op, value: &Pattern, at: usize) -> Result<String, SearchError> {
    let column = ident(field);
    let Some(text) = value.literal() else {
        // A wildcard (only with `:`): a LIKE over the column's text.
        let pattern = literal(&like_body(value));
        return Ok(match kind {
            FieldKind::Text => format!("{column} LIKE {pattern}"),
            _ => format!("CAST({column} AS VARCHAR) LIKE {pattern}"),
        });
    };
    let sign = match op {
        Op::Eq => "=",
        Op::Gt => ">",
        Op::Ge => ">=",
        Op::Lt => "<",
        Op::Le => "<=",
    };
    let not_a = |what: &str| SearchError::new(at, format!("`{field}` holds {what}: `{text}` is not one"));
    Ok(match kind {
        FieldKind::Integer | FieldKind::Float => {
            let number = number(&text).ok_or_else(|| not_a("numbers"))?;
            format!("{column} {sign} {number}")
        }
        FieldKind::Boolean => {
            if op != Op::Eq {
                return Err(SearchError::new(at, format!("`{field}` holds true or false: it has no order")));
            }
            let b = match text.to_ascii_lowercase().as_str() {
                "true" => "TRUE",
                "false" => "FALSE",
                _ => return Err(not_a("true or false")),
            };
            format!("{column} = {b}")
        }
        // A number compared with text compares as a number where the text is one.
        FieldKind::Text if op != Op::Eq && number(&text).is_some() => {
            format!("TRY_CAST({column} AS DOUBLE) {sign} {}", number(&text).unwrap())
        }
        FieldKind::Text | FieldKind::Timestamp => format!("{column} {sign} {}", literal(&text)),
        FieldKind::Other => format!("CAST({column} AS VARCHAR) {sign} {}", literal(&text)),
    })
}

/// A finite number as SQL writes it, or None. Integers stay integers.
fn number(text: &str) -> Option<String> {
    if let Ok(i) = text.parse::<i64>() {
        return Some(i.to_string());
    }
    // Rust also reads "inf" and "NaN"; SQL literals have neither.
    let f = text.parse::<f64>().ok().filter(|f| f.is_finite())?;
    Some(format!("{f:?}"))
}

/// A quoted identifier: `"` doubled inside.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A string literal: `'` doubled inside.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The body of a LIKE pattern (not yet a literal): wildcards as `%`, the rest escaped.
fn like_body(pattern: &Pattern) -> String {
    let mut out = String::new();
    for part in &pattern.parts {
        match part {
            Part::Any => out.push('%'),
            Part::Text(t) => {
                for c in t.chars() {
                    if matches!(c, '%' | '_' | '\\') {
                        out.push('\\');
                    }
                    out.push(c);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;

    fn fields() -> Fields {
        let columns = [
            ("message", FieldKind::Text),
            ("route", FieldKind::Text),
            ("status", FieldKind::Integer),
            ("latency_ms", FieldKind::Float),
            ("cached", FieldKind::Boolean),
            ("timestamp", FieldKind::Timestamp),
            ("http.method", FieldKind::Text),
            ("code", FieldKind::Text),
            ("tags", FieldKind::Other),
            ("say \"hi\"", FieldKind::Text),
        ];
        Fields {
            columns: columns.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
            text: vec!["message".into(), "route".into(), "missing".into()],
        }
    }

    fn sql(search: &str) -> String {
        to_sql(&parse(search).unwrap(), &fields()).unwrap_or_else(|e| panic!("{search:?}: {e}"))
    }

    #[test]
    fn terms_become_conditions() {
        assert_eq!(sql(""), "TRUE");
        assert_eq!(sql("checkout"), r#"("message" ILIKE '%checkout%' OR "route" ILIKE '%checkout%')"#);
        assert_eq!(sql("status:>=500"), r#""status" >= 500"#);
        assert_eq!(sql("status:500"), r#""status" = 500"#);
        assert_eq!(sql("latency_ms:>2.5"), r#""latency_ms" > 2.5"#);
        assert_eq!(sql("latency_ms:<1e3"), r#""latency_ms" < 1000.0"#);
        assert_eq!(sql("cached:TRUE"), r#""cached" = TRUE"#);
        assert_eq!(sql("route:/api/*"), r#""route" LIKE '/api/%'"#);
        assert_eq!(sql("status:5*"), r#"CAST("status" AS VARCHAR) LIKE '5%'"#);
        assert_eq!(sql("http.method:POST"), r#""http.method" = 'POST'"#);
        assert_eq!(sql("timestamp:>=2026-12-03T10:00:00Z"), r#""timestamp" >= '2026-12-03T10:00:00Z'"#);
        assert_eq!(sql("code:>=500"), r#"TRY_CAST("code" AS DOUBLE) >= 500"#);
        assert_eq!(sql("code:>=abc"), r#""code" >= 'abc'"#);
        assert_eq!(sql("tags:x"), r#"CAST("tags" AS VARCHAR) = 'x'"#);
        assert_eq!(sql("route:*"), r#""route" IS NOT NULL"#);
    }

    #[test]
    fn missing_fields_match_nothing_and_their_negation_everything() {
        assert_eq!(sql("nope:1"), "FALSE");
        assert_eq!(sql("nope:*"), "FALSE");
        assert_eq!(sql("-nope:1"), "(FALSE) IS NOT TRUE");
        let no_text = Fields { text: vec![], ..fields() };
        assert_eq!(to_sql(&parse("word").unwrap(), &no_text).unwrap(), "FALSE");
    }

    #[test]
    fn boolean_structure_is_kept() {
        assert_eq!(
            sql("status:>=500 (route:/a OR route:/b) -cached:true"),
            r#""status" >= 500 AND ("route" = '/a' OR "route" = '/b') AND ("cached" = TRUE) IS NOT TRUE"#
        );
        assert_eq!(sql("status:1 status:2 OR status:3"), r#""status" = 1 AND "status" = 2 OR "status" = 3"#);
        assert_eq!(sql("NOT (status:1 OR status:2)"), r#"("status" = 1 OR "status" = 2) IS NOT TRUE"#);
    }

    #[test]
    fn typed_values_must_fit_their_column() {
        let err = |s: &str| to_sql(&parse(s).unwrap(), &fields()).unwrap_err();
        let e = err("x status:abc");
        assert_eq!((e.at, e.message.as_str()), (2, "`status` holds numbers: `abc` is not one"));
        assert_eq!(err("latency_ms:inf").message, "`latency_ms` holds numbers: `inf` is not one");
        assert_eq!(err("cached:yes").message, "`cached` holds true or false: `yes` is not one");
        assert_eq!(err("cached:>true").message, "`cached` holds true or false: it has no order");
    }

    #[test]
    fn what_is_typed_stays_inside_literals_and_identifiers() {
        assert_eq!(sql(r#"route:"x' OR 1=1 --""#), r#""route" = 'x'' OR 1=1 --'"#);
        assert_eq!(sql(r#""it's""#), r#"("message" ILIKE '%it''s%' OR "route" ILIKE '%it''s%')"#);
        assert_eq!(sql(r#"say\ \"hi\":1"#), r#""say ""hi""" = '1'"#);
        // A field name with a quote that the table does not have is just missing.
        assert_eq!(sql(r#"a\"b:1"#), "FALSE");
        assert_eq!(sql(r#"route:"50%_off\\""#), r#""route" = '50%_off\'"#);
        assert_eq!(sql(r#"route:50%_off\\*"#), r#""route" LIKE '50\%\_off\\%'"#);
        assert_eq!(sql(r#""100%""#), r#"("message" ILIKE '%100\%%' OR "route" ILIKE '%100\%%')"#);
        assert_eq!(sql("route:a'*"), r#""route" LIKE 'a''%'"#);
    }
}
