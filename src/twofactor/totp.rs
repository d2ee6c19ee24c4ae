//! Time-based one-time passwords: RFC 6238 TOTP on top of RFC 4226 HOTP.
//!
//! Everything here is pure computation so it can be tested against the RFC vectors without a clock,
//! a database or a random source the test does not control. Replay protection (refusing a step at or
//! before the last accepted one) needs stored state and therefore lives with the caller, which is why
//! [`matching_step`] returns the step that matched rather than a plain yes or no.

use std::fmt;

use hmac::{Hmac, Mac};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use qrcode::render::svg;
use qrcode::{EcLevel, QrCode};
use rand::{CryptoRng, RngCore};
use sha1::Sha1;
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

/// RFC 6238 section 5.2 recommends 30 seconds, and some authenticator apps ignore the `period`
/// parameter of the URI and always use 30, so no other value would work everywhere.
pub const STEP_SECONDS: i64 = 30;

/// Six digits is what authenticator apps assume when the URI does not say otherwise.
pub const DIGITS: u32 = 6;

/// RFC 4226 section 4 (requirement R6) demands at least 128 bits and recommends 160.
pub const SECRET_LEN: usize = 20;

/// How many steps either side of the current one are accepted. RFC 6238 section 5.2 recommends at
/// most one step of network delay; the same window absorbs small clock skew on the phone.
pub const ALLOWED_DRIFT_STEPS: i64 = 1;

type HmacSha1 = Hmac<Sha1>;

/// Everything outside RFC 3986 "unreserved" is escaped, so a label or issuer can never inject its
/// own `?`, `&`, `:` or `#` into the URI and change what the authenticator app stores.
const URI_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// The RFC 6238 time step `T = floor((now - T0) / X)` with `T0 = 0`.
///
/// Euclidean division floors for negative inputs too, so a clock before 1970 still gives a
/// well-defined (negative) step instead of rounding towards zero and sharing step 0.
pub fn step_at(unix_seconds: i64) -> i64 {
    unix_seconds.div_euclid(STEP_SECONDS)
}

/// RFC 4226 HOTP value for `counter`, reduced to `digits` decimal digits.
///
/// `digits` of 10 or more cannot reduce anything (the truncated value has 31 bits, below 10^10),
/// so the full truncated value is returned instead of overflowing.
pub fn hotp(secret: &[u8], counter: u64, digits: u32) -> u32 {
    // HMAC accepts keys of any length (longer ones are hashed first), so this cannot fail.
    let mut mac = HmacSha1::new_from_slice(secret).expect("HMAC-SHA1 accepts keys of any length");
    // RFC 4226 section 5.2: the counter is an 8-byte big-endian value.
    mac.update(&counter.to_be_bytes());
    let digest = mac.finalize().into_bytes();

    // RFC 4226 section 5.3, dynamic truncation: the low nibble of the last byte picks a 4-byte
    // window (offset at most 15, so the window always fits in the 20-byte digest) and the top bit
    // is masked so signed and unsigned implementations agree.
    let offset = usize::from(digest[digest.len() - 1] & 0x0f);
    let truncated = u32::from_be_bytes([
        digest[offset] & 0x7f,
        digest[offset + 1],
        digest[offset + 2],
        digest[offset + 3],
    ]);

    match 10u32.checked_pow(digits) {
        Some(modulus) => truncated % modulus,
        None => truncated,
    }
}

/// The six-digit code an authenticator shows during `step`, zero padded.
///
/// A negative step is fed to HOTP as its two's complement bit pattern, as the RFC 6238 reference
/// implementation does with its signed `long`; [`matching_step`] never accepts such steps anyway.
pub fn code_for_step(secret: &[u8], step: i64) -> String {
    let value = hotp(secret, step as u64, DIGITS);
    format!("{value:0width$}", width = DIGITS as usize)
}

/// Why a submitted code was refused before any cryptography ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidCode;

impl fmt::Display for InvalidCode {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("not a 6-digit code")
    }
}

impl std::error::Error for InvalidCode {}

/// A syntactically valid six-digit code as typed by the user.
///
/// There is deliberately no `Display`, and `Debug` is redacted, so a code that is still valid for
/// up to a minute cannot end up in logs or error messages by accident.
#[derive(Clone)]
pub struct TotpCode(String);

impl TotpCode {
    /// Accepts what people paste or type: authenticator apps display `123 456` and some users add
    /// dashes, so spaces, tabs and dashes are dropped anywhere. Only ASCII digits count: no
    /// authenticator displays other Unicode digits (full-width, Arabic-Indic), and accepting them
    /// would need a normalisation step that buys nothing.
    pub fn parse(input: &str) -> Result<TotpCode, InvalidCode> {
        let digit_count = DIGITS as usize;
        let mut digits = String::with_capacity(digit_count);
        for character in input.chars() {
            match character {
                ' ' | '\t' | '-' => continue,
                '0'..='9' if digits.len() < digit_count => digits.push(character),
                // A seventh digit or any other character: stop early rather than copying an
                // arbitrarily long submission.
                _ => return Err(InvalidCode),
            }
        }
        if digits.len() == digit_count {
            Ok(TotpCode(digits))
        } else {
            Err(InvalidCode)
        }
    }

    /// The six digits without separators.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TotpCode {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("TotpCode([redacted])")
    }
}

/// Returns the step whose code equals `code`, looking at the previous, current and next step.
///
/// All candidate steps are computed and compared in constant time, with no early exit, so the
/// response time reveals neither how many digits were right nor which step matched. Should two
/// steps produce the same code the latest one wins, because the caller records the returned step
/// as used and the later step blocks replay of both.
pub fn matching_step(secret: &[u8], code: &TotpCode, now_unix: i64) -> Option<i64> {
    let current = step_at(now_unix);
    let submitted = code.as_str().as_bytes();

    let mut found = Choice::from(0);
    let mut matched_step: i64 = 0;
    for offset in -ALLOWED_DRIFT_STEPS..=ALLOWED_DRIFT_STEPS {
        // Steps before the epoch do not exist for a real authenticator; they are still computed
        // (with a harmless stand-in) so the amount of work stays the same.
        let candidate = current.saturating_add(offset);
        let is_real_step = Choice::from(u8::from(candidate >= 0));
        let expected = code_for_step(secret, candidate.max(0));
        let is_match = expected.as_bytes().ct_eq(submitted) & is_real_step;
        matched_step = i64::conditional_select(&matched_step, &candidate, is_match);
        found |= is_match;
    }

    if bool::from(found) {
        Some(matched_step)
    } else {
        None
    }
}

/// A fresh 160-bit shared secret.
///
/// The `CryptoRng` bound keeps a seeded or otherwise predictable generator from being used for
/// secrets by mistake.
pub fn generate_secret(rng: &mut (impl RngCore + CryptoRng)) -> [u8; SECRET_LEN] {
    let mut secret = [0u8; SECRET_LEN];
    rng.fill_bytes(&mut secret);
    secret
}

/// The secret as authenticator apps expect it: RFC 4648 base32, uppercase, without `=` padding
/// (Google Authenticator's key URI format rejects padding).
pub fn encode_secret_base32(secret: &[u8]) -> String {
    data_encoding::BASE32_NOPAD.encode(secret)
}

/// Inverse of [`encode_secret_base32`], forgiving about the spaces and lower case a person copying
/// the key by hand would introduce. Returns `None` for anything that is not valid base32.
pub fn decode_secret_base32(text: &str) -> Option<Vec<u8>> {
    let normalised: String = text
        .chars()
        .filter(|character| !matches!(character, ' ' | '\t' | '-'))
        .map(|character| character.to_ascii_uppercase())
        .collect();
    data_encoding::BASE32_NOPAD.decode(normalised.as_bytes()).ok()
}

/// The key split into groups of four for manual entry, because a 32-character run is hard to copy
/// without losing one's place.
pub fn grouped_key(base32: &str) -> String {
    let mut grouped = String::with_capacity(base32.len() + base32.len() / 4);
    for (index, character) in base32.chars().enumerate() {
        if index > 0 && index % 4 == 0 {
            grouped.push(' ');
        }
        grouped.push(character);
    }
    grouped
}

/// The Key URI Format understood by authenticator apps.
///
/// The issuer appears both as the label prefix and as the `issuer` parameter: older apps read only
/// the prefix, newer ones prefer the parameter, and the format asks for both to be equal.
pub fn otpauth_uri(issuer: &str, account: &str, secret: &[u8]) -> String {
    let issuer_encoded = utf8_percent_encode(issuer, URI_COMPONENT).to_string();
    let account_encoded = utf8_percent_encode(account, URI_COMPONENT);
    format!(
        "otpauth://totp/{issuer_encoded}:{account_encoded}?secret={secret}&issuer={issuer_encoded}\
         &algorithm=SHA1&digits={DIGITS}&period={STEP_SECONDS}",
        secret = encode_secret_base32(secret),
    )
}

/// Why [`try_qr_svg`] could not build a QR code: only data too long for the largest QR version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QrDataTooLong;

impl fmt::Display for QrDataTooLong {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("data too long for a QR code")
    }
}

impl std::error::Error for QrDataTooLong {}

/// An SVG image of the QR code for `data`, ready to inline into HTML.
///
/// Medium error correction survives a glare or a smudge on the screen without making the code
/// needlessly dense; the quiet zone is required by the QR specification for reliable scanning.
pub fn try_qr_svg(data: &str) -> Result<String, QrDataTooLong> {
    let code = QrCode::with_error_correction_level(data.as_bytes(), EcLevel::M).map_err(|_| QrDataTooLong)?;
    let image = code
        .render::<svg::Color>()
        .quiet_zone(true)
        .min_dimensions(200, 200)
        .dark_color(svg::Color("#000000"))
        .light_color(svg::Color("#ffffff"))
        .build();
    Ok(strip_xml_declaration(&image).to_owned())
}

/// Like [`try_qr_svg`], but gives an empty string when the data cannot fit in a QR code (only
/// possible with an absurdly long issuer or account name). The setup page also shows the key for
/// manual entry, so a missing image degrades enrolment instead of failing it.
pub fn qr_svg(data: &str) -> String {
    try_qr_svg(data).unwrap_or_default()
}

/// An XML declaration is only allowed at the very start of a document, so inlined into HTML it
/// would be invalid markup.
fn strip_xml_declaration(image: &str) -> &str {
    if image.starts_with("<?xml") {
        if let Some(end) = image.find("?>") {
            return image[end + 2..].trim_start();
        }
    }
    image
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// The shared secret of RFC 4226 appendix D and RFC 6238 appendix B (SHA-1).
    const RFC_SECRET: &[u8] = b"12345678901234567890";

    #[test]
    fn hotp_matches_every_rfc_4226_appendix_d_value() {
        let expected = [
            755224, 287082, 359152, 969429, 338314, 254676, 287922, 162583, 399871, 520489,
        ];
        for (counter, expected_value) in expected.iter().enumerate() {
            assert_eq!(
                hotp(RFC_SECRET, counter as u64, 6),
                *expected_value,
                "counter {counter}"
            );
        }
    }

    #[test]
    fn totp_matches_rfc_6238_appendix_b_sha1_vectors() {
        let vectors: [(i64, &str); 6] = [
            (59, "94287082"),
            (1111111109, "07081804"),
            (1111111111, "14050471"),
            (1234567890, "89005924"),
            (2000000000, "69279037"),
            (20000000000, "65353130"),
        ];
        for (time, expected) in vectors {
            let step = step_at(time);
            let value = hotp(RFC_SECRET, step as u64, 8);
            assert_eq!(format!("{value:08}"), expected, "time {time}");
        }
    }

    #[test]
    fn rfc_6238_steps_are_the_documented_hex_counters() {
        // RFC 6238 appendix B lists T in hex next to each time.
        assert_eq!(step_at(59), 0x1);
        assert_eq!(step_at(1111111109), 0x023523EC);
        assert_eq!(step_at(1111111111), 0x023523ED);
        assert_eq!(step_at(1234567890), 0x0273EF07);
        assert_eq!(step_at(2000000000), 0x03F940AA);
        assert_eq!(step_at(20000000000), 0x27BC86AA);
    }

    #[test]
    fn code_for_step_is_six_digits_and_zero_padded() {
        // Step 0x023523EC gives 07081804 with eight digits, so six digits keep a leading zero.
        assert_eq!(code_for_step(RFC_SECRET, 0x023523EC), "081804");
        assert_eq!(code_for_step(RFC_SECRET, 1), "287082");
        for step in 0..200 {
            let code = code_for_step(RFC_SECRET, step);
            assert_eq!(code.len(), 6);
            assert!(code.bytes().all(|byte| byte.is_ascii_digit()));
        }
    }

    #[test]
    fn step_at_floors() {
        assert_eq!(step_at(0), 0);
        assert_eq!(step_at(29), 0);
        assert_eq!(step_at(30), 1);
        assert_eq!(step_at(59), 1);
        assert_eq!(step_at(60), 2);
        assert_eq!(step_at(-1), -1);
        assert_eq!(step_at(i64::MAX), i64::MAX / 30);
    }

    #[test]
    fn hotp_with_many_digits_does_not_overflow() {
        let full = hotp(RFC_SECRET, 0, 10);
        assert!(full < 1 << 31);
        assert_eq!(full % 1_000_000, 755224);
        assert_eq!(hotp(RFC_SECRET, 0, 9), full % 1_000_000_000);
        assert_eq!(hotp(RFC_SECRET, 0, u32::MAX), full);
    }

    #[test]
    fn parse_accepts_forgiving_input() {
        for input in [
            "123456",
            "123 456",
            "123-456",
            " 123456 ",
            "\t12 34 56\t",
            "1-2-3-4-5-6",
        ] {
            let code = TotpCode::parse(input).unwrap_or_else(|_| panic!("{input:?} refused"));
            assert_eq!(code.as_str(), "123456", "input {input:?}");
        }
        assert_eq!(TotpCode::parse("000000").map(|c| c.0), Ok("000000".to_owned()));
    }

    #[test]
    fn parse_refuses_malformed_input() {
        for input in [
            "",
            "   ",
            "12345",
            "1234567",
            "12a456",
            "１２３４５６",
            "١٢٣٤٥٦",
            "123_456",
            "123.456",
            "+123456",
            "123456\n",
            "12345 67",
        ] {
            assert_eq!(
                TotpCode::parse(input).map(|code| code.0),
                Err(InvalidCode),
                "input {input:?}"
            );
        }
    }

    #[test]
    fn invalid_code_displays_a_message() {
        assert_eq!(InvalidCode.to_string(), "not a 6-digit code");
        let boxed: Box<dyn std::error::Error> = Box::new(InvalidCode);
        assert_eq!(boxed.to_string(), "not a 6-digit code");
    }

    #[test]
    fn debug_redacts_the_code() {
        let code = TotpCode::parse("123456").expect("valid code");
        let printed = format!("{code:?}");
        assert_eq!(printed, "TotpCode([redacted])");
        assert!(!printed.contains("123456"));
        assert_eq!(format!("{code:#?}"), "TotpCode([redacted])");
    }

    fn code_at(step: i64) -> TotpCode {
        TotpCode::parse(&code_for_step(RFC_SECRET, step)).expect("generated codes parse")
    }

    #[test]
    fn matching_step_accepts_previous_current_and_next_step() {
        let now = 1111111111;
        let current = step_at(now);
        // The test only means something if the five neighbouring codes differ.
        let codes: Vec<String> = (current - 2..=current + 2)
            .map(|step| code_for_step(RFC_SECRET, step))
            .collect();
        for (index, code) in codes.iter().enumerate() {
            assert!(!codes[index + 1..].contains(code));
        }

        assert_eq!(matching_step(RFC_SECRET, &code_at(current - 1), now), Some(current - 1));
        assert_eq!(matching_step(RFC_SECRET, &code_at(current), now), Some(current));
        assert_eq!(matching_step(RFC_SECRET, &code_at(current + 1), now), Some(current + 1));
    }

    #[test]
    fn matching_step_refuses_two_steps_away() {
        let now = 1111111111;
        let current = step_at(now);
        assert_eq!(matching_step(RFC_SECRET, &code_at(current - 2), now), None);
        assert_eq!(matching_step(RFC_SECRET, &code_at(current + 2), now), None);
    }

    #[test]
    fn matching_step_uses_step_boundaries_not_seconds() {
        // The last second of a step and the first second of the next see different windows.
        let step = 1000;
        let last_second = step * STEP_SECONDS + STEP_SECONDS - 1;
        let code = code_at(step - 1);
        assert_eq!(matching_step(RFC_SECRET, &code, last_second), Some(step - 1));
        assert_eq!(matching_step(RFC_SECRET, &code, last_second + 1), None);
    }

    #[test]
    fn matching_step_refuses_wrong_code_and_wrong_secret() {
        let now = 1234567890;
        let current = step_at(now);
        let code = code_at(current);
        assert_eq!(matching_step(b"another secret of 20b", &code, now), None);

        let wrong = TotpCode::parse("000000").expect("valid code");
        let neighbours: Vec<String> = (current - 1..=current + 1)
            .map(|step| code_for_step(RFC_SECRET, step))
            .collect();
        assert!(!neighbours.contains(&"000000".to_owned()));
        assert_eq!(matching_step(RFC_SECRET, &wrong, now), None);
    }

    #[test]
    fn matching_step_returns_the_latest_when_several_match() {
        // Found by exhaustive search: with the RFC secret, steps 910737 and 910738 share a code
        // (about one adjacent pair in a million does).
        let step: i64 = 910_737;
        assert_eq!(code_for_step(RFC_SECRET, step), "911617");
        assert_eq!(code_for_step(RFC_SECRET, step + 1), "911617");
        let code = TotpCode::parse("911617").expect("valid code");
        // Seen from step + 1 the pair is "previous" and "current"; seen from step it is "current"
        // and "next". Either way the later step is reported.
        for now_step in [step, step + 1] {
            assert_eq!(
                matching_step(RFC_SECRET, &code, now_step * STEP_SECONDS),
                Some(step + 1)
            );
        }
        // From step + 2 only step + 1 is in the window, still reported as itself.
        assert_eq!(
            matching_step(RFC_SECRET, &code, (step + 2) * STEP_SECONDS),
            Some(step + 1)
        );
        // From step - 1 only step is in the window (step + 1 is two away).
        assert_eq!(matching_step(RFC_SECRET, &code, (step - 1) * STEP_SECONDS), Some(step));
    }

    #[test]
    fn matching_step_never_returns_a_step_before_the_epoch() {
        // At time 0 the window nominally includes step -1, which no real authenticator shows.
        let before_epoch = code_for_step(RFC_SECRET, -1);
        assert_ne!(before_epoch, code_for_step(RFC_SECRET, 0));
        assert_ne!(before_epoch, code_for_step(RFC_SECRET, 1));
        let code = TotpCode::parse(&before_epoch).expect("valid code");
        assert_eq!(matching_step(RFC_SECRET, &code, 0), None);
        assert_eq!(matching_step(RFC_SECRET, &code_at(0), 0), Some(0));
        assert_eq!(matching_step(RFC_SECRET, &code_at(1), 0), Some(1));
        assert_eq!(matching_step(RFC_SECRET, &code_at(0), -30), Some(0));
        assert_eq!(matching_step(RFC_SECRET, &code_at(0), -31), None);
    }

    #[test]
    fn matching_step_survives_extreme_times() {
        let last = step_at(i64::MAX);
        assert_eq!(matching_step(RFC_SECRET, &code_at(last + 1), i64::MAX), Some(last + 1));
        assert_eq!(matching_step(RFC_SECRET, &code_at(0), i64::MIN), None);
    }

    #[test]
    fn generated_secrets_are_full_length_and_differ() {
        let mut rng = StdRng::seed_from_u64(1);
        let first = generate_secret(&mut rng);
        let second = generate_secret(&mut rng);
        assert_eq!(first.len(), 20);
        assert_ne!(first, second);
        assert_ne!(first, [0u8; SECRET_LEN]);
        let mut os_rng = rand::rngs::OsRng;
        assert_ne!(generate_secret(&mut os_rng), generate_secret(&mut os_rng));
    }

    #[test]
    fn base32_is_uppercase_without_padding() {
        // RFC 4648 section 10 test vector, padding removed.
        assert_eq!(encode_secret_base32(b"foobar"), "MZXW6YTBOI");
        assert_eq!(encode_secret_base32(b"f"), "MY");
        assert_eq!(encode_secret_base32(RFC_SECRET), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        // 160 bits are exactly 32 base32 symbols, so a real secret never needs padding.
        assert_eq!(encode_secret_base32(&[0xff; SECRET_LEN]).len(), 32);
    }

    #[test]
    fn base32_decoding_forgives_spaces_and_case() {
        assert_eq!(
            decode_secret_base32("gezd gnbv gy3t qojq gezd gnbv gy3t qojq").as_deref(),
            Some(RFC_SECRET)
        );
        assert_eq!(decode_secret_base32("MZXW6YTBOI").as_deref(), Some(&b"foobar"[..]));
        assert_eq!(decode_secret_base32("MZXW6YTBO1"), None);
        assert_eq!(decode_secret_base32("MZXW6YTBOI======"), None);
    }

    #[test]
    fn grouped_key_uses_groups_of_four() {
        assert_eq!(grouped_key(""), "");
        assert_eq!(grouped_key("ABC"), "ABC");
        assert_eq!(grouped_key("ABCD"), "ABCD");
        assert_eq!(grouped_key("ABCDE"), "ABCD E");
        assert_eq!(
            grouped_key("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"),
            "GEZD GNBV GY3T QOJQ GEZD GNBV GY3T QOJQ"
        );
    }

    #[test]
    fn otpauth_uri_is_exact() {
        assert_eq!(
            otpauth_uri("Acme Co", "alice@example.com", RFC_SECRET),
            "otpauth://totp/Acme%20Co:alice%40example.com\
             ?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Acme%20Co\
             &algorithm=SHA1&digits=6&period=30"
        );
    }

    #[test]
    fn otpauth_uri_escapes_everything_but_unreserved_characters() {
        let uri = otpauth_uri("A:B?&#/é", "x-y.z_w~v+1%", b"k");
        assert_eq!(
            uri,
            "otpauth://totp/A%3AB%3F%26%23%2F%C3%A9:x-y.z_w~v%2B1%25\
             ?secret=NM&issuer=A%3AB%3F%26%23%2F%C3%A9&algorithm=SHA1&digits=6&period=30"
        );
        // Exactly one literal ':' (after the scheme) and one '?' survive.
        assert_eq!(uri.matches('?').count(), 1);
        assert_eq!(uri.matches(':').count(), 2);
    }

    #[test]
    fn qr_svg_is_inline_svg_with_requested_colours() {
        let uri = otpauth_uri("Acme Co", "alice@example.com", RFC_SECRET);
        let image = qr_svg(&uri);
        assert!(image.starts_with("<svg"), "starts with {:?}", &image[..20]);
        assert!(!image.contains("<?xml"));
        assert!(image.ends_with("</svg>"));
        assert!(image.contains(r##"fill="#000000""##));
        assert!(image.contains(r##"fill="#ffffff""##));

        let width: u32 = image
            .split("width=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .and_then(|number| number.parse().ok())
            .expect("svg has a width");
        assert!((200..400).contains(&width), "width {width}");
    }

    #[test]
    fn qr_svg_degrades_to_empty_for_oversized_data() {
        let huge = "x".repeat(10_000);
        assert_eq!(try_qr_svg(&huge), Err(QrDataTooLong));
        assert_eq!(qr_svg(&huge), "");
    }

    #[test]
    fn strip_xml_declaration_only_touches_a_leading_declaration() {
        assert_eq!(strip_xml_declaration(r#"<?xml version="1.0"?><svg/>"#), "<svg/>");
        assert_eq!(strip_xml_declaration("<svg/>"), "<svg/>");
        assert_eq!(strip_xml_declaration("<?xml unterminated"), "<?xml unterminated");
    }

    #[test]
    fn randomized_round_trip_through_base32_and_matching() {
        let mut rng = StdRng::seed_from_u64(0x1a7c_4e11);
        for _ in 0..200 {
            let secret = generate_secret(&mut rng);
            let decoded =
                decode_secret_base32(&grouped_key(&encode_secret_base32(&secret))).expect("own encoding decodes");
            assert_eq!(decoded, secret);

            let now: i64 = rng.gen_range(0..4_000_000_000);
            let step = step_at(now) + rng.gen_range(-1..=1);
            let shown = code_for_step(&decoded, step);
            let typed = format!("{} {}", &shown[..3], &shown[3..]);
            let code = TotpCode::parse(&typed).expect("shown code parses");
            let matched = matching_step(&secret, &code, now).expect("code matches");
            // Another step in the window could share the code; the latest wins, never an older one.
            assert!(matched >= step && matched <= step_at(now) + 1);
        }
    }
}
