//! The one rule for warehouse identifiers, whether a table name from the configuration or a
//! column name from an event: names are always quoted, so any text works except blank names and
//! control characters, and a name must fit PostgreSQL's 63 bytes together with the longest
//! prefix tidemark puts before it (PostgreSQL truncates longer names, which could make two
//! tables or two columns one).

/// PostgreSQL's identifier limit (`NAMEDATALEN` - 1), the stricter of the two backends.
pub const MAX_IDENTIFIER_BYTES: usize = 63;

/// Why `name`, written after a prefix of `prefix_bytes`, cannot be a warehouse identifier.
pub fn check_identifier(name: &str, prefix_bytes: usize) -> Result<(), String> {
    let limit = MAX_IDENTIFIER_BYTES.saturating_sub(prefix_bytes);
    if name.trim().is_empty() {
        return Err("is empty".into());
    }
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return Err(format!("contains the control character {:?}", c));
    }
    if name.len() > limit {
        return Err(format!(
            "is {} bytes long (the limit is {limit}{})",
            name.len(),
            if prefix_bytes > 0 {
                " with the prefix tidemark adds"
            } else {
                ""
            }
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_rule_for_tables_and_columns() {
        assert!(check_identifier("we\"ird; drop", 0).is_ok());
        assert!(check_identifier(&"x".repeat(63), 0).is_ok());
        assert!(check_identifier(&"x".repeat(64), 0).is_err());
        assert!(check_identifier(&"x".repeat(58), 5).is_ok());
        assert!(check_identifier(&"x".repeat(59), 5).is_err());
        assert!(check_identifier(" ", 0).is_err());
        assert!(check_identifier("a\0b", 0).is_err());
        assert!(check_identifier("a\nb", 0).is_err());
        assert!(
            check_identifier("é".repeat(32).as_str(), 0).is_err(),
            "bytes, not chars"
        );
    }
}
