use std::fmt;
use std::num::IntErrorKind;

use serde::{Deserialize, Serialize};

/// A non-negative number of minor units (cents). Holding one means it was
/// parsed and checked: the sign rules live here and nowhere else.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Amount(i64);

/// The least a transfer moves (docs/API.md, "Values"). A zero transfer would
/// change nothing and record nothing, yet still answer whether its target
/// exists: a free, traceless probe of account ids. So it is refused with
/// the parameters, before any account is looked at.
pub const TRANSFER_AMOUNT_MIN: i64 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("is empty")]
    Empty,
    #[error("is not an integer number of minor units (an optional sign and ASCII digits)")]
    NotAnInteger,
    #[error("is out of range (at most 9223372036854775807)")]
    OutOfRange,
    #[error("is negative")]
    Negative,
    #[error("is less than {TRANSFER_AMOUNT_MIN}: a transfer moves at least {TRANSFER_AMOUNT_MIN}")]
    BelowTransferMinimum,
}

impl Amount {
    pub const ZERO: Amount = Amount(0);

    pub const fn new(value: i64) -> Option<Amount> {
        if value < 0 { None } else { Some(Amount(value)) }
    }

    pub const fn value(self) -> i64 {
        self.0
    }

    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// The grammar of docs/API.md ("Values"): an optional `+` or `-`, ASCII digits
    /// (leading zeros allowed), within i64. `-0` is zero; any other negative
    /// value is refused. Rust's integer parser accepts exactly that grammar, so
    /// it is the one place the digits are read.
    pub fn parse(text: &str) -> Result<Amount, AmountError> {
        match text.parse::<i64>() {
            Ok(value) if value < 0 => Err(AmountError::Negative),
            Ok(value) => Ok(Amount(value)),
            Err(error) => Err(match error.kind() {
                IntErrorKind::Empty => AmountError::Empty,
                IntErrorKind::PosOverflow | IntErrorKind::NegOverflow => AmountError::OutOfRange,
                _ => AmountError::NotAnInteger,
            }),
        }
    }

    /// [`Amount::parse`], then at least [`TRANSFER_AMOUNT_MIN`]: the
    /// amount of a transfer.
    pub fn parse_transfer(text: &str) -> Result<Amount, AmountError> {
        match Amount::parse(text)? {
            amount if amount.value() < TRANSFER_AMOUNT_MIN => {
                Err(AmountError::BelowTransferMinimum)
            }
            amount => Ok(amount),
        }
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_forms() {
        assert_eq!(Amount::parse("42"), Ok(Amount(42)));
        assert_eq!(Amount::parse("+42"), Ok(Amount(42)));
        assert_eq!(Amount::parse("0042"), Ok(Amount(42)));
        assert_eq!(Amount::parse("-0"), Ok(Amount(0)));
        assert_eq!(Amount::parse("0"), Ok(Amount(0)));
        assert_eq!(Amount::parse("9223372036854775807"), Ok(Amount(i64::MAX)));
        assert_eq!(Amount::parse("000000000000000000000000001"), Ok(Amount(1)));
    }

    #[test]
    fn refuses_everything_else() {
        assert_eq!(Amount::parse(""), Err(AmountError::Empty));
        assert_eq!(Amount::parse("-1"), Err(AmountError::Negative));
        assert_eq!(
            Amount::parse("-9223372036854775808"),
            Err(AmountError::Negative)
        );
        assert_eq!(
            Amount::parse("9223372036854775808"),
            Err(AmountError::OutOfRange)
        );
        assert_eq!(
            Amount::parse("-99999999999999999999"),
            Err(AmountError::OutOfRange)
        );
        for text in [
            "42.5", "1e3", "banana", " 1", "1 ", "+", "-", "++1", "٣", "１", "0x10", "1_000",
        ] {
            assert_eq!(
                Amount::parse(text),
                Err(AmountError::NotAnInteger),
                "{text:?}"
            );
        }
    }

    #[test]
    fn a_transfer_moves_at_least_one() {
        for zero in ["0", "-0", "+0", "000"] {
            assert_eq!(
                Amount::parse_transfer(zero),
                Err(AmountError::BelowTransferMinimum),
                "{zero:?}"
            );
        }
        assert_eq!(Amount::parse_transfer("1"), Ok(Amount(TRANSFER_AMOUNT_MIN)));
        assert_eq!(Amount::parse_transfer("-1"), Err(AmountError::Negative));
        assert_eq!(Amount::parse_transfer("x"), Err(AmountError::NotAnInteger));
    }
}
