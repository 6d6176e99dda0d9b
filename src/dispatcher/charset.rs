//! Decoding text in the charsets `.eml` files declare (RFC 2047 encoded words, the
//! Content-Type charset parameter): UTF-8, US-ASCII, ISO-8859-1, ISO-8859-15 and
//! windows-1252. Anything else is refused rather than guessed at, and so is a byte the
//! declared charset does not have: stored text is never mangled with U+FFFD.

/// The charsets [`decode`] knows, for error messages.
pub const KNOWN: &str = "UTF-8, US-ASCII, ISO-8859-1, ISO-8859-15 and windows-1252";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Charset {
    Utf8,
    Ascii,
    /// ISO-8859-1 labels, decoded as windows-1252 like every browser and mail reader
    /// does (WHATWG Encoding Standard): 0x80-0x9F in such mail are cp1252 characters,
    /// not C1 controls.
    Latin1,
    Latin9,
    Windows1252,
}

fn lookup(label: &str) -> Option<Charset> {
    // RFC 2231 allows a language after '*' (=?iso-8859-1*de?Q?...?=).
    let label = label
        .split('*')
        .next()
        .unwrap_or("")
        .trim()
        .trim_matches('"');
    Some(match label.to_ascii_lowercase().as_str() {
        "utf-8" | "utf8" => Charset::Utf8,
        "us-ascii" | "ascii" | "ansi_x3.4-1968" => Charset::Ascii,
        "iso-8859-1" | "iso8859-1" | "iso_8859-1" | "iso_8859-1:1987" | "latin1" | "latin-1"
        | "l1" | "cp819" | "ibm819" | "iso-ir-100" => Charset::Latin1,
        "iso-8859-15" | "iso8859-15" | "iso_8859-15" | "latin9" | "latin-9" | "l9" => {
            Charset::Latin9
        }
        "windows-1252" | "cp1252" | "x-cp1252" => Charset::Windows1252,
        _ => return None,
    })
}

/// windows-1252 0x80-0x9F; `None` for the five bytes it leaves undefined.
const CP1252_HIGH: [Option<char>; 32] = [
    Some('\u{20AC}'),
    None,
    Some('\u{201A}'),
    Some('\u{0192}'),
    Some('\u{201E}'),
    Some('\u{2026}'),
    Some('\u{2020}'),
    Some('\u{2021}'),
    Some('\u{02C6}'),
    Some('\u{2030}'),
    Some('\u{0160}'),
    Some('\u{2039}'),
    Some('\u{0152}'),
    None,
    Some('\u{017D}'),
    None,
    None,
    Some('\u{2018}'),
    Some('\u{2019}'),
    Some('\u{201C}'),
    Some('\u{201D}'),
    Some('\u{2022}'),
    Some('\u{2013}'),
    Some('\u{2014}'),
    Some('\u{02DC}'),
    Some('\u{2122}'),
    Some('\u{0161}'),
    Some('\u{203A}'),
    Some('\u{0153}'),
    None,
    Some('\u{017E}'),
    Some('\u{0178}'),
];

fn single_byte(charset: Charset, b: u8) -> Option<char> {
    match (charset, b) {
        (_, 0x00..=0x7F) => Some(char::from(b)),
        (Charset::Ascii | Charset::Utf8, _) => None,
        (Charset::Latin1 | Charset::Windows1252, 0x80..=0x9F) => CP1252_HIGH[usize::from(b - 0x80)],
        // C1 controls are not text.
        (Charset::Latin9, 0x80..=0x9F) => None,
        (Charset::Latin9, 0xA4) => Some('\u{20AC}'),
        (Charset::Latin9, 0xA6) => Some('\u{0160}'),
        (Charset::Latin9, 0xA8) => Some('\u{0161}'),
        (Charset::Latin9, 0xB4) => Some('\u{017D}'),
        (Charset::Latin9, 0xB8) => Some('\u{017E}'),
        (Charset::Latin9, 0xBC) => Some('\u{0152}'),
        (Charset::Latin9, 0xBD) => Some('\u{0153}'),
        (Charset::Latin9, 0xBE) => Some('\u{0178}'),
        (_, _) => Some(char::from(b)),
    }
}

/// Decodes `bytes` in the charset labelled `label`.
pub fn decode(label: &str, bytes: &[u8]) -> Result<String, String> {
    let charset = lookup(label)
        .ok_or_else(|| format!("unknown charset {label:?} (mailrun decodes {KNOWN})"))?;
    if charset == Charset::Utf8 {
        return String::from_utf8(bytes.to_vec()).map_err(|e| {
            let at = e.utf8_error().valid_up_to();
            format!(
                "byte 0x{:02X} at offset {at} is not valid {label}",
                bytes[at]
            )
        });
    }
    bytes
        .iter()
        .enumerate()
        .map(|(at, &b)| {
            single_byte(charset, b)
                .ok_or_else(|| format!("byte 0x{b:02X} at offset {at} is not valid {label}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_charsets() {
        assert_eq!(decode("UTF-8", "Grüße".as_bytes()).unwrap(), "Grüße");
        assert_eq!(decode("us-ascii", b"plain").unwrap(), "plain");
        assert_eq!(decode("ISO-8859-1", b"Gr\xfc\xdfe").unwrap(), "Grüße");
        assert_eq!(decode("latin1", b"\xe9t\xe9").unwrap(), "été");
        assert_eq!(decode("iso-8859-1*de", b"\xfc").unwrap(), "ü");
        assert_eq!(decode("\"iso-8859-15\"", b"\xa4 \xbd").unwrap(), "€ œ");
        assert_eq!(decode("windows-1252", b"\x80\x93x\x94").unwrap(), "€“x”");
        // Latin-1 labels read 0x80-0x9F as windows-1252, as mail readers do.
        assert_eq!(decode("iso-8859-1", b"\x80").unwrap(), "€");
        assert_eq!(decode("ISO-8859-1", b"\xa4").unwrap(), "¤");
    }

    #[test]
    fn bytes_a_charset_lacks_and_unknown_charsets_are_refused() {
        assert!(decode("us-ascii", b"\xfc").unwrap_err().contains("0xFC"));
        assert!(decode("utf-8", b"Gr\xfc\xdfe")
            .unwrap_err()
            .contains("offset 2"));
        assert!(decode("windows-1252", b"\x81").is_err());
        assert!(decode("iso-8859-15", b"\x85").is_err());
        let e = decode("koi8-r", b"x").unwrap_err();
        assert!(e.contains("koi8-r") && e.contains("UTF-8"), "{e}");
    }
}
