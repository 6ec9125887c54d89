//! Trust tiers (spec 02 §6): earned by completed paid calls (`total_calls`).

use std::fmt;

/// Bronze 0–99, Silver 100–499, Gold 500–1,999, Platinum 2,000+ calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tier {
    Bronze = 0,
    Silver = 1,
    Gold = 2,
    Platinum = 3,
}

impl Tier {
    pub const ALL: [Tier; 4] = [Tier::Bronze, Tier::Silver, Tier::Gold, Tier::Platinum];

    /// The tier earned by `total_calls` completed calls.
    pub const fn from_total_calls(total_calls: u64) -> Tier {
        match total_calls {
            0..=99 => Tier::Bronze,
            100..=499 => Tier::Silver,
            500..=1_999 => Tier::Gold,
            _ => Tier::Platinum,
        }
    }

    /// Calls needed to reach this tier.
    pub const fn min_calls(self) -> u64 {
        match self {
            Tier::Bronze => 0,
            Tier::Silver => 100,
            Tier::Gold => 500,
            Tier::Platinum => 2_000,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Tier::Bronze => "bronze",
            Tier::Silver => "silver",
            Tier::Gold => "gold",
            Tier::Platinum => "platinum",
        }
    }

    pub fn parse(text: &str) -> Option<Tier> {
        Tier::ALL
            .into_iter()
            .find(|tier| tier.as_str().eq_ignore_ascii_case(text.trim()))
    }

    pub const fn as_u8(self) -> u8 {
        self as u8
    }

    pub fn from_u8(value: u8) -> Option<Tier> {
        Tier::ALL.get(usize::from(value)).copied()
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tier_boundaries_match_the_spec() {
        assert_eq!(Tier::from_total_calls(0), Tier::Bronze);
        assert_eq!(Tier::from_total_calls(99), Tier::Bronze);
        assert_eq!(Tier::from_total_calls(100), Tier::Silver);
        assert_eq!(Tier::from_total_calls(499), Tier::Silver);
        assert_eq!(Tier::from_total_calls(500), Tier::Gold);
        assert_eq!(Tier::from_total_calls(1_999), Tier::Gold);
        assert_eq!(Tier::from_total_calls(2_000), Tier::Platinum);
        for tier in Tier::ALL {
            assert_eq!(Tier::from_total_calls(tier.min_calls()), tier);
            assert_eq!(Tier::parse(tier.as_str()), Some(tier));
            assert_eq!(Tier::from_u8(tier.as_u8()), Some(tier));
        }
    }
}
