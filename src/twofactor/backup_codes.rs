//! Single-use backup codes for when the authenticator is not at hand.
//!
//! Each code carries 40 random bits written as 8 symbols of Crockford's base32 alphabet and shown
//! as `XXXX-XXXX`. Crockford's alphabet leaves out I, L and O so that a code copied from paper
//! cannot be misread (and U, against accidental words), and its decoding rules fold the
//! look-alikes back onto 1 and 0. Storage, hashing and single use belong to the caller;
//! [`BackupCode::canonical`] is the form to hash.

use std::fmt;

use rand::{CryptoRng, RngCore};

/// How many codes one generation hands out.
pub const CODES_PER_SET: usize = 10;

/// At this many remaining codes or fewer the user is told they are running low.
pub const LOW_WATERMARK: i64 = 3;

/// Crockford's base32 alphabet, in value order.
pub const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// Symbols in a code: 8 symbols of 5 bits are the 40 bits of entropy. With online guessing
/// throttled per account, 2^40 guesses spread over ten valid codes is far out of reach.
pub const SYMBOLS: usize = 8;

const RANDOM_BYTES: usize = SYMBOLS * 5 / 8;

/// Why a submitted backup code was refused before any lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidBackupCode;

impl fmt::Display for InvalidBackupCode {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("not a valid backup code")
    }
}

impl std::error::Error for InvalidBackupCode {}

/// A backup code in canonical form: 8 uppercase symbols from [`ALPHABET`], no dash.
///
/// A backup code is a password substitute, so there is no `Display` and `Debug` is redacted to
/// keep it out of logs and error messages.
#[derive(Clone)]
pub struct BackupCode(String);

impl BackupCode {
    /// The 8-symbol form without separator; hash this, so every accepted spelling of a code maps
    /// to the same stored value.
    pub fn canonical(&self) -> &str {
        &self.0
    }

    /// The form shown to the user, `XXXX-XXXX`: two halves are easier to copy than one run of 8.
    pub fn formatted(&self) -> String {
        let (first_half, second_half) = self.0.split_at(SYMBOLS / 2);
        format!("{first_half}-{second_half}")
    }
}

impl fmt::Debug for BackupCode {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("BackupCode([redacted])")
    }
}

/// A fresh code from 40 uniformly random bits.
///
/// Taking whole 5-bit groups from random bytes keeps every symbol uniform, unlike reducing a
/// random number modulo 32 of a range that is not a multiple of 32. The `CryptoRng` bound keeps a
/// predictable generator from being used for credentials by mistake.
pub fn generate(rng: &mut (impl RngCore + CryptoRng)) -> BackupCode {
    let mut random = [0u8; RANDOM_BYTES];
    rng.fill_bytes(&mut random);
    let bits = random
        .iter()
        .fold(0u64, |accumulated, byte| (accumulated << 8) | u64::from(*byte));

    let mut symbols = String::with_capacity(SYMBOLS);
    for index in (0..SYMBOLS).rev() {
        let value = (bits >> (index * 5)) & 0x1f;
        symbols.push(char::from(ALPHABET[value as usize]));
    }
    BackupCode(symbols)
}

/// A set of [`CODES_PER_SET`] distinct codes.
///
/// A repeat is a one in 2^40 event per pair, but a set with a duplicate would silently hold one
/// code fewer than the user was told, so repeats are drawn again.
///
/// # Panics
///
/// If the generator keeps producing repeats, which only a broken random source does; handing out
/// predictable codes would be worse than failing.
pub fn generate_set(rng: &mut (impl RngCore + CryptoRng)) -> Vec<BackupCode> {
    const MAX_DRAWS: usize = CODES_PER_SET * 10;
    let mut codes: Vec<BackupCode> = Vec::with_capacity(CODES_PER_SET);
    for _ in 0..MAX_DRAWS {
        if codes.len() == CODES_PER_SET {
            break;
        }
        let candidate = generate(rng);
        if codes
            .iter()
            .all(|existing| existing.canonical() != candidate.canonical())
        {
            codes.push(candidate);
        }
    }
    assert_eq!(
        codes.len(),
        CODES_PER_SET,
        "the random number generator keeps repeating backup codes"
    );
    codes
}

/// Reads a code the way Crockford's base32 decoding prescribes: case-insensitive, O read as 0,
/// I and L read as 1, separators (spaces, tabs, dashes) ignored. U stays invalid: Crockford keeps
/// it out of the alphabet, and it is not a look-alike of any symbol.
pub fn parse(input: &str) -> Result<BackupCode, InvalidBackupCode> {
    let mut symbols = String::with_capacity(SYMBOLS);
    for character in input.chars() {
        let symbol = match character.to_ascii_uppercase() {
            ' ' | '\t' | '-' => continue,
            'O' => '0',
            'I' | 'L' => '1',
            other => other,
        };
        // `is_ascii` first: ALPHABET is ASCII, and a non-ASCII character must not be truncated to
        // a byte that happens to be in it.
        let is_symbol = symbol.is_ascii() && ALPHABET.contains(&(symbol as u8));
        // Stopping at the ninth symbol avoids copying an arbitrarily long submission.
        if !is_symbol || symbols.len() == SYMBOLS {
            return Err(InvalidBackupCode);
        }
        symbols.push(symbol);
    }
    if symbols.len() == SYMBOLS {
        Ok(BackupCode(symbols))
    } else {
        Err(InvalidBackupCode)
    }
}

/// Whether the user should be told to regenerate their codes.
pub fn is_low(remaining: i64) -> bool {
    remaining <= LOW_WATERMARK
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use std::collections::HashSet;

    fn rng() -> StdRng {
        StdRng::seed_from_u64(0xbac0_c0de)
    }

    fn parsed(input: &str) -> Result<String, InvalidBackupCode> {
        parse(input).map(|code| code.formatted())
    }

    #[test]
    fn alphabet_is_crockford_base32() {
        assert_eq!(ALPHABET.len(), 32);
        let distinct: HashSet<u8> = ALPHABET.iter().copied().collect();
        assert_eq!(distinct.len(), 32);
        for excluded in [b'I', b'L', b'O', b'U'] {
            assert!(!ALPHABET.contains(&excluded));
        }
    }

    #[test]
    fn generated_codes_have_the_documented_shape() {
        let mut rng = rng();
        for _ in 0..100 {
            let code = generate(&mut rng);
            let canonical = code.canonical();
            assert_eq!(canonical.len(), 8);
            assert!(canonical.bytes().all(|byte| ALPHABET.contains(&byte)));

            let formatted = code.formatted();
            assert_eq!(formatted.len(), 9);
            assert_eq!(&formatted[4..5], "-");
            assert_eq!(formatted.replace('-', ""), canonical);
        }
    }

    #[test]
    fn generated_codes_never_contain_ambiguous_letters() {
        let mut rng = rng();
        let mut seen: HashSet<char> = HashSet::new();
        for _ in 0..10_000 {
            let code = generate(&mut rng);
            assert!(
                !code.canonical().contains(['I', 'L', 'O', 'U']),
                "ambiguous letter generated"
            );
            seen.extend(code.canonical().chars());
        }
        // 80,000 uniform symbols reach every one of the 32 symbols.
        assert_eq!(seen.len(), 32);
    }

    #[test]
    fn generated_symbols_are_roughly_uniform() {
        let mut rng = rng();
        let mut counts = [0usize; 32];
        let draws = 20_000;
        for _ in 0..draws {
            for byte in generate(&mut rng).canonical().bytes() {
                let value = ALPHABET
                    .iter()
                    .position(|symbol| *symbol == byte)
                    .expect("generated symbol is in the alphabet");
                counts[value] += 1;
            }
        }
        // Expected 5,000 per symbol; a biased mapping (such as a modulo) would be far off.
        for (value, count) in counts.iter().enumerate() {
            assert!((4_500..5_500).contains(count), "symbol {value}: {count}");
        }
    }

    /// Hands out fixed bytes, to pin down exactly which bits become which symbol.
    struct Scripted(Vec<u8>);

    impl RngCore for Scripted {
        fn next_u32(&mut self) -> u32 {
            let mut bytes = [0u8; 4];
            self.fill_bytes(&mut bytes);
            u32::from_be_bytes(bytes)
        }
        fn next_u64(&mut self) -> u64 {
            let mut bytes = [0u8; 8];
            self.fill_bytes(&mut bytes);
            u64::from_be_bytes(bytes)
        }
        fn fill_bytes(&mut self, destination: &mut [u8]) {
            for byte in destination.iter_mut() {
                *byte = if self.0.is_empty() { 0 } else { self.0.remove(0) };
            }
        }
        fn try_fill_bytes(&mut self, destination: &mut [u8]) -> Result<(), rand::Error> {
            self.fill_bytes(destination);
            Ok(())
        }
    }

    impl CryptoRng for Scripted {}

    #[test]
    fn generation_maps_bits_to_symbols_in_order() {
        let mut zeros = Scripted(vec![0x00; 5]);
        assert_eq!(generate(&mut zeros).canonical(), "00000000");
        let mut ones = Scripted(vec![0xff; 5]);
        assert_eq!(generate(&mut ones).canonical(), "ZZZZZZZZ");
        // 00000 00001 00010 ... 00111: symbol values 0 to 7, most significant bits first.
        let mut ascending = Scripted(vec![0x00, 0x44, 0x32, 0x14, 0xc7]);
        assert_eq!(generate(&mut ascending).canonical(), "01234567");
        // Values 31 down to 24, which skip the excluded letter U between T and V.
        let mut descending = Scripted(vec![0xff, 0xbb, 0xcd, 0xeb, 0x38]);
        assert_eq!(generate(&mut descending).canonical(), "ZYXWVTSR");
        // Exactly five bytes are consumed per code.
        let mut two_codes = Scripted(vec![0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(generate(&mut two_codes).canonical(), "00000000");
        assert_eq!(generate(&mut two_codes).canonical(), "ZZZZZZZZ");
    }

    #[test]
    #[should_panic(expected = "keeps repeating")]
    fn generate_set_refuses_a_stuck_generator() {
        // Runs out of script immediately and then yields only zero bytes.
        generate_set(&mut Scripted(Vec::new()));
    }

    #[test]
    fn generate_set_gives_ten_distinct_codes() {
        let mut rng = rng();
        for _ in 0..50 {
            let set = generate_set(&mut rng);
            assert_eq!(set.len(), CODES_PER_SET);
            let distinct: HashSet<&str> = set.iter().map(BackupCode::canonical).collect();
            assert_eq!(distinct.len(), CODES_PER_SET);
        }
        let mut os_rng = rand::rngs::OsRng;
        assert_eq!(generate_set(&mut os_rng).len(), 10);
    }

    #[test]
    fn parse_is_forgiving() {
        assert_eq!(parsed("abcd-efgh"), Ok("ABCD-EFGH".to_owned()));
        assert_eq!(parsed("abcd efgh"), Ok("ABCD-EFGH".to_owned()));
        assert_eq!(parsed("ABCDEFGH"), Ok("ABCD-EFGH".to_owned()));
        assert_eq!(parsed("  AbCd\t-eFgH  "), Ok("ABCD-EFGH".to_owned()));
        assert_eq!(parsed("a-b-c-d-e-f-g-h"), Ok("ABCD-EFGH".to_owned()));
        assert_eq!(parsed("0O1I-L234"), Ok("0011-1234".to_owned()));
        assert_eq!(parsed("oOiI-lL00"), Ok("0011-1100".to_owned()));
        assert_eq!(parse("abcd-efgh").map(|code| code.0), Ok("ABCDEFGH".to_owned()));
    }

    #[test]
    fn parse_round_trips_generated_codes() {
        let mut rng = rng();
        for _ in 0..500 {
            let code = generate(&mut rng);
            for spelling in [
                code.formatted(),
                code.canonical().to_owned(),
                code.formatted().to_ascii_lowercase(),
            ] {
                let reparsed = parse(&spelling).expect("generated code parses");
                assert_eq!(reparsed.canonical(), code.canonical());
            }
        }
    }

    #[test]
    fn parse_refuses_malformed_codes() {
        for input in [
            "",
            "    ",
            "----",
            "ABCD-EFG",
            "ABCDEFG",
            "ABCD-EFGHJ",
            "ABCDEFGHJ",
            "ABCD-EFGU",
            "U",
            "uuuu-uuuu",
            "ABCD_EFGH",
            "ABCD.EFGH",
            "ABCD/EFGH",
            "ABCD-EFG!",
            "ABCD-EFG\u{0}",
            "ABCD\nEFGH",
            "ＡＢＣＤ-ＥＦＧＨ",
            "ABCD-EFGÉ",
            // U+0130 and U+0131 upper/lower-case towards I, but are not the letter I.
            "ABCD-EFGİ",
            "ABCD-EFGı",
        ] {
            assert_eq!(
                parse(input).map(|code| code.0),
                Err(InvalidBackupCode),
                "input {input:?}"
            );
        }
    }

    #[test]
    fn invalid_backup_code_displays_a_message() {
        assert_eq!(InvalidBackupCode.to_string(), "not a valid backup code");
        let boxed: Box<dyn std::error::Error> = Box::new(InvalidBackupCode);
        assert_eq!(boxed.to_string(), "not a valid backup code");
    }

    #[test]
    fn debug_redacts_the_code() {
        let code = parse("ABCD-EFGH").expect("valid code");
        let printed = format!("{code:?}");
        assert_eq!(printed, "BackupCode([redacted])");
        assert!(!printed.contains("ABCD"));
        assert_eq!(format!("{:?}", vec![code]), "[BackupCode([redacted])]");
    }

    #[test]
    fn low_watermark_is_three_or_fewer() {
        assert!(is_low(0));
        assert!(is_low(1));
        assert!(is_low(3));
        assert!(!is_low(4));
        assert!(!is_low(10));
        assert!(is_low(-1));
    }
}
