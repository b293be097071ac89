//! Fixed-point, non-negative scalar quantities (cpus, mem in MB, disk in MB, gpus, custom).
//!
//! Stored as integer milli-units like Mesos (three decimal places), so sums are exact and
//! comparisons are total. Floats exist only at the edge: [`Scalar::from_f64`] validates and
//! rounds once, [`Scalar::as_f64`] converts back for the wire.

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::error::{Error, Result};

/// Milli-units per unit.
pub const SCALE: u64 = 1000;
/// Largest quantity accepted from outside, in units (a petabyte of memory in MB is 1e9).
pub const MAX_UNITS: u64 = 1_000_000_000_000;

/// A non-negative fixed-point quantity with three decimals.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Scalar(u64);

impl Scalar {
    pub const ZERO: Scalar = Scalar(0);

    pub const fn from_milli(milli: u64) -> Self {
        Scalar(milli)
    }

    pub const fn from_units(units: u64) -> Self {
        Scalar(units.saturating_mul(SCALE))
    }

    pub const fn milli(self) -> u64 {
        self.0
    }

    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// Validates a wire value: finite, not negative, not above [`MAX_UNITS`]; rounds to the
    /// nearest milli-unit. `field` names the value in the error.
    pub fn from_f64(field: &str, v: f64) -> Result<Self> {
        if v.is_nan() {
            return Err(Error::invalid(field, "is NaN"));
        }
        if v.is_infinite() {
            return Err(Error::invalid(field, "is infinite"));
        }
        if v < 0.0 {
            return Err(Error::invalid(field, format!("is negative ({v})")));
        }
        if v > MAX_UNITS as f64 {
            return Err(Error::invalid(
                field,
                format!("{v} is larger than the maximum {MAX_UNITS}"),
            ));
        }
        Ok(Scalar((v * SCALE as f64).round() as u64))
    }

    pub fn as_f64(self) -> f64 {
        self.0 as f64 / SCALE as f64
    }

    pub fn checked_add(self, o: Scalar) -> Option<Scalar> {
        self.0.checked_add(o.0).map(Scalar)
    }

    pub fn checked_sub(self, o: Scalar) -> Option<Scalar> {
        self.0.checked_sub(o.0).map(Scalar)
    }

    pub fn saturating_sub(self, o: Scalar) -> Scalar {
        Scalar(self.0.saturating_sub(o.0))
    }
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.0 / SCALE;
        let frac = self.0 % SCALE;
        if frac == 0 {
            write!(f, "{whole}")
        } else {
            let s = format!("{frac:03}");
            write!(f, "{whole}.{}", s.trim_end_matches('0'))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_non_finite_and_negative() {
        assert!(Scalar::from_f64("cpus", f64::NAN).is_err());
        assert!(Scalar::from_f64("cpus", f64::INFINITY).is_err());
        assert!(Scalar::from_f64("cpus", -0.5).is_err());
        assert!(Scalar::from_f64("cpus", 1e13).is_err());
        let e = Scalar::from_f64("resources.cpus", -1.0).unwrap_err();
        assert_eq!(e.field(), Some("resources.cpus"));
    }

    #[test]
    fn rounds_to_milli_and_prints_short() {
        assert_eq!(Scalar::from_f64("x", 0.1).unwrap().milli(), 100);
        assert_eq!(Scalar::from_f64("x", 0.0004).unwrap().milli(), 0);
        assert_eq!(Scalar::from_f64("x", 2.5).unwrap().to_string(), "2.5");
        assert_eq!(Scalar::from_f64("x", 0.125).unwrap().to_string(), "0.125");
        assert_eq!(Scalar::from_units(4).to_string(), "4");
    }

    #[test]
    fn sums_are_exact() {
        let a = Scalar::from_f64("x", 0.1).unwrap();
        let b = Scalar::from_f64("x", 0.2).unwrap();
        assert_eq!(a.checked_add(b), Some(Scalar::from_f64("x", 0.3).unwrap()));
        assert_eq!(a.checked_sub(b), None);
        assert_eq!(Scalar::from_milli(u64::MAX).checked_add(a), None);
    }
}
