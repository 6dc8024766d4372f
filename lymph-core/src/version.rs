//! Interface versions: `name@X.Y.Z` on the server, caret requirements on the client, as lymph.

use std::fmt;

use crate::{Error, Result};

/// A version `X.Y.Z` of an interface. `X` and `X.Y` are accepted and filled with zeros.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    /// The major version; a client asking for `1.2` accepts any `1.y.z >= 1.2.0`.
    pub major: u64,
    /// The minor version.
    pub minor: u64,
    /// The patch version.
    pub patch: u64,
}

impl Version {
    /// Parses `X`, `X.Y` or `X.Y.Z`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when `text` is not such a version.
    pub fn parse(text: &str) -> Result<Self> {
        let bad = || Error::Config(format!("bad version {text:?}: expected X.Y.Z"));
        let mut parts = text.split('.');
        let mut next = |required: bool| -> Result<u64> {
            match parts.next() {
                Some(part) if !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) => {
                    part.parse().map_err(|_| bad())
                }
                None if !required => Ok(0),
                _ => Err(bad()),
            }
        };
        let version = Self { major: next(true)?, minor: next(false)?, patch: next(false)? };
        match parts.next() {
            Some(_) => Err(bad()),
            None => Ok(version),
        }
    }

    /// Whether this version satisfies the caret requirement `requirement`: the same major
    /// version and not older (lymph's `>=X.Y.Z,<X+1.0.0`).
    pub fn satisfies(&self, requirement: &Version) -> bool {
        self.major == requirement.major && self >= requirement
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Splits an interface key `name` or `name@X.Y.Z`.
///
/// # Errors
///
/// [`Error::Config`] when the name is empty or the version does not parse.
pub fn parse_interface_key(key: &str) -> Result<(String, Option<Version>)> {
    let (name, version) = match key.split_once('@') {
        Some((name, version)) => (name, Some(Version::parse(version)?)),
        None => (key, None),
    };
    if name.is_empty() {
        return Err(Error::Config(format!("bad interface name {key:?}")));
    }
    Ok((name.to_owned(), version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_and_fill_zeros() {
        assert_eq!(Version::parse("1.5").unwrap(), Version { major: 1, minor: 5, patch: 0 });
        assert_eq!(Version::parse("2").unwrap().to_string(), "2.0.0");
        assert_eq!(Version::parse("1.2.3").unwrap().to_string(), "1.2.3");
        for bad in ["", "1.", "a.b", "1.2.3.4", "-1", "1.2.x"] {
            assert!(Version::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn caret_matching_is_lymphs() {
        let v = |s| Version::parse(s).unwrap();
        assert!(v("1.5").satisfies(&v("1.2")));
        assert!(v("1.2").satisfies(&v("1.2")));
        assert!(!v("1.1").satisfies(&v("1.2")));
        assert!(!v("2.0").satisfies(&v("1.2")));
        assert!(!v("1.5").satisfies(&v("1.7")));
    }

    #[test]
    fn interface_keys_split_at_the_at_sign() {
        assert_eq!(parse_interface_key("foo").unwrap(), ("foo".to_owned(), None));
        assert_eq!(parse_interface_key("foo@1.5").unwrap().1, Some(Version::parse("1.5.0").unwrap()));
        assert!(parse_interface_key("@1.0").is_err());
        assert!(parse_interface_key("foo@x").is_err());
    }
}
