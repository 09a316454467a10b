//! A group as an identity holds it: an object id as 16 bytes (a session keeps them so, and
//! 200 of them cost nothing until something asks for their text), or text (a token's claim,
//! and the other forms Entra emits: sAMAccountName, display names).

use std::fmt;

/// One group of an identity, borrowed from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group<'a> {
    /// A canonical object id, its text lower-case.
    Id([u8; 16]),
    Name(&'a str),
}

/// A group as a session keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeptGroup {
    Id([u8; 16]),
    /// Any other form, as given (an upper-case GUID stays text, so that it reads back as it was).
    Name(String),
}

const HEX: &[u8; 16] = b"0123456789abcdef";
/// Where the 32 hexadecimal digits of a GUID's text are: every position but the four dashes.
const DASHES: [usize; 4] = [8, 13, 18, 23];

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// The 16 bytes of a GUID in its canonical 8-4-4-4-12 text (any case); `None` for any other text.
pub fn guid_bytes(text: &str) -> Option<[u8; 16]> {
    let text = text.as_bytes();
    if text.len() != 36 || DASHES.iter().any(|&i| text[i] != b'-') {
        return None;
    }
    let mut out = [0u8; 16];
    let mut digits = text.iter().enumerate().filter(|(i, _)| !DASHES.contains(i)).map(|(_, c)| *c);
    for byte in &mut out {
        let (high, low) = (hex_value(digits.next()?)?, hex_value(digits.next()?)?);
        *byte = high << 4 | low;
    }
    Some(out)
}

/// The canonical lower-case text of a GUID's 16 bytes.
pub fn guid_text(bytes: &[u8; 16]) -> [u8; 36] {
    let mut out = [b'-'; 36];
    let mut at = 0;
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            at += 1;
        }
        out[at] = HEX[usize::from(b >> 4)];
        out[at + 1] = HEX[usize::from(b & 15)];
        at += 2;
    }
    out
}

/// A group's text: borrowed, or an object id's written out on the stack.
pub enum GroupText<'a> {
    Borrowed(&'a str),
    Id([u8; 36]),
}

impl std::ops::Deref for GroupText<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        match self {
            GroupText::Borrowed(text) => text,
            // Hexadecimal digits and dashes: always UTF-8.
            GroupText::Id(text) => std::str::from_utf8(text).unwrap_or_default(),
        }
    }
}

impl AsRef<str> for GroupText<'_> {
    fn as_ref(&self) -> &str {
        self
    }
}

impl<'a> Group<'a> {
    pub fn text(self) -> GroupText<'a> {
        match self {
            Group::Id(bytes) => GroupText::Id(guid_text(&bytes)),
            Group::Name(name) => GroupText::Borrowed(name),
        }
    }

    /// Whether this is `wanted` (text, compared without regard to case; `wanted_id` is
    /// `wanted`'s bytes when it is an object id).
    pub fn is(self, wanted: &str, wanted_id: Option<&[u8; 16]>) -> bool {
        match self {
            Group::Id(bytes) => wanted_id == Some(&bytes),
            Group::Name(name) => name.eq_ignore_ascii_case(wanted),
        }
    }
}

impl fmt::Display for Group<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

impl KeptGroup {
    pub fn view(&self) -> Group<'_> {
        match self {
            KeptGroup::Id(bytes) => Group::Id(*bytes),
            KeptGroup::Name(name) => Group::Name(name),
        }
    }
}

impl From<&str> for KeptGroup {
    /// An object id written lower-case (as Entra writes them) is kept as its bytes.
    fn from(text: &str) -> KeptGroup {
        match guid_bytes(text) {
            Some(bytes) if !text.bytes().any(|b| b.is_ascii_uppercase()) => KeptGroup::Id(bytes),
            _ => KeptGroup::Name(text.to_owned()),
        }
    }
}

impl From<String> for KeptGroup {
    fn from(text: String) -> KeptGroup {
        match KeptGroup::from(text.as_str()) {
            KeptGroup::Name(_) => KeptGroup::Name(text),
            id => id,
        }
    }
}

impl From<Group<'_>> for KeptGroup {
    fn from(group: Group) -> KeptGroup {
        match group {
            Group::Id(bytes) => KeptGroup::Id(bytes),
            Group::Name(name) => KeptGroup::from(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0b9f3f6e-4a4c-4c1e-9a63-2f1d8f1b57e1";

    #[test]
    fn an_object_id_reads_back_as_its_text() {
        let bytes = guid_bytes(ID).unwrap();
        assert_eq!(&*Group::Id(bytes).text(), ID);
        assert_eq!(guid_bytes(&ID.to_uppercase()), Some(bytes), "any case");
        assert_eq!(Group::Id(bytes).to_string(), ID);
        for other in
            ["", "0b9f3f6e4a4c4c1e9a632f1d8f1b57e1", "0b9f3f6e-4a4c-4c1e-9a63-2f1d8f1b57eg", "Domain Users"]
        {
            assert_eq!(guid_bytes(other), None, "{other}");
        }
        assert_eq!(guid_bytes("0b9f3f6e-4a4c-4c1e-9a63-2f1d8f1b57é"), None, "36 bytes, not hex");
    }

    #[test]
    fn ids_compare_by_bytes_and_names_by_text_in_any_case() {
        let id = guid_bytes(ID).unwrap();
        let upper = ID.to_uppercase();
        assert!(Group::Id(id).is(&upper, guid_bytes(&upper).as_ref()));
        assert!(!Group::Id(id).is("Domain Users", None));
        assert!(Group::Name("Domain Users").is("domain users", None));
        assert!(Group::Name(ID).is(&upper, guid_bytes(&upper).as_ref()), "a token's id is text");
    }

    #[test]
    fn only_lower_case_object_ids_are_kept_as_bytes() {
        assert_eq!(KeptGroup::from(ID), KeptGroup::Id(guid_bytes(ID).unwrap()));
        let upper = ID.to_uppercase();
        assert_eq!(KeptGroup::from(upper.as_str()), KeptGroup::Name(upper.clone()), "kept as written");
        assert_eq!(KeptGroup::from("Domain Users").view(), Group::Name("Domain Users"));
    }
}
