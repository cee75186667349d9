//! The A2A protocol: one internal model, rendered and parsed per version.

pub mod capabilities;
pub mod card;
pub mod card_signing;
pub mod card_v0_3;
pub mod extended_card;
pub mod forward;
pub mod handoff;
pub mod jsonrpc;
pub mod model;
pub mod reply;
pub mod rest;
pub mod sse;
pub mod v0_3;
pub mod v1;

/// The A2A protocol generations the service speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtocolVersion {
    V0_3,
    V1_0,
}

impl ProtocolVersion {
    /// `0.3`, `0.3.0`, `1.0`, `1.0.2`: the patch level is ignored.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let mut parts = text.split('.');
        let major = parts.next()?;
        let minor = parts.next()?;
        if parts
            .next()
            .is_some_and(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
        {
            return None;
        }
        match (major, minor) {
            ("0", "3") => Some(Self::V0_3),
            ("1", "0") => Some(Self::V1_0),
            _ => None,
        }
    }

    /// The version a request asks for through its `A2A-Version` header; no
    /// header means 0.3 (the header arrived with 1.0).
    pub fn from_header(value: Option<&str>) -> Result<Self, String> {
        match value.map(str::trim).filter(|v| !v.is_empty()) {
            None => Ok(Self::V0_3),
            Some(v) => Self::parse(v)
                .ok_or_else(|| format!("A2A version {v:?} is not supported; use 1.0 or 0.3")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::V0_3 => "0.3",
            Self::V1_0 => "1.0",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_header() {
        assert_eq!(
            ProtocolVersion::from_header(None),
            Ok(ProtocolVersion::V0_3)
        );
        assert_eq!(
            ProtocolVersion::from_header(Some("1.0")),
            Ok(ProtocolVersion::V1_0)
        );
        assert_eq!(
            ProtocolVersion::from_header(Some("1.0.3")),
            Ok(ProtocolVersion::V1_0)
        );
        assert_eq!(
            ProtocolVersion::from_header(Some("0.3.0")),
            Ok(ProtocolVersion::V0_3)
        );
        assert!(ProtocolVersion::from_header(Some("2.0")).is_err());
        assert!(ProtocolVersion::from_header(Some("1")).is_err());
    }
}
