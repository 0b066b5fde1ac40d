//! The joint report: one self-contained HTML page of a reconciliation (the
//! same template engine as the compliance report): who sent whom what as
//! both logs show it, each cell green or naming its findings, and every
//! finding with its evidence.

use std::collections::BTreeMap;

use minijinja::{Environment, context};

use super::finding::{Pair, Reconciliation};

const TEMPLATE: &str = include_str!("report.html");

/// The page for `r`, generated at `generated` (RFC 3339).
pub fn render(r: &Reconciliation, generated: &str) -> Result<String, String> {
    let parties: Vec<&String> = r.logs.keys().collect();
    let cells: BTreeMap<String, &Pair> = r.pairs.iter().map(|p| (format!("{}→{}", p.from, p.to), p)).collect();
    let mut env = Environment::new();
    env.add_template("report.html", TEMPLATE).map_err(|e| e.to_string())?;
    env.get_template("report.html")
        .and_then(|t| t.render(context! { r, parties, cells, generated }))
        .map_err(|e| e.to_string())
}
