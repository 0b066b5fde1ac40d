//! Single-row inserts held back in one batch, sent as one statement: each
//! `INSERT INTO t (…) VALUES (…)` also has a form that inserts a row per
//! element of arrays, `INSERT INTO t (…) SELECT … FROM unnest(…)`. A
//! statement costs PostgreSQL its planning and executor start (constraints
//! included) whatever its rows, so a batch's deadlines or messages go in
//! one statement per table instead of one per row.

use tokio_postgres::types::Type;

/// The table `sql` inserts one row into, and the statement inserting a row
/// per element of its parameters given as arrays of `types`; `None` for any
/// other statement. Only inserts whose rows cannot collide within one
/// statement are merged: no tail but `ON CONFLICT … DO NOTHING`.
pub(super) fn unnest_form(sql: &str, types: &[Type]) -> Option<(String, String)> {
    let rest = sql.trim().strip_prefix("INSERT INTO ")?;
    let table_end = rest.find(|c: char| c.is_whitespace() || c == '(')?;
    let (table, rest) = rest.split_at(table_end);
    let values_at = rest.find(" VALUES (")?;
    let columns = rest[..values_at].trim();
    let tuple_start = values_at + " VALUES (".len();
    let tuple_len = closing_paren(&rest[tuple_start..])?;
    let tuple = &rest[tuple_start..tuple_start + tuple_len];
    let tail = rest[tuple_start + tuple_len + 1..].trim();
    let merges = tail.is_empty() || (tail.starts_with("ON CONFLICT") && tail.ends_with("DO NOTHING"));
    if !merges || tail.contains('$') || !columns.starts_with('(') || types.is_empty() {
        return None;
    }
    let arrays: Vec<String> = (1..).zip(types).map(|(n, t)| format!("${n}::{}[]", t.name())).collect();
    let names: Vec<String> = (1..=types.len()).map(|n| format!("c{n}")).collect();
    let merged = format!(
        "INSERT INTO {table} {columns} SELECT {} FROM unnest({}) AS u({}) {tail}",
        columns_for_params(tuple),
        arrays.join(", "),
        names.join(", ")
    );
    Some((table.to_owned(), merged.trim_end().to_owned()))
}

/// Whether `sql` names `table` as a whole word: a statement that does not
/// cannot read or change its rows, so an insert may be moved across it.
pub(super) fn mentions(sql: &str, table: &str) -> bool {
    let word = |c: char| c.is_alphanumeric() || c == '_';
    sql.match_indices(table).any(|(at, _)| {
        let before = sql[..at].chars().next_back();
        let after = sql[at + table.len()..].chars().next();
        !before.is_some_and(word) && !after.is_some_and(word)
    })
}

/// Where the parenthesis closing the one opened before `s` is, quotes skipped.
fn closing_paren(s: &str) -> Option<usize> {
    let (mut depth, mut quoted) = (0usize, false);
    for (i, c) in s.char_indices() {
        match c {
            '\'' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted && depth == 0 => return Some(i),
            ')' if !quoted => depth -= 1,
            _ => {}
        }
    }
    None
}

/// The values' expressions with each `$N` read from column `cN` of the arrays.
fn columns_for_params(tuple: &str) -> String {
    let mut out = String::with_capacity(tuple.len() * 2);
    let mut chars = tuple.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(|d| d.is_ascii_digit()) {
            out.push_str("u.c");
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::db::merge::*;

    #[test]
    fn a_single_row_insert_becomes_an_insert_from_arrays() {
        let (table, merged) = unnest_form(
            "INSERT INTO deadlines (message_id, party, kind, due_ms, state) VALUES ($1, $2, $3, $4, 'running') ON CONFLICT DO NOTHING",
            &[Type::TEXT, Type::TEXT, Type::INT8, Type::INT8],
        )
        .expect("mergeable");
        assert_eq!(table, "deadlines");
        assert_eq!(
            merged,
            "INSERT INTO deadlines (message_id, party, kind, due_ms, state) SELECT u.c1, u.c2, u.c3, u.c4, 'running' \
             FROM unnest($1::text[], $2::text[], $3::int8[], $4::int8[]) AS u(c1, c2, c3, c4) ON CONFLICT DO NOTHING"
        );
    }

    #[test]
    fn upserts_updates_and_inserts_from_queries_are_not_merged() {
        let types = [Type::TEXT, Type::INT8];
        for sql in [
            "INSERT INTO comm_checks (party, last_ok_ms) VALUES ($1, $2) ON CONFLICT (party) DO UPDATE SET last_ok_ms = $2",
            "UPDATE deadlines SET state = 'met' WHERE message_id = $1 AND party = $2",
            "INSERT INTO compliance (party, kind) SELECT $1, $2 WHERE true",
            "INSERT INTO t (a, b) VALUES ($1, $2) RETURNING a",
        ] {
            assert_eq!(unnest_form(sql, &types), None, "{sql}");
        }
    }

    #[test]
    fn a_table_is_mentioned_only_as_a_whole_word() {
        assert!(mentions("SELECT exercise FROM messages WHERE id = $1", "messages"));
        assert!(!mentions("INSERT INTO outbox (message_id) VALUES ($1)", "messages"));
        assert!(!mentions("INSERT INTO messages_old (id) VALUES ($1)", "messages"));
    }
}
