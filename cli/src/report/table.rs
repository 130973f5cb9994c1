//! Markdown tables: one per trace, capacities as rows, contenders as columns, hit ratio in percent.

use std::fmt::Write;

use crate::replay::TraceResult;

/// Renders every trace's table. When both `hybrid` and `opt` ran, a last column gives the gap between them.
pub fn markdown(results: &[TraceResult]) -> String {
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
            out.push('\n');
        }
        out.push('\n');
    }
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
        let md = markdown(&[r]);
        assert!(md.contains("cold-miss ceiling 90.00%"), "{md}");
        assert!(md.contains("| capacity | entries | hybrid | opt | opt − hybrid |"), "{md}");
        assert!(md.contains("| 10% | 1 | 40.00 | 55.50 | 15.50 |"), "{md}");
    }
}
