//! Names of files and directories: what may exist, the names of conflict copies, and names that
//! some device's file system cannot hold as they are: two names that differ only in case or in
//! Unicode normalisation (NFC/NFD) are one name on a case-insensitive file system (macOS,
//! Windows, ext4 with casefold), and Windows refuses reserved device names (`CON`, `NUL`,
//! `COM1`...), names ending in a dot or a space, and the characters `<>:"|?*`.

use std::borrow::Cow;

use unicode_normalization::UnicodeNormalization;

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

/// How a name is compared on a file system that does not tell case (or normalisation)
/// apart: NFC, then lower case. Two names with one key are one name there.
pub fn fold_key(name: &str) -> Cow<'_, str> {
    if name.is_ascii() {
        if name.bytes().any(|b| b.is_ascii_uppercase()) {
            return Cow::Owned(name.to_ascii_lowercase());
        }
        return Cow::Borrowed(name);
    }
    Cow::Owned(name.nfc().flat_map(char::to_lowercase).nfc().collect())
}

/// Why Windows (or macOS) cannot hold a name that is valid here, if it cannot.
pub fn portability_issue(name: &str) -> Option<&'static str> {
    if name.ends_with('.') || name.ends_with(' ') {
        return Some("Windows refuses names ending in a dot or a space");
    }
    if name.contains(['<', '>', ':', '"', '|', '?', '*']) {
        return Some("Windows refuses the characters <>:\"|?*");
    }
    if name.chars().any(|c| c.is_control()) {
        return Some("Windows refuses control characters in names");
    }
    // `CON`, `con.txt`, `Com1.tar.gz`: the part before the first dot, trailing spaces ignored.
    let device = name.split('.').next().unwrap_or(name).trim_end_matches(' ');
    let upper = device.to_ascii_uppercase();
    let reserved = matches!(upper.as_str(), "CON" | "PRN" | "AUX" | "NUL")
        || (upper.len() == 4
            && (upper.starts_with("COM") || upper.starts_with("LPT"))
            && matches!(upper.as_bytes()[3], b'1'..=b'9'));
    reserved.then_some("Windows reserves this device name")
}

/// `NAME (case clash N).EXT`: the name a device that cannot hold two names differing only in
/// case (or normalisation) gives the second and later of them, always a valid name.
pub fn clash_name(name: &str, counter: usize) -> String {
    let (stem, ext) = match name.rfind('.') {
        Some(dot) if dot > 0 => (&name[..dot], &name[dot..]),
        _ => (name, ""),
    };
    let suffix = format!(" (case clash {counter})");
    let ext = truncate(ext, 32);
    let room = MAX_NAME_BYTES.saturating_sub(suffix.len() + ext.len());
    format!("{}{suffix}{ext}", truncate(stem, room))
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
    fn names_that_fold_together_share_a_key() {
        let same: &[(&str, &str)] = &[
            ("Readme.md", "README.md"),
            ("readme.md", "README.MD"),
            // é precomposed (NFC, Linux) and decomposed (NFD, macOS).
            ("caf\u{e9}.txt", "cafe\u{301}.txt"),
            ("CAF\u{c9}.txt", "cafe\u{301}.txt"),
            ("Stra\u{df}e", "STRA\u{df}E"),
        ];
        for (a, b) in same {
            assert_eq!(fold_key(a), fold_key(b), "{a:?} and {b:?}");
        }
        let different: &[(&str, &str)] = &[("a.txt", "b.txt"), ("a.txt", "a.txt "), ("1", "l")];
        for (a, b) in different {
            assert_ne!(fold_key(a), fold_key(b), "{a:?} and {b:?}");
        }
    }

    #[test]
    fn names_windows_refuses_are_found() {
        let cases: &[(&str, bool)] = &[
            ("report.txt", true),
            ("CON", false),
            ("con.txt", false),
            ("Com1.tar.gz", false),
            ("LPT9", false),
            ("COM0", true),
            ("COM10", true),
            ("console", true),
            ("aux ", false),
            ("a.", false),
            ("what?.txt", false),
            ("a:b", false),
            ("tab\there", false),
            (".bashrc", true),
            ("naïve.txt", true),
        ];
        for (name, portable) in cases {
            assert_eq!(portability_issue(name).is_none(), *portable, "{name:?}");
        }
    }

    #[test]
    fn clash_names_are_valid_and_keep_the_extension() {
        assert_eq!(clash_name("Readme.md", 2), "Readme (case clash 2).md");
        assert_eq!(clash_name("Makefile", 3), "Makefile (case clash 3)");
        let long = format!("{}.txt", "é".repeat(200));
        let name = clash_name(&long, 2);
        assert!(validate_name(&name).is_ok(), "{} bytes", name.len());
        assert!(name.ends_with(" (case clash 2).txt"));
    }

    #[test]
    fn conflict_names_of_long_names_stay_valid() {
        let long = format!("{}.txt", "é".repeat(200));
        let name = conflict_name(&long, "dev", WallTime(0));
        assert!(validate_name(&name).is_ok(), "{} bytes", name.len());
        assert!(name.ends_with(").txt"));
    }
}
