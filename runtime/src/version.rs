//! RPC API versions (`major.minor[.revision]`) and oslo.messaging's compatibility rule.
//!
//! The rule is implemented literally from `oslo_messaging._utils.version_is_compatible`, because
//! Python peers apply exactly that rule to what we send and we must apply it to what they send.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An RPC API version: `major.minor` or `major.minor.revision`.
///
/// The revision is kept as written, so `"1.2"` and `"1.2.0"` display as they were given but
/// compare as equal under [`Version::is_compatible`].
///
/// ```
/// use amqp_rpc::Version;
/// let v: Version = "1.3".parse()?;
/// assert_eq!((v.major(), v.minor(), v.revision()), (1, 3, 0));
/// assert_eq!(v.to_string(), "1.3");
/// # Ok::<(), amqp_rpc::RpcError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Version {
    major: u64,
    minor: u64,
    revision: Option<u64>,
}

impl Version {
    /// The version assumed when a request or an endpoint names none: `1.0`.
    pub const DEFAULT: Version = Version::new(1, 0);

    /// A `major.minor` version.
    #[must_use]
    pub const fn new(major: u64, minor: u64) -> Self {
        Version {
            major,
            minor,
            revision: None,
        }
    }

    /// A `major.minor.revision` version.
    #[must_use]
    pub const fn with_revision(major: u64, minor: u64, revision: u64) -> Self {
        Version {
            major,
            minor,
            revision: Some(revision),
        }
    }

    /// The major part: a change of major is incompatible.
    pub fn major(&self) -> u64 {
        self.major
    }

    /// The minor part: an implementation serves every minor up to its own.
    pub fn minor(&self) -> u64 {
        self.minor
    }

    /// The revision part, `0` when the version was written without one.
    pub fn revision(&self) -> u64 {
        self.revision.unwrap_or(0)
    }

    /// Whether an implementation of version `self` can serve a request for version `requested`.
    ///
    /// Same major, requested minor not above ours, and for an equal minor a requested revision
    /// not above ours (an absent revision counts as `0`).
    ///
    /// ```
    /// use amqp_rpc::Version;
    /// let imp = Version::new(1, 3);
    /// assert!(imp.is_compatible(&Version::new(1, 2)));
    /// assert!(!imp.is_compatible(&Version::new(1, 4)));
    /// assert!(!imp.is_compatible(&Version::new(2, 0)));
    /// assert!(!Version::DEFAULT.is_compatible(&Version::with_revision(1, 0, 1)));
    /// ```
    #[must_use]
    pub fn is_compatible(&self, requested: &Version) -> bool {
        if requested.major != self.major || requested.minor > self.minor {
            return false;
        }
        !(requested.minor == self.minor && requested.revision() > self.revision())
    }

    /// oslo's `version_is_compatible(imp, req)` with its handling of `None`: no implemented
    /// version accepts everything; no requested version (an explicit JSON `null`) is refused.
    #[must_use]
    pub fn compatible(implemented: Option<&Version>, requested: Option<&Version>) -> bool {
        match (implemented, requested) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(imp), Some(req)) => imp.is_compatible(req),
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)?;
        if let Some(revision) = self.revision {
            write!(f, ".{revision}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Version({self})")
    }
}

/// A string that is not `int.int` or `int.int.int`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid RPC version {input:?}: expected MAJOR.MINOR or MAJOR.MINOR.REVISION")]
pub struct ParseVersionError {
    /// The text that failed to parse.
    pub input: String,
}

impl FromStr for Version {
    type Err = ParseVersionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseVersionError {
            input: s.to_owned(),
        };
        let part = |p: &str| -> Result<u64, ParseVersionError> {
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err());
            }
            p.parse().map_err(|_| err())
        };
        let mut parts = s.split('.');
        let major = part(parts.next().ok_or_else(err)?)?;
        let minor = part(parts.next().ok_or_else(err)?)?;
        let revision = parts.next().map(part).transpose()?;
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(Version {
            major,
            minor,
            revision,
        })
    }
}

impl Serialize for Version {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn parses_two_and_three_parts_and_keeps_the_written_form() {
        assert_eq!(v("1.3"), Version::new(1, 3));
        assert_eq!(v("2.0.7"), Version::with_revision(2, 0, 7));
        assert_eq!(v("2.0.7").to_string(), "2.0.7");
        assert_eq!(v("1.10").to_string(), "1.10");
    }

    #[test]
    fn rejects_malformed_versions() {
        for bad in [
            "", "1", "1.", ".1", "1.2.3.4", "a.b", "1.-2", "1.2 ", "+1.2", "1..2",
        ] {
            assert!(bad.parse::<Version>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn oslo_compatibility_matrix() {
        let cases = [
            ("1.3", "1.2", true),
            ("1.3", "1.3", true),
            ("1.3", "1.0", true),
            ("1.3", "1.4", false),
            ("1.3", "2.0", false),
            ("2.0", "1.0", false),
            ("1.0", "1.0.1", false),
            ("1.0.1", "1.0", true),
            ("1.0.1", "1.0.1", true),
            ("1.0.1", "1.0.2", false),
            ("1.3.0", "1.2.9", true),
            ("1.3", "1.3.0", true),
        ];
        for (imp, req, expected) in cases {
            assert_eq!(
                v(imp).is_compatible(&v(req)),
                expected,
                "imp {imp} req {req}"
            );
        }
    }

    #[test]
    fn none_implemented_accepts_all_and_none_requested_is_refused() {
        assert!(Version::compatible(None, None));
        assert!(Version::compatible(None, Some(&v("9.9"))));
        assert!(!Version::compatible(Some(&v("1.0")), None));
    }

    #[test]
    fn serde_uses_the_string_form() {
        assert_eq!(
            serde_json::to_string(&v("1.2")).ok(),
            Some("\"1.2\"".into())
        );
        let back: Version = serde_json::from_str("\"3.4.5\"").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, Version::with_revision(3, 4, 5));
        assert!(serde_json::from_str::<Version>("\"x\"").is_err());
    }
}
