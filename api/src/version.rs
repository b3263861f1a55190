//! Plugin versions: strict semver, plus a text key that sorts like semver so
//! the store can compare versions in SQL on both backends.

use semver::{Prerelease, Version};

/// Parses a plugin version: strict semver (`1.3.5`, `2.0.0-rc.1`); a leading
/// `v` is tolerated because plugins often report tags.
pub fn parse(text: &str) -> Result<Version, semver::Error> {
    Version::parse(text.strip_prefix('v').unwrap_or(text))
}

/// A version read back from the store (validated when it came in): one that no longer
/// parses counts as the lowest, 0.0.0.
pub fn parse_or_lowest(text: &str) -> Version {
    parse(text).unwrap_or(Version::new(0, 0, 0))
}

/// A key whose bytewise order is semver precedence: numbers are zero-padded,
/// a release sorts after its pre-releases (`~` > `-`), numeric pre-release
/// identifiers sort before alphanumeric ones. Build metadata is ignored, as
/// semver precedence says.
pub fn sort_key(version: &Version) -> String {
    let mut key = format!(
        "{:020}.{:020}.{:020}",
        version.major, version.minor, version.patch
    );
    if version.pre == Prerelease::EMPTY {
        key.push('~');
    } else {
        key.push('-');
        for (index, identifier) in version.pre.as_str().split('.').enumerate() {
            if index > 0 {
                key.push('.');
            }
            match identifier.parse::<u64>() {
                Ok(number) => key.push_str(&format!("0{number:020}")),
                Err(_) => {
                    key.push('1');
                    key.push_str(identifier);
                }
            }
        }
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_order_is_semver_precedence() {
        // The ordering example of semver.org §11, plus numeric widths that a
        // plain string comparison gets wrong.
        let ordered = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "1.2.9",
            "1.10.0",
            "2.0.0",
            "10.0.0",
        ];
        for pair in ordered.windows(2) {
            let (a, b) = (parse(pair[0]).unwrap(), parse(pair[1]).unwrap());
            assert!(a < b, "semver itself orders {a} < {b}");
            assert!(sort_key(&a) < sort_key(&b), "key must order {a} < {b}");
        }
    }

    #[test]
    fn build_metadata_and_v_prefix_do_not_change_the_key() {
        let plain = sort_key(&parse("1.3.5").unwrap());
        assert_eq!(plain, sort_key(&parse("v1.3.5").unwrap()));
        assert_eq!(plain, sort_key(&parse("1.3.5+build.7").unwrap()));
    }
}
