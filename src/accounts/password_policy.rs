//! Password policy: what a new password must satisfy.
//!
//! A password must be between [`MIN_CHARS`] and [`MAX_CHARS`] characters long
//! (counted as Unicode scalar values, not bytes) and must not be one of the
//! common passwords listed in `assets/common-passwords.txt` (compared without
//! regard to case). The list's source and licence are in
//! `assets/common-passwords.LICENSE.md`.
//!
//! The password is never trimmed or otherwise normalised: what the person
//! typed is what gets hashed.
//!
//! This module is self-contained (no `crate::` paths) so it can be compiled
//! and tested on its own.

use std::collections::HashSet;
use std::fmt;
use std::sync::LazyLock;

/// Fewest characters (Unicode scalar values) a password may have.
pub const MIN_CHARS: usize = 8;

/// Most characters (Unicode scalar values) a password may have.
pub const MAX_CHARS: usize = 256;

/// The common-password list, one lowercase entry per line, most common first.
const COMMON_PASSWORDS_TXT: &str = include_str!("../../assets/common-passwords.txt");

/// The common-password list as a set, built on first use.
static COMMON_PASSWORDS: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| COMMON_PASSWORDS_TXT.lines().filter(|line| !line.is_empty()).collect());

/// A password that passed the policy.
///
/// Its `Debug` output is redacted and it has no `Display`, so it cannot end
/// up in logs by accident. Use [`Password::expose`] to get the text, for
/// hashing only.
pub struct Password(String);

impl Password {
    /// The password's text, exactly as it was given to [`parse`].
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password([redacted])")
    }
}

/// Why a candidate password was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeakPassword {
    /// Fewer than [`MIN_CHARS`] characters.
    TooShort,
    /// More than [`MAX_CHARS`] characters.
    TooLong,
    /// In the list of common passwords (ignoring case).
    Common,
}

impl fmt::Display for WeakPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WeakPassword::TooShort => write!(f, "Use at least {MIN_CHARS} characters."),
            WeakPassword::TooLong => write!(f, "Use at most {MAX_CHARS} characters."),
            WeakPassword::Common => f.write_str("This password is too common; choose another."),
        }
    }
}

impl std::error::Error for WeakPassword {}

/// Checks `candidate` against the policy: length first, then the
/// common-password list. The candidate is not trimmed.
///
/// # Errors
///
/// [`WeakPassword::TooShort`] or [`WeakPassword::TooLong`] if the length is
/// outside [`MIN_CHARS`]..=[`MAX_CHARS`] characters, otherwise
/// [`WeakPassword::Common`] if it is in the common-password list.
pub fn parse(candidate: &str) -> Result<Password, WeakPassword> {
    // Count no further than one past the limit, so a huge input costs no more
    // than a long one.
    let chars = candidate.chars().take(MAX_CHARS + 1).count();
    if chars < MIN_CHARS {
        return Err(WeakPassword::TooShort);
    }
    if chars > MAX_CHARS {
        return Err(WeakPassword::TooLong);
    }
    if is_common(candidate) {
        return Err(WeakPassword::Common);
    }
    Ok(Password(candidate.to_owned()))
}

/// Whether `candidate`, lowercased, is in the common-password list.
#[must_use]
pub fn is_common(candidate: &str) -> bool {
    COMMON_PASSWORDS.contains(candidate.to_lowercase().as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(candidate: &str) -> WeakPassword {
        parse(candidate).expect_err("password should have been refused")
    }

    fn accepted(candidate: &str) -> Password {
        let password = parse(candidate).expect("password should have been accepted");
        assert_eq!(password.expose(), candidate);
        password
    }

    #[test]
    fn list_has_at_least_ten_thousand_entries() {
        assert!(
            COMMON_PASSWORDS.len() >= 10_000,
            "only {} common passwords",
            COMMON_PASSWORDS.len()
        );
    }

    #[test]
    fn list_entries_are_lowercase_and_not_blank() {
        for entry in COMMON_PASSWORDS.iter() {
            assert!(!entry.trim().is_empty(), "blank entry in list");
            assert_eq!(*entry, entry.to_lowercase(), "entry not lowercase");
        }
    }

    #[test]
    fn list_has_many_entries_long_enough_to_matter() {
        let long = COMMON_PASSWORDS
            .iter()
            .filter(|entry| entry.chars().count() >= MIN_CHARS)
            .count();
        assert!(long >= 10_000, "only {long} entries of {MIN_CHARS}+ chars");
    }

    #[test]
    fn common_passwords_are_refused() {
        for candidate in [
            "password",
            "Password1",
            "password123",
            "12345678",
            "qwerty123",
            "passw0rd",
            "iloveyou",
            "trustno1",
            "sunshine",
            "football",
            "abcd1234",
            "welcome1",
        ] {
            assert!(is_common(candidate), "{candidate} should be in the list");
            assert_eq!(refused(candidate), WeakPassword::Common, "{candidate}");
        }
    }

    #[test]
    fn common_check_ignores_case() {
        for candidate in ["PASSWORD", "PassWord", "PASSWORD1", "Passw0rd", "ILoveYou"] {
            assert!(is_common(candidate), "{candidate}");
            assert_eq!(refused(candidate), WeakPassword::Common, "{candidate}");
        }
    }

    #[test]
    fn short_common_entry_is_refused_for_length_first() {
        assert!(is_common("qwerty"));
        assert_eq!(refused("qwerty"), WeakPassword::TooShort);
    }

    #[test]
    fn seven_chars_is_too_short() {
        assert_eq!(refused("tq7#Kz!"), WeakPassword::TooShort);
        assert_eq!(refused(""), WeakPassword::TooShort);
    }

    #[test]
    fn eight_random_chars_are_accepted() {
        assert!(!is_common("tq7#Kz!m"));
        accepted("tq7#Kz!m");
    }

    #[test]
    fn max_length_is_accepted_and_one_more_is_too_long() {
        let at_max = "x".repeat(MAX_CHARS);
        accepted(&at_max);
        let over = "x".repeat(MAX_CHARS + 1);
        assert_eq!(refused(&over), WeakPassword::TooLong);
        // A very long input is refused without trouble.
        assert_eq!(refused(&"x".repeat(1_000_000)), WeakPassword::TooLong);
    }

    #[test]
    fn length_counts_characters_not_bytes() {
        // 8 characters, 16 bytes.
        accepted(&"é".repeat(8));
        // 4 characters, 16 bytes.
        assert_eq!(refused(&"😀".repeat(4)), WeakPassword::TooShort);
        // 256 characters, 1024 bytes.
        accepted(&"😀".repeat(MAX_CHARS));
        assert_eq!(refused(&"é".repeat(MAX_CHARS + 1)), WeakPassword::TooLong);
    }

    #[test]
    fn password_is_not_trimmed() {
        // Spaces count towards the length and are kept.
        accepted("   abc  ");
        assert_eq!(refused(" abc12 "), WeakPassword::TooShort);
    }

    #[test]
    fn debug_is_redacted() {
        let password = accepted("tq7#Kz!m secret");
        assert_eq!(format!("{password:?}"), "Password([redacted])");
        let result = parse("tq7#Kz!m secret");
        let shown = format!("{result:?}");
        assert!(!shown.contains("secret"), "{shown}");
    }

    #[test]
    fn errors_read_as_sentences() {
        assert_eq!(WeakPassword::TooShort.to_string(), "Use at least 8 characters.");
        assert_eq!(WeakPassword::TooLong.to_string(), "Use at most 256 characters.");
        assert_eq!(
            WeakPassword::Common.to_string(),
            "This password is too common; choose another."
        );
        let error: Box<dyn std::error::Error> = Box::new(WeakPassword::Common);
        assert_eq!(error.to_string(), "This password is too common; choose another.");
    }
}
