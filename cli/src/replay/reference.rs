//! The reference column of a replay: per cell, the best hit ratio of seven classic policies as
//! libCacheSim implements them, read from the TSV `scripts/libcachesim-best.py` prints.

use std::collections::HashMap;
use std::path::Path;

/// A cell's reference: the best hit ratio (percent) and the policy that reached it.
#[derive(Debug, Clone, PartialEq)]
pub struct Best {
    /// Hit ratio in percent.
    pub hit_ratio: f64,
    /// Which policy reached it (`lru`, `arc`, `s3fifo`, ...).
    pub policy: String,
}

/// The reference cells, by trace name and capacity in entries.
#[derive(Debug, Clone, Default)]
pub struct Reference {
    cells: HashMap<(String, u64), Best>,
}

/// Why a reference file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    /// The file could not be read.
    #[error("cannot read the reference {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A line is not what `scripts/libcachesim-best.py` prints.
    #[error(
        "{path}, line {line}: expected trace, capacity, entries, the policies, best and best_policy, tab-separated"
    )]
    Malformed {
        /// The file.
        path: String,
        /// The line number (1-based).
        line: usize,
    },
}

impl Reference {
    /// Reads the TSV at `path` (its header names the columns; `entries`, `best` and `best_policy` are used).
    pub fn load(path: &Path) -> Result<Self, ReferenceError> {
        let shown = path.display().to_string();
        let text =
            std::fs::read_to_string(path).map_err(|source| ReferenceError::Io { path: shown.clone(), source })?;
        Self::parse(&text, &shown)
    }

    /// Parses the TSV text (`path` names it in errors).
    pub fn parse(text: &str, path: &str) -> Result<Self, ReferenceError> {
        let malformed = |line| ReferenceError::Malformed { path: path.to_string(), line };
        let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
        let (_, header) = lines.next().ok_or_else(|| malformed(1))?;
        let columns: Vec<&str> = header.split('\t').collect();
        let col = |name: &str| columns.iter().position(|c| *c == name);
        let (Some(trace), Some(entries), Some(best), Some(policy)) =
            (col("trace"), col("entries"), col("best"), col("best_policy"))
        else {
            return Err(malformed(1));
        };
        let mut cells = HashMap::new();
        for (i, line) in lines {
            let fields: Vec<&str> = line.split('\t').collect();
            let field = |c: usize| fields.get(c).copied().ok_or_else(|| malformed(i + 1));
            let n: u64 = field(entries)?.parse().map_err(|_| malformed(i + 1))?;
            let hit_ratio: f64 = field(best)?.parse().map_err(|_| malformed(i + 1))?;
            cells.insert((field(trace)?.to_string(), n), Best { hit_ratio, policy: field(policy)?.to_string() });
        }
        Ok(Reference { cells })
    }

    /// The reference for `trace` at `entries`, if the file has it.
    pub fn get(&self, trace: &str, entries: u64) -> Option<&Best> {
        self.cells.get(&(trace.to_string(), entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_scripts_output_and_names_bad_lines() {
        let tsv = "trace\tcapacity\tentries\tlru\tbest\tbest_policy\nt\t1%\t7\t10.5\t12.25\tarc\n";
        let r = Reference::parse(tsv, "x.tsv").unwrap();
        assert_eq!(r.get("t", 7), Some(&Best { hit_ratio: 12.25, policy: "arc".into() }));
        assert_eq!(r.get("t", 8), None);
        let bad = Reference::parse("trace\tentries\tbest\tbest_policy\nt\tseven\t1\tlru\n", "x.tsv").unwrap_err();
        assert_eq!(
            bad.to_string(),
            "x.tsv, line 2: expected trace, capacity, entries, the policies, best and best_policy, tab-separated"
        );
        assert!(matches!(Reference::parse("no header here", "x.tsv"), Err(ReferenceError::Malformed { line: 1, .. })));
        assert!(matches!(Reference::load(Path::new("/nonexistent/best.tsv")), Err(ReferenceError::Io { .. })));
    }
}
