//! The time macros a rule's SQL names its window with, as Grafana's PostgreSQL data source
//! spells them: `$__timeFilter(column)` becomes `(column >= TIMESTAMP '…' AND column <
//! TIMESTAMP '…')` (the window is half-open, so consecutive windows never count an event
//! twice), `$__timeFrom()` and `$__timeTo()` the window's bounds as timestamps.

use chrono::{DateTime, SecondsFormat};

/// `sql` with its macros replaced for the window `[from_ms, to_ms)`.
pub fn expand(sql: &str, from_ms: i64, to_ms: i64) -> Result<String, String> {
    let from = timestamp(from_ms)?;
    let to = timestamp(to_ms)?;
    let mut out = String::with_capacity(sql.len() + 64);
    let mut rest = sql;
    while let Some(at) = rest.find("$__") {
        out.push_str(&rest[..at]);
        let here = &rest[at..];
        let name_len = here[3..].find(|c: char| !c.is_ascii_alphanumeric() && c != '_').map_or(here.len(), |n| n + 3);
        let name = &here[3..name_len];
        let after = &here[name_len..];
        let Some(args) = after.strip_prefix('(') else {
            return Err(format!("$__{name} at character {} needs parentheses", sql.len() - here.len()));
        };
        let Some(close) = args.find(')') else {
            return Err(format!("$__{name}( at character {} is not closed", sql.len() - here.len()));
        };
        let arg = args[..close].trim();
        match (name, arg.is_empty()) {
            ("timeFilter", false) => out.push_str(&format!("({arg} >= {from} AND {arg} < {to})")),
            ("timeFrom", true) => out.push_str(&from),
            ("timeTo", true) => out.push_str(&to),
            ("timeFilter", true) => return Err("$__timeFilter() needs a column, as in $__timeFilter(timestamp)".into()),
            ("timeFrom" | "timeTo", false) => return Err(format!("$__{name}() takes nothing")),
            _ => {
                return Err(format!(
                    "$__{name} at character {} is not a macro logyard knows ($__timeFilter(column), $__timeFrom(), $__timeTo())",
                    sql.len() - here.len()
                ));
            }
        }
        rest = &args[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn timestamp(ms: i64) -> Result<String, String> {
    let t = DateTime::from_timestamp_millis(ms).ok_or_else(|| format!("{ms} ms is out of range"))?;
    Ok(format!("TIMESTAMP '{}'", t.to_rfc3339_opts(SecondsFormat::Millis, true)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macros_become_the_window() {
        let sql = "SELECT route AS grp, count(*) AS value FROM storefront WHERE $__timeFilter(\"timestamp\") AND status >= 500 AND $__timeTo() > $__timeFrom() GROUP BY 1";
        let out = expand(sql, 1_764_806_400_000, 1_764_806_700_000).unwrap();
        assert_eq!(
            out,
            "SELECT route AS grp, count(*) AS value FROM storefront WHERE (\"timestamp\" >= TIMESTAMP '2025-12-04T00:00:00.000Z' AND \"timestamp\" < TIMESTAMP '2025-12-04T00:05:00.000Z') AND status >= 500 AND TIMESTAMP '2025-12-04T00:05:00.000Z' > TIMESTAMP '2025-12-04T00:00:00.000Z' GROUP BY 1"
        );
        assert_eq!(expand("SELECT 1", 0, 1).unwrap(), "SELECT 1");
    }

    #[test]
    fn unknown_or_malformed_macros_are_named() {
        assert!(
            expand("SELECT $__timeGroup(ts, '1m')", 0, 1)
                .unwrap_err()
                .contains("$__timeGroup at character 7 is not a macro")
        );
        assert!(expand("WHERE $__timeFilter()", 0, 1).unwrap_err().contains("needs a column"));
        assert!(expand("WHERE $__timeFilter(ts", 0, 1).unwrap_err().contains("not closed"));
        assert!(expand("WHERE $__timeFrom", 0, 1).unwrap_err().contains("needs parentheses"));
    }
}
