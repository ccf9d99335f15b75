//! TLP marking definitions as the OpenCTI connector ecosystem writes them: the STIX 2.1 TLP 1.0 objects (fixed
//! ids and `created` dates, as `stix2.TLP_*` holds them), which OpenCTI maps onto its TLP:CLEAR/GREEN/AMBER/RED,
//! and pycti's statement marking for TLP:AMBER+STRICT.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

use crate::id::{ObjectType, StixId};
use crate::object::{MarkingContent, MarkingDefinition, SpecVersion};
use crate::timestamp::Timestamp;

/// A Traffic Light Protocol level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tlp {
    /// TLP:CLEAR, written as STIX's TLP:WHITE object (same id).
    Clear,
    Green,
    Amber,
    AmberStrict,
    Red,
}

/// An unknown TLP level name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlpError {
    text: String,
}

impl fmt::Display for TlpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` is not a TLP level (expected clear, white, green, amber, amber+strict or red)", self.text)
    }
}

impl std::error::Error for TlpError {}

impl FromStr for Tlp {
    type Err = TlpError;

    /// Accepts `clear`, `white`, `green`, `amber`, `amber+strict`, `red`, any case, with or without `TLP:`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let lower = text.trim().to_ascii_lowercase();
        let level = lower.strip_prefix("tlp:").unwrap_or(&lower);
        match level {
            "clear" | "white" => Ok(Self::Clear),
            "green" => Ok(Self::Green),
            "amber" => Ok(Self::Amber),
            "amber+strict" => Ok(Self::AmberStrict),
            "red" => Ok(Self::Red),
            _ => Err(TlpError { text: text.to_owned() }),
        }
    }
}

/// `2017-01-20T00:00:00.000Z`, the `created` of the STIX TLP objects.
const TLP_CREATED: Timestamp = Timestamp::from_unix_millis(1_484_870_400_000);
/// A fixed `created` for the AMBER+STRICT statement marking, so that every run emits the same object.
const AMBER_STRICT_CREATED: Timestamp = Timestamp::from_unix_millis(1_664_582_400_000);

impl Tlp {
    /// The OpenCTI name of the level, e.g. `TLP:AMBER+STRICT`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Clear => "TLP:CLEAR",
            Self::Green => "TLP:GREEN",
            Self::Amber => "TLP:AMBER",
            Self::AmberStrict => "TLP:AMBER+STRICT",
            Self::Red => "TLP:RED",
        }
    }

    /// The marking definition's id (`pycti.MarkingDefinition.generate_id("TLP", name)`).
    pub const fn id(self) -> StixId {
        let uuid = match self {
            Self::Clear => 0x613f2e26_407d_48c7_9eca_b8e91df99dc9,
            Self::Green => 0x34098fce_860f_48ae_8e50_ebd3cc5e41da,
            Self::Amber => 0xf88d31f6_486f_44da_b317_01333bde0b82,
            Self::AmberStrict => 0x826578e1_40ad_459f_bc73_ede076f81f37,
            Self::Red => 0x5e57c739_391a_4eb3_b6be_7d15ca92d5ed,
        };
        StixId::new(ObjectType::MarkingDefinition, Uuid::from_u128(uuid))
    }

    /// The marking definition object that goes into the bundle with the data.
    pub fn marking_definition(self) -> MarkingDefinition<'static> {
        let tlp = |name: &'static str, color: &'static str| MarkingDefinition {
            spec_version: SpecVersion,
            id: self.id(),
            created: TLP_CREATED,
            created_by_ref: None,
            name: Some(Cow::Borrowed(name)),
            definition_type: Cow::Borrowed("tlp"),
            definition: MarkingContent::Tlp { tlp: Cow::Borrowed(color) },
            x_opencti_definition_type: None,
            x_opencti_definition: None,
        };
        match self {
            Self::Clear => tlp("TLP:WHITE", "white"),
            Self::Green => tlp("TLP:GREEN", "green"),
            Self::Amber => tlp("TLP:AMBER", "amber"),
            Self::Red => tlp("TLP:RED", "red"),
            Self::AmberStrict => MarkingDefinition {
                spec_version: SpecVersion,
                id: self.id(),
                created: AMBER_STRICT_CREATED,
                created_by_ref: None,
                name: None,
                definition_type: Cow::Borrowed("statement"),
                definition: MarkingContent::Statement { statement: Cow::Borrowed("custom") },
                x_opencti_definition_type: Some(Cow::Borrowed("TLP")),
                x_opencti_definition: Some(Cow::Borrowed("TLP:AMBER+STRICT")),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_leniently() {
        assert_eq!("TLP:CLEAR".parse(), Ok(Tlp::Clear));
        assert_eq!("white".parse(), Ok(Tlp::Clear));
        assert_eq!(" Amber+Strict ".parse(), Ok(Tlp::AmberStrict));
        assert!("amber-strict".parse::<Tlp>().is_err());
        assert!("".parse::<Tlp>().is_err());
    }

    #[test]
    fn created_dates_are_the_stix_ones() {
        assert_eq!(TLP_CREATED.to_string(), "2017-01-20T00:00:00.000Z");
        assert_eq!(AMBER_STRICT_CREATED.to_string(), "2022-10-01T00:00:00.000Z");
    }
}
