//! Cache sizes for a replay: a share of the trace's unique keys (`5%`) or an entry count (`1000`).

use std::fmt;
use std::str::FromStr;

/// A requested capacity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Capacity {
    /// A percentage of the trace's unique keys, in (0, 100].
    Percent(f64),
    /// An absolute number of entries, at least 1.
    Entries(u64),
}

/// Why a capacity was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CapacityError {
    /// Neither `N%` nor a whole number.
    #[error("capacity {0:?} is neither a percentage (e.g. 5%) nor a whole number of entries")]
    Unparsable(String),
    /// Zero caches nothing.
    #[error("capacity {0:?} is zero; a replay needs room for at least one entry")]
    Zero(String),
    /// More than every unique key.
    #[error("capacity {0:?} is over 100% of the trace's unique keys")]
    OverFull(String),
}

impl FromStr for Capacity {
    type Err = CapacityError;

    fn from_str(s: &str) -> Result<Self, CapacityError> {
        let text = s.trim();
        if let Some(p) = text.strip_suffix('%') {
            let p: f64 = p.trim().parse().map_err(|_| CapacityError::Unparsable(s.to_string()))?;
            if !p.is_finite() || p < 0.0 {
                return Err(CapacityError::Unparsable(s.to_string()));
            }
            if p == 0.0 {
                return Err(CapacityError::Zero(s.to_string()));
            }
            if p > 100.0 {
                return Err(CapacityError::OverFull(s.to_string()));
            }
            return Ok(Capacity::Percent(p));
        }
        match text.parse::<u64>() {
            Ok(0) => Err(CapacityError::Zero(s.to_string())),
            Ok(n) => Ok(Capacity::Entries(n)),
            Err(_) => Err(CapacityError::Unparsable(s.to_string())),
        }
    }
}

impl fmt::Display for Capacity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Capacity::Percent(p) => write!(f, "{p}%"),
            Capacity::Entries(n) => write!(f, "{n}"),
        }
    }
}

impl Capacity {
    /// Entries for a trace with `unique` distinct keys (at least 1).
    pub fn entries(self, unique: usize) -> u64 {
        match self {
            // libCacheSim's convention: floor(unique × N / 100), at least one entry.
            Capacity::Percent(p) => ((unique as f64 * p / 100.0).floor() as u64).max(1),
            Capacity::Entries(n) => n,
        }
    }
}

/// Parses a comma-separated list, e.g. `1%,5%,10%,25%`.
pub fn parse_list(s: &str) -> Result<Vec<Capacity>, CapacityError> {
    s.split(',').filter(|p| !p.trim().is_empty()).map(str::parse).collect()
}

/// The default sweep: 1%, 5%, 10% and 25% of the unique keys.
pub fn default_sweep() -> Vec<Capacity> {
    [1.0, 5.0, 10.0, 25.0].into_iter().map(Capacity::Percent).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_percentages_and_counts() {
        assert_eq!(
            parse_list("1%, 5%,1000").unwrap(),
            vec![Capacity::Percent(1.0), Capacity::Percent(5.0), Capacity::Entries(1000)]
        );
        assert_eq!(Capacity::Percent(10.0).entries(186_880), 18_688);
        // floor(unique × N / 100), as libCacheSim counts: 1% of 7,075 is 70 (rounding gave 71).
        assert_eq!(Capacity::Percent(1.0).entries(7_075), 70);
        assert_eq!(Capacity::Percent(0.001).entries(10), 1);
        assert_eq!(Capacity::Entries(7).to_string(), "7");
        assert_eq!(default_sweep().len(), 4);
    }

    #[test]
    fn refuses_bad_capacities() {
        assert!(matches!("0".parse::<Capacity>(), Err(CapacityError::Zero(_))));
        assert!(matches!("0%".parse::<Capacity>(), Err(CapacityError::Zero(_))));
        assert!(matches!("101%".parse::<Capacity>(), Err(CapacityError::OverFull(_))));
        assert!(matches!("ten".parse::<Capacity>(), Err(CapacityError::Unparsable(_))));
        assert!(matches!("-5%".parse::<Capacity>(), Err(CapacityError::Unparsable(_))));
        assert!(matches!("NaN%".parse::<Capacity>(), Err(CapacityError::Unparsable(_))));
        assert!(parse_list("5%,x").is_err());
    }
}
