//! The columns a token may not read (`deny_fields`) or reads only as keyed hashes
//! (`mask_fields`).
//!
//! Names are column names as the tables hold them: flattened paths such as `email` or
//! `user.email`. A name covers the fields under it (`user` covers `user.email`), and a column
//! that holds a covered field as JSON text (`user`, when `user.email` is named and `user` came
//! as an array or deeper than the flattening goes) is covered too: what a reader cannot read
//! field by field it cannot read whole either.

/// How a reader sees one column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldAccess {
    /// As stored.
    Clear,
    /// As a keyed hash of its text: equal values stay equal, the value cannot be read.
    Masked,
    /// Not at all: the column is not there.
    Denied,
}

/// A token's `deny_fields` and `mask_fields`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldRules {
    deny: Vec<String>,
    mask: Vec<String>,
}

impl FieldRules {
    /// Checks the names: non-empty dotted paths, none both denied and masked.
    pub fn new(deny: &[String], mask: &[String]) -> Result<Self, String> {
        for (key, names) in [("deny_fields", deny), ("mask_fields", mask)] {
            if let Some(bad) = names.iter().find(|n| n.is_empty() || n.split('.').any(str::is_empty)) {
                return Err(format!("{key}: {bad:?} is not a field name (a column, or a dotted path like user.email)"));
            }
        }
        if let Some(both) = deny.iter().find(|d| mask.contains(d)) {
            return Err(format!("{both:?} is in both deny_fields and mask_fields: keep it in one"));
        }
        Ok(Self { deny: deny.to_vec(), mask: mask.to_vec() })
    }

    /// No field is hidden or masked.
    pub fn is_empty(&self) -> bool {
        self.deny.is_empty() && self.mask.is_empty()
    }

    pub fn denied(&self) -> &[String] {
        &self.deny
    }

    pub fn masked(&self) -> &[String] {
        &self.mask
    }

    /// How column `column` is seen; denial wins over masking.
    pub fn access(&self, column: &str) -> FieldAccess {
        if self.deny.iter().any(|name| covers(name, column)) {
            FieldAccess::Denied
        } else if self.mask.iter().any(|name| covers(name, column)) {
            FieldAccess::Masked
        } else {
            FieldAccess::Clear
        }
    }
}

/// Whether a rule for `name` applies to column `column`: the same path, a field under it, or a
/// column above it (which may hold it as JSON text).
fn covers(name: &str, column: &str) -> bool {
    let below = |long: &str, short: &str| long.strip_prefix(short).is_some_and(|rest| rest.starts_with('.'));
    name == column || below(column, name) || below(name, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_name_covers_its_path_the_fields_under_it_and_the_columns_above_it() {
        let rules = FieldRules::new(&names(&["email", "user.phone"]), &names(&["customer_id"])).unwrap();
        for (column, want) in [
            ("email", FieldAccess::Denied),
            ("email.domain", FieldAccess::Denied),
            ("emails", FieldAccess::Clear),
            ("customer_email", FieldAccess::Clear),
            ("user.phone", FieldAccess::Denied),
            ("user.phone.country", FieldAccess::Denied),
            ("user", FieldAccess::Denied),
            ("user.name", FieldAccess::Clear),
            ("user.phones", FieldAccess::Clear),
            ("customer_id", FieldAccess::Masked),
            ("customer_id_hash", FieldAccess::Clear),
            ("message", FieldAccess::Clear),
        ] {
            assert_eq!(rules.access(column), want, "{column}");
        }
        assert!(FieldRules::default().is_empty() && !rules.is_empty());
    }

    #[test]
    fn bad_names_are_refused_with_the_name() {
        let e = FieldRules::new(&names(&["user..email"]), &[]).unwrap_err();
        assert!(e.contains("deny_fields") && e.contains("user..email"), "{e}");
        let e = FieldRules::new(&[], &names(&[""])).unwrap_err();
        assert!(e.contains("mask_fields"), "{e}");
        let e = FieldRules::new(&names(&["email"]), &names(&["email"])).unwrap_err();
        assert!(e.contains("both"), "{e}");
    }
}
