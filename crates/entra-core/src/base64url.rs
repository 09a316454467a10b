//! Strict base64url without padding (RFC 4648 §5), the encoding of JWTs and of sealed cookies:
//! a session cookie is 4.7 KB of it on every request that opens one. Decoded by the `base64`
//! crate's runtime-detected SIMD engine (AVX2 or NEON where the CPU has it, its scalar engine
//! elsewhere): about one instruction a character by callgrind's count, where a decoder by
//! lookup tables spent four (docs/BENCHMARK.md, "Performance").
//!
//! Refused: any character outside the alphabet (padding `=` included), a length no encoding
//! has (4n + 1), and trailing bits that are not zero (so each value has one encoding).

use std::sync::LazyLock;

use base64::engine::general_purpose::GeneralPurposeConfig;
use base64::engine::{DecodePaddingMode, Simd};
use base64::Engine;

/// The engine, its instruction set detected once per process.
static ENGINE: LazyLock<Simd> = LazyLock::new(|| {
    Simd::url_safe(
        GeneralPurposeConfig::new()
            .with_encode_padding(false)
            .with_decode_padding_mode(DecodePaddingMode::RequireNone)
            .with_decode_allow_trailing_bits(false),
    )
});

/// Not base64url as JWTs and sealed cookies write it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Invalid;

/// The bytes `text` decodes to (when it decodes).
pub fn decoded_len(text: &[u8]) -> usize {
    text.len() / 4 * 3 + (text.len() % 4).saturating_sub(1)
}

/// Decodes `text` into the start of `out`, which must hold [`decoded_len`] bytes.
/// Answers the bytes written.
pub fn decode_to_slice(text: &[u8], out: &mut [u8]) -> Result<usize, Invalid> {
    ENGINE.decode_slice(text, out).map_err(|_| Invalid)
}

/// Characters decoded through the stack at a time: a whole number of groups of four, and a
/// block small enough that zeroing it stays cheap (the crate's own vector decode zeroes the
/// whole output first, 3.5 KB for a session).
const BLOCK: usize = 1024;

/// Decodes `text`, appending to `out` (nothing appended when it does not decode).
pub fn decode_to_vec(text: &[u8], out: &mut Vec<u8>) -> Result<(), Invalid> {
    let start = out.len();
    out.reserve(decoded_len(text));
    let mut block = [0u8; BLOCK / 4 * 3];
    for chunk in text.chunks(BLOCK) {
        match decode_to_slice(chunk, &mut block) {
            Ok(len) => out.extend_from_slice(&block[..len]),
            Err(invalid) => {
                out.truncate(start);
                return Err(invalid);
            }
        }
    }
    Ok(())
}

/// Decodes `text` into a vector of its own.
pub fn decode(text: impl AsRef<[u8]>) -> Result<Vec<u8>, Invalid> {
    let mut out = Vec::new();
    decode_to_vec(text.as_ref(), &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;

    #[test]
    fn every_length_and_byte_decodes_as_the_base64_crate_encodes() {
        // Every length past two blocks of the vector's decode: the SIMD kernel's blocks and the
        // scalar ends around them.
        let bytes: Vec<u8> = (0..=255).cycle().take(BLOCK * 2).collect();
        for len in 0..bytes.len() {
            let text = URL_SAFE_NO_PAD.encode(&bytes[..len]);
            assert_eq!(decode(&text).as_deref(), Ok(&bytes[..len]), "{len} bytes");
        }
    }

    #[test]
    fn a_character_outside_the_alphabet_is_refused_at_every_place_of_a_long_value() {
        // Long enough for the SIMD kernel: each place of its blocks and of the scalar end.
        let text = URL_SAFE_NO_PAD.encode((0..=255).cycle().take(300).collect::<Vec<u8>>()).into_bytes();
        for place in 0..text.len() {
            for bad in [b'=', b'+', b'/', b' ', b'\n', b'.', 0, 0x7f, 0x80, 0xff] {
                let mut wrong = text.clone();
                wrong[place] = bad;
                assert_eq!(decode(&wrong), Err(Invalid), "{bad:#x} at {place}");
            }
        }
        assert!(decode(&text).is_ok());
    }

    #[test]
    fn a_vector_is_appended_to() {
        let mut out = b"kept".to_vec();
        decode_to_vec(URL_SAFE_NO_PAD.encode(b"{\"oid\":\"a\"}").as_bytes(), &mut out).unwrap();
        assert_eq!(out, b"kept{\"oid\":\"a\"}");
    }

    #[test]
    fn what_is_not_strict_base64url_is_refused() {
        for text in [
            "a",
            "abcde",
            "ab==",
            "abc=",
            "ab+/",
            "ab/c",
            "ab c",
            "ab\nc",
            "abé",
            "AB",
            "AAB",
            "AAAAAAA=",
            "AAAAAAAA+AAA",
            // In the eight-character pass: each place.
            "+AAAAAAA",
            "AAA+AAAA",
            "AAAAA=AA",
            "AAAAAAé",
            "AAAA AAAAAAA",
        ] {
            assert_eq!(decode(text), Err(Invalid), "{text:?}");
        }
        // Trailing bits: "AB" and "AAB" leave non-zero bits, "AA" and "AAA" do not.
        assert_eq!(decode("AA"), Ok(vec![0]));
        assert_eq!(decode("AAA"), Ok(vec![0, 0]));
        assert_eq!(decode(""), Ok(vec![]));
        let mut out = b"kept".to_vec();
        assert_eq!(decode_to_vec(b"AAAAAAAAAAA*", &mut out), Err(Invalid));
        assert_eq!(out, b"kept", "nothing appended");
        let (mut short, mut room) = ([0u8; 2], [0u8; 4]);
        assert_eq!(decode_to_slice(b"AAAA", &mut short), Err(Invalid), "no room");
        assert_eq!(decode_to_slice(b"AAE", &mut room), Ok(2));
        assert_eq!(room, [0, 1, 0, 0]);
        assert!(URL_SAFE_NO_PAD.decode("AB").is_err(), "as the base64 crate refuses it");
    }
}
