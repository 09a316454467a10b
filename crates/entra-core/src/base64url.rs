//! Strict base64url without padding (RFC 4648 §5), the encoding of JWTs and of sealed cookies,
//! decoded with four lookup tables: a session cookie is 4.7 KB of it on every request that
//! opens one, and the `base64` crate's decoder spends about seven instructions a character where
//! this one spends about three (docs/BENCHMARK.md, "Performance").
//!
//! Refused: any character outside the alphabet (padding `=` included), a length no encoding
//! has (4n + 1), and trailing bits that are not zero (so each value has one encoding).

/// Set in a table entry for a character outside the alphabet.
const INVALID: u32 = 1 << 31;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Each character's six bits, already shifted to their place in a group of four.
const fn table(shift: u32) -> [u32; 256] {
    let mut table = [INVALID; 256];
    let mut i = 0;
    while i < 64 {
        table[ALPHABET[i] as usize] = (i as u32) << shift;
        i += 1;
    }
    table
}

static TABLES: [[u32; 256]; 4] = [table(18), table(12), table(6), table(0)];

/// Not base64url as JWTs and sealed cookies write it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Invalid;

/// The bytes `text` decodes to (when it decodes).
pub fn decoded_len(text: &[u8]) -> usize {
    text.len() / 4 * 3 + (text.len() % 4).saturating_sub(1)
}

/// Four characters' 24 bits, with [`INVALID`] set if any is outside the alphabet.
#[inline(always)]
fn quad(q: &[u8]) -> u32 {
    let [t0, t1, t2, t3] = &TABLES;
    t0[usize::from(q[0])] | t1[usize::from(q[1])] | t2[usize::from(q[2])] | t3[usize::from(q[3])]
}

/// Decodes `text` into the start of `out`, which must hold [`decoded_len`] bytes.
/// Answers the bytes written.
pub fn decode_to_slice(text: &[u8], out: &mut [u8]) -> Result<usize, Invalid> {
    let len = decoded_len(text);
    let Some(out) = out.get_mut(..len).filter(|_| text.len() % 4 != 1) else { return Err(Invalid) };
    let (octets, rest) = text.split_at(text.len() / 8 * 8);
    let (wide, narrow) = out.split_at_mut(octets.len() / 8 * 6);
    let mut seen = 0u32;
    // Eight characters at a time, their six bytes taken from one word.
    for (o, w) in octets.chunks_exact(8).zip(wide.chunks_exact_mut(6)) {
        let (a, b) = (quad(&o[..4]), quad(&o[4..]));
        seen |= a | b;
        w.copy_from_slice(&(u64::from(a) << 40 | u64::from(b & 0xff_ffff) << 16).to_be_bytes()[..6]);
    }
    let (whole, tail) = rest.split_at(rest.len() / 4 * 4);
    let (three, last) = narrow.split_at_mut(whole.len() / 4 * 3);
    if !whole.is_empty() {
        let n = quad(whole);
        seen |= n;
        three.copy_from_slice(&n.to_be_bytes()[1..]);
    }
    if !tail.is_empty() {
        let n = tail.iter().zip(&TABLES).fold(0, |n, (c, table)| n | table[usize::from(*c)]);
        // Two characters carry one byte and four spare bits, three carry two bytes and two.
        let spare = if tail.len() == 2 { 0xffff } else { 0xff };
        seen |= n | if n & spare != 0 { INVALID } else { 0 };
        last.copy_from_slice(&n.to_be_bytes()[1..tail.len()]);
    }
    match seen & INVALID {
        0 => Ok(len),
        _ => Err(Invalid),
    }
}

/// Characters decoded through the stack at a time: a whole number of groups of four, and large
/// enough that a block's own work is small beside its loop.
const BLOCK: usize = 1024;

/// Decodes `text`, appending to `out` (nothing appended when it does not decode). Block by
/// block through the stack: the vector is neither zeroed first nor checked for room per byte.
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
        // Past two blocks of the vector's decode, every length.
        let bytes: Vec<u8> = (0..=255).cycle().take(BLOCK * 2).collect();
        for len in 0..bytes.len() {
            let text = URL_SAFE_NO_PAD.encode(&bytes[..len]);
            assert_eq!(decode(&text).as_deref(), Ok(&bytes[..len]), "{len} bytes");
        }
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
