//! A group as an identity holds it: an object id as 16 bytes (a session keeps them so, and
//! 200 of them cost nothing until something asks for their text), or text (a token's claim,
//! and the other forms Entra emits: sAMAccountName, display names).

use std::fmt;
use std::ops::Range;

use crate::binary::{put_len, put_text, DecodeError, Reader, TooLong};

/// One group of an identity, borrowed from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group<'a> {
    /// A canonical object id, its text lower-case.
    Id([u8; 16]),
    Name(&'a str),
}

/// A session's groups in their sealed form, each a tag and 16 bytes for an object id or a tag
/// and a text field for any other form: read one by one when asked. Opening a session keeps
/// the decrypted payload and where its groups lie in it, so 200 groups cost no copy and no
/// allocation.
#[derive(Debug, Clone, Default)]
pub struct Groups {
    bytes: Vec<u8>,
    /// Where the entries are in `bytes`: all of it for groups made here, the groups' part of a
    /// session's payload for groups opened.
    entries: Range<usize>,
    count: usize,
}

const ID_TAG: u8 = 0;
const TEXT_TAG: u8 = 1;

const HEX: &[u8; 16] = b"0123456789abcdef";
/// Where the four dashes of a GUID's text are (its 32 hexadecimal digits fill the rest).
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
}

impl fmt::Display for Group<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

impl Groups {
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn entries(&self) -> &[u8] {
        self.bytes.get(self.entries.clone()).unwrap_or_default()
    }

    pub fn iter(&self) -> impl Iterator<Item = Group<'_>> {
        let mut r = Reader(self.entries());
        // Checked when they were opened or written: an entry that does not read ends the list.
        (0..self.count).map_while(move |_| match r.byte().ok()? {
            ID_TAG => r.array().ok().map(Group::Id),
            _ => r.str().ok().map(Group::Name),
        })
    }

    /// Adds `group`: an object id written lower-case (as Entra writes them) as its 16 bytes, any
    /// other text as written (an upper-case GUID reads back as it was).
    pub fn push(&mut self, group: Group) -> Result<(), TooLong> {
        if self.entries != (0..self.bytes.len()) {
            // Opened from a payload: the entries become the whole of their own buffer.
            self.bytes = self.entries().to_vec();
            self.entries = 0..self.bytes.len();
        }
        let id = match group {
            Group::Id(bytes) => Ok(bytes),
            Group::Name(text) if text.bytes().any(|b| b.is_ascii_uppercase()) => Err(text),
            Group::Name(text) => guid_bytes(text).ok_or(text),
        };
        match id {
            Ok(bytes) => {
                self.bytes.push(ID_TAG);
                self.bytes.extend_from_slice(&bytes);
            }
            Err(text) => {
                let mut entry = vec![TEXT_TAG];
                put_text(&mut entry, text)?;
                self.bytes.extend_from_slice(&entry);
            }
        }
        self.entries = 0..self.bytes.len();
        self.count += 1;
        Ok(())
    }

    /// Writes the count and the entries.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) -> Result<(), TooLong> {
        put_len(out, self.count)?;
        out.extend_from_slice(self.entries());
        Ok(())
    }

    /// Reads the count and the entries at `r`, every entry checked: the entries' place in the
    /// payload `r` reads, whose length is `payload_len`.
    pub(crate) fn read(r: &mut Reader, payload_len: usize) -> Result<(Range<usize>, usize), DecodeError> {
        let count = r.len()?;
        let start = payload_len - r.0.len();
        for _ in 0..count {
            match r.0 {
                // An object id, the common case, skipped in one step.
                [ID_TAG, rest @ ..] if rest.len() >= 16 => r.0 = &rest[16..],
                [TEXT_TAG, rest @ ..] => {
                    r.0 = rest;
                    r.str()?;
                }
                [ID_TAG, ..] | [] => return Err(DecodeError::Truncated),
                [tag, ..] => return Err(DecodeError::GroupTag(*tag)),
            }
        }
        Ok((start..payload_len - r.0.len(), count))
    }

    /// The groups `read` found in `payload`, which they keep.
    pub(crate) fn opened(payload: Vec<u8>, (entries, count): (Range<usize>, usize)) -> Groups {
        Groups { bytes: payload, entries, count }
    }
}

impl PartialEq for Groups {
    fn eq(&self, other: &Groups) -> bool {
        self.count == other.count && self.entries() == other.entries()
    }
}

impl Eq for Groups {}

impl<'a> FromIterator<Group<'a>> for Groups {
    /// Groups past the layout's limits (65,535 of them, or a name that long) are left out: such
    /// a session would not fit its cookies anyway.
    fn from_iter<I: IntoIterator<Item = Group<'a>>>(groups: I) -> Groups {
        let mut out = Groups::default();
        for group in groups {
            if out.count < usize::from(u16::MAX) {
                let _ = out.push(group);
            }
        }
        out
    }
}

impl<'a> FromIterator<&'a str> for Groups {
    fn from_iter<I: IntoIterator<Item = &'a str>>(groups: I) -> Groups {
        groups.into_iter().map(Group::Name).collect()
    }
}

impl FromIterator<String> for Groups {
    fn from_iter<I: IntoIterator<Item = String>>(groups: I) -> Groups {
        let groups: Vec<String> = groups.into_iter().collect();
        groups.iter().map(String::as_str).collect()
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
    fn only_lower_case_object_ids_are_kept_as_bytes() {
        let upper = ID.to_uppercase();
        let groups: Groups = [ID, upper.as_str(), "Domain Users"].into_iter().collect();
        let id = guid_bytes(ID).unwrap();
        assert_eq!(
            groups.iter().collect::<Vec<_>>(),
            [Group::Id(id), Group::Name(&upper), Group::Name("Domain Users")]
        );
        assert_eq!(groups.entries().len(), 17 + (3 + 36) + (3 + 12), "an id is a tag and 16 bytes");
    }

    #[test]
    fn groups_opened_from_a_payload_read_in_place_and_grow_apart_from_it() {
        let made: Groups = [ID, "Domain Users"].into_iter().collect();
        let mut payload = b"before".to_vec();
        made.encode(&mut payload).unwrap();
        payload.extend_from_slice(b"after");
        let mut r = Reader(&payload[6..]);
        let found = Groups::read(&mut r, payload.len() - 6).unwrap();
        assert_eq!(r.0, b"after");
        let (entries, count) = found;
        let mut opened = Groups::opened(payload.clone(), (entries.start + 6..entries.end + 6, count));
        assert_eq!(opened, made);
        opened.push(Group::Name("Finance")).unwrap();
        assert_eq!(opened.iter().map(|g| g.to_string()).collect::<Vec<_>>(), [ID, "Domain Users", "Finance"]);
        for bad in [&[0, 1, 7][..], &[0, 1, 0, 1], &[0, 1, 1, 0, 2, 0xff, 0xfe]] {
            assert!(Groups::read(&mut Reader(bad), bad.len()).is_err(), "{bad:?}");
        }
    }
}
