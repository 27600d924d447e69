//! Names of files and directories: what may exist, and the names of conflict copies.

use crate::time::WallTime;

/// Longest name in bytes (the common filesystem limit).
pub const MAX_NAME_BYTES: usize = 255;

/// Why a name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Empty, "." or "..".
    #[error("name {0:?} is reserved")]
    Reserved(String),
    /// Contains '/', '\\' or NUL.
    #[error("name {0:?} contains a separator or NUL")]
    BadCharacter(String),
    /// Longer than [`MAX_NAME_BYTES`].
    #[error("name of {0} bytes is longer than {MAX_NAME_BYTES}")]
    TooLong(usize),
}

/// Accepts a name that can exist in a directory on every supported platform.
pub fn validate_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() || name == "." || name == ".." {
        return Err(NameError::Reserved(name.to_owned()));
    }
    if name.contains(['/', '\\', '\0']) {
        return Err(NameError::BadCharacter(name.to_owned()));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(NameError::TooLong(name.len()));
    }
    Ok(())
}

/// `NAME (conflict from DEVICE YYYY-MM-DD HHMMSS).EXT`, always a valid name.
pub fn conflict_name(name: &str, device: &str, at: WallTime) -> String {
    let (stem, ext) = match name.rfind('.') {
        Some(dot) if dot > 0 => (&name[..dot], &name[dot..]),
        _ => (name, ""),
    };
    let device: String = device
        .chars()
        .map(|c| {
            if matches!(c, '/' | '\\' | '\0') || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .take(32)
        .collect();
    let (y, mo, d, h, mi, s) = at.to_utc_parts();
    let suffix = format!(" (conflict from {device} {y:04}-{mo:02}-{d:02} {h:02}{mi:02}{s:02})");
    let ext = truncate(ext, 32);
    let room = MAX_NAME_BYTES.saturating_sub(suffix.len() + ext.len());
    format!("{}{suffix}{ext}", truncate(stem, room))
}

/// For a name [`conflict_name`] made, the name of the file it is a copy of (`None` for any
/// other name). A stem or extension that `conflict_name` shortened stays shortened.
pub fn conflict_original(name: &str) -> Option<String> {
    const MARK: &str = " (conflict from ";
    // The last mark: a copy of a copy keeps the first mark in its stem. `DEVICE YYYY-MM-DD
    // HHMMSS` ends at the first `)` preceded by a date and a time and followed
    // by nothing or an extension (a device name may hold `)` or spaces itself).
    const STAMP: &[u8] = b" 0000-00-00 000000";
    let start = name.rfind(MARK)?;
    let rest = &name[start + MARK.len()..];
    rest.match_indices(')').find_map(|(close, _)| {
        let before = &rest.as_bytes()[..close];
        let stamp = before.get(before.len().checked_sub(STAMP.len())?..)?;
        let device = before.len() - STAMP.len();
        let fits = stamp.iter().zip(STAMP).all(|(c, want)| {
            if *want == b'0' {
                c.is_ascii_digit()
            } else {
                c == want
            }
        });
        let ext = &rest[close + 1..];
        (fits && device > 0 && (ext.is_empty() || ext.starts_with('.')))
            .then(|| format!("{}{ext}", &name[..start]))
    })
}

/// The longest prefix of `text` of at most `max` bytes, cut on a character boundary.
fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        let cases: &[(&str, bool)] = &[
            ("a.txt", true),
            (".bashrc", true),
            ("", false),
            (".", false),
            ("..", false),
            ("a/b", false),
            ("a\\b", false),
            ("a\0b", false),
            (&"x".repeat(255), true),
            (&"x".repeat(256), false),
        ];
        for (name, ok) in cases {
            assert_eq!(validate_name(name).is_ok(), *ok, "{name:?}");
        }
    }

    #[test]
    fn conflict_names_follow_the_format() {
        let at = WallTime(1_730_036_707_000); // 2024-10-27 13:45:07 UTC
        let cases = [
            (
                "report.txt",
                "laptop",
                "report (conflict from laptop 2024-10-27 134507).txt",
            ),
            (
                "Makefile",
                "pc",
                "Makefile (conflict from pc 2024-10-27 134507)",
            ),
            (
                ".bashrc",
                "pc",
                ".bashrc (conflict from pc 2024-10-27 134507)",
            ),
            (
                "a.tar.gz",
                "pc",
                "a.tar (conflict from pc 2024-10-27 134507).gz",
            ),
            (
                "x",
                "evil/dev\0",
                "x (conflict from evil_dev_ 2024-10-27 134507)",
            ),
        ];
        for (name, device, expected) in cases {
            assert_eq!(conflict_name(name, device, at), expected);
        }
    }

    #[test]
    fn a_conflict_copy_names_its_original() {
        let at = WallTime(1_730_036_707_000);
        for (name, device) in [
            ("report.txt", "laptop"),
            ("Makefile", "pc"),
            (".bashrc", "pc"),
            ("a.tar.gz", "pc"),
            ("x", "evil/dev\0"),
            ("notes (1).md", "my (old) pc"),
            ("two (conflict from a 2024-10-27 134507).txt", "b"),
        ] {
            let copy = conflict_name(name, device, at);
            assert_eq!(conflict_original(&copy).as_deref(), Some(name), "{copy}");
        }
        for name in [
            "report.txt",
            "x (conflict from ",
            "x (conflict from 2024-10-27 134507)",
            "x (conflict from pc 2024-10-27 13450).txt",
            "x (conflict from pc 2024-10-27 134507)txt",
        ] {
            assert_eq!(conflict_original(name), None, "{name}");
        }
    }

    #[test]
    fn conflict_names_of_long_names_stay_valid() {
        let long = format!("{}.txt", "é".repeat(200));
        let name = conflict_name(&long, "dev", WallTime(0));
        assert!(validate_name(&name).is_ok(), "{} bytes", name.len());
        assert!(name.ends_with(").txt"));
    }
}
