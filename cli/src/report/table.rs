//! Markdown tables: one per trace, capacities as rows, contenders as columns, hit ratio in percent.

use std::fmt::Write;

use crate::replay::TraceResult;
use crate::replay::reference::Reference;

/// Renders every trace's table. When both `hybrid` and `opt` ran, a column gives the gap between them;
/// with a `reference`, two more give libCacheSim's best of seven for the cell (and which policy) and its
/// lead over `hybrid`.
pub fn markdown(results: &[TraceResult], reference: Option<&Reference>) -> String {
    let mut out = String::new();
    for r in results {
        let _ = writeln!(
            out,
            "### {} ({} accesses, {} unique keys; cold-miss ceiling {:.2}%)\n",
            r.name, r.accesses, r.unique, r.ceiling
        );
        let gap = r.contenders.iter().any(|c| c == "hybrid") && r.contenders.iter().any(|c| c == "opt");
        let mut header = String::from("| capacity | entries |");
        let mut rule = String::from("|---:|---:|");
        for c in &r.contenders {
            let _ = write!(header, " {c} |");
            rule.push_str("---:|");
        }
        if gap {
            header.push_str(" opt − hybrid |");
            rule.push_str("---:|");
        }
        if reference.is_some() {
            header.push_str(" best of 7 | best − hybrid |");
            rule.push_str("---:|---:|");
        }
        let _ = writeln!(out, "{header}\n{rule}");
        for row in &r.rows {
            let _ = write!(out, "| {:.0}% | {} |", row.percent, row.entries);
            for v in &row.hit_ratio {
                let _ = write!(out, " {v:.2} |");
            }
            if gap {
                let (h, o) = (r.get(row, "hybrid").unwrap_or(0.0), r.get(row, "opt").unwrap_or(0.0));
                let _ = write!(out, " {:.2} |", o - h);
            }
            if let Some(reference) = reference {
                match (reference.get(&r.name, row.entries), r.get(row, "hybrid")) {
                    (Some(best), Some(h)) => {
                        let _ = write!(out, " {:.2} ({}) | {:.2} |", best.hit_ratio, best.policy, best.hit_ratio - h);
                    }
                    (Some(best), None) => {
                        let _ = write!(out, " {:.2} ({}) | — |", best.hit_ratio, best.policy);
                    }
                    (None, _) => out.push_str(" — | — |"),
                }
            }
            out.push('\n');
        }
        out.push('\n');
    }
    out
}

/// The mean hit ratio of contender `name` over every row of every trace, if it ran.
pub fn mean_hit_ratio(results: &[TraceResult], name: &str) -> Option<f64> {
    let cells: Vec<f64> = results.iter().flat_map(|r| r.rows.iter().filter_map(|row| r.get(row, name))).collect();
    (!cells.is_empty()).then(|| cells.iter().sum::<f64>() / cells.len() as f64)
}

/// One row: each contender's mean hit ratio over every cell (the headline figure), and with a
/// `reference` the mean of its per-cell best of seven (over the cells it covers).
pub fn means(results: &[TraceResult], reference: Option<&Reference>) -> String {
    let Some(first) = results.first() else { return String::new() };
    let cells: usize = results.iter().map(|r| r.rows.len()).sum();
    let mut out = format!("### Mean over the {cells} cells\n\n|");
    let mut rule = String::from("|");
    let mut row = String::from("|");
    for c in &first.contenders {
        let _ = write!(out, " {c} |");
        rule.push_str("---:|");
        let _ = write!(row, " {:.2} |", mean_hit_ratio(results, c).unwrap_or(0.0));
    }
    if let Some(reference) = reference {
        let best: Vec<f64> = results
            .iter()
            .flat_map(|r| r.rows.iter().filter_map(|row| reference.get(&r.name, row.entries).map(|b| b.hit_ratio)))
            .collect();
        if !best.is_empty() {
            let _ = write!(out, " best of 7 ({} cells) |", best.len());
            rule.push_str("---:|");
            let _ = write!(row, " {:.2} |", best.iter().sum::<f64>() / best.len() as f64);
        }
    }
    let _ = writeln!(out, "\n{rule}\n{row}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::Row;

    #[test]
    fn renders_a_table_with_the_gap() {
        let r = TraceResult {
            name: "t".into(),
            accesses: 100,
            unique: 10,
            ceiling: 90.0,
            contenders: vec!["hybrid".into(), "opt".into()],
            rows: vec![Row { entries: 1, percent: 10.0, hit_ratio: vec![40.0, 55.5] }],
        };
        let md = markdown(&[r], None);
        assert!(md.contains("cold-miss ceiling 90.00%"), "{md}");
        assert!(md.contains("| capacity | entries | hybrid | opt | opt − hybrid |"), "{md}");
        assert!(md.contains("| 10% | 1 | 40.00 | 55.50 | 15.50 |"), "{md}");
    }
}
