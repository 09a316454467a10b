//! The claims a token's rules read, in one pass over its payload: each claim read as the type
//! its rule takes, or marked as another JSON type (refused by name when its rule comes, in the
//! rules' order), borrowing from the payload; every other claim is skipped. One pass: reading
//! each claim again from its raw JSON cost a first sight about 4,000 instructions, and a token's
//! groups array twice its length.

use std::marker::PhantomData;

use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use crate::error::Denial;
use crate::token::JsonStr;

/// Absent claims are `None`.
#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct ClaimsView<'a> {
    pub(crate) exp: Option<Typed<NumericDate>>,
    pub(crate) nbf: Option<Typed<NumericDate>>,
    #[serde(borrow)]
    pub(crate) iss: Option<Typed<JsonStr<'a>>>,
    #[serde(borrow)]
    pub(crate) aud: Option<Typed<Audience<'a>>>,
    #[serde(borrow)]
    pub(crate) tid: Option<Typed<JsonStr<'a>>>,
    #[serde(borrow)]
    pub(crate) oid: Option<Typed<JsonStr<'a>>>,
    #[serde(borrow)]
    pub(crate) sub: Option<Typed<JsonStr<'a>>>,
    #[serde(borrow)]
    pub(crate) scp: Option<Typed<JsonStr<'a>>>,
    #[serde(borrow)]
    pub(crate) ver: Option<Typed<JsonStr<'a>>>,
    #[serde(borrow)]
    pub(crate) azp: Option<Typed<JsonStr<'a>>>,
    #[serde(borrow)]
    pub(crate) appid: Option<Typed<JsonStr<'a>>>,
    pub(crate) roles: Option<Typed<StringArray>>,
    pub(crate) groups: Option<Typed<StringArray>>,
    /// Conditional Access authentication contexts satisfied: an array of strings.
    pub(crate) acrs: Option<Typed<StringArray>>,
    /// When the user authenticated: a whole number of seconds, as Entra writes it.
    pub(crate) auth_time: Option<Typed<u64>>,
    /// ID tokens only: the sign-in attempt's nonce.
    #[serde(borrow)]
    pub(crate) nonce: Option<Typed<JsonStr<'a>>>,
}

/// A claim as the pass read it.
pub(crate) enum Typed<T> {
    Is(T),
    /// Another JSON type than its rule takes.
    Wrong,
}

/// Claim `name` as read: absent, its value, or a refusal naming it.
pub(crate) fn claim<T>(read: Option<Typed<T>>, name: &'static str) -> Result<Option<T>, Denial> {
    match read {
        None => Ok(None),
        Some(Typed::Is(value)) => Ok(Some(value)),
        Some(Typed::Wrong) => Err(Denial::InvalidClaim(name)),
    }
}

/// A NumericDate: seconds since the epoch, a JSON number (fractions are cut).
pub(crate) struct NumericDate(pub(crate) u64);

/// A JSON array whose elements are all strings, checked without keeping them.
pub(crate) struct StringArray;

/// `aud`: a string (Entra's form), or an array of strings.
pub(crate) enum Audience<'a> {
    One(JsonStr<'a>),
    Many(Vec<JsonStr<'a>>),
}

/// What a claim's type takes of each JSON form; any other form is [`Typed::Wrong`].
pub(crate) trait ClaimType<'de>: Sized {
    fn string(_text: JsonStr<'de>) -> Option<Self> {
        None
    }
    fn unsigned(_n: u64) -> Option<Self> {
        None
    }
    /// serde_json reads only negative whole numbers as signed.
    fn negative(_n: i64) -> Option<Self> {
        None
    }
    fn float(_n: f64) -> Option<Self> {
        None
    }
    fn array<A: SeqAccess<'de>>(mut seq: A) -> Result<Option<Self>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
}

impl<'de: 'a, 'a> ClaimType<'de> for JsonStr<'a> {
    fn string(text: JsonStr<'de>) -> Option<Self> {
        Some(text)
    }
}

impl ClaimType<'_> for u64 {
    fn unsigned(n: u64) -> Option<Self> {
        Some(n)
    }
}

impl ClaimType<'_> for NumericDate {
    fn unsigned(n: u64) -> Option<Self> {
        Some(NumericDate(n))
    }
    fn float(n: f64) -> Option<Self> {
        (n.is_finite() && n >= 0.0).then_some(NumericDate(n as u64))
    }
}

/// Every element read as a string; one that is not makes the whole claim wrong.
fn strings<'de, A: SeqAccess<'de>>(mut seq: A, mut each: impl FnMut(JsonStr<'de>)) -> Result<bool, A::Error> {
    let mut all = true;
    while let Some(element) = seq.next_element::<Typed<JsonStr<'de>>>()? {
        match element {
            Typed::Is(text) => each(text),
            Typed::Wrong => all = false,
        }
    }
    Ok(all)
}

impl<'de> ClaimType<'de> for StringArray {
    fn array<A: SeqAccess<'de>>(seq: A) -> Result<Option<Self>, A::Error> {
        Ok(strings(seq, drop)?.then_some(StringArray))
    }
}

impl<'de: 'a, 'a> ClaimType<'de> for Audience<'a> {
    fn string(text: JsonStr<'de>) -> Option<Self> {
        Some(Audience::One(text))
    }
    fn array<A: SeqAccess<'de>>(seq: A) -> Result<Option<Self>, A::Error> {
        let mut many = Vec::new();
        Ok(strings(seq, |text| many.push(text))?.then_some(Audience::Many(many)))
    }
}

impl<'de, T: ClaimType<'de>> Deserialize<'de> for Typed<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(Reading(PhantomData))
    }
}

struct Reading<T>(PhantomData<T>);

fn typed<T>(value: Option<T>) -> Typed<T> {
    value.map_or(Typed::Wrong, Typed::Is)
}

impl<'de, T: ClaimType<'de>> Visitor<'de> for Reading<T> {
    type Value = Typed<T>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Typed<T>, E> {
        Ok(typed(T::string(JsonStr::borrowed(text))))
    }
    fn visit_str<E>(self, text: &str) -> Result<Typed<T>, E> {
        Ok(typed(T::string(JsonStr::owned(text))))
    }
    fn visit_u64<E>(self, n: u64) -> Result<Typed<T>, E> {
        Ok(typed(T::unsigned(n)))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Typed<T>, E> {
        Ok(typed(T::negative(n)))
    }
    fn visit_f64<E>(self, n: f64) -> Result<Typed<T>, E> {
        Ok(typed(T::float(n)))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Typed<T>, E> {
        Ok(Typed::Wrong)
    }
    fn visit_unit<E>(self) -> Result<Typed<T>, E> {
        Ok(Typed::Wrong)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Typed<T>, A::Error> {
        T::array(seq).map(typed)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Typed<T>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Typed::Wrong)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(json: &str) -> ClaimsView<'_> {
        serde_json::from_str(json).expect("a JSON object")
    }

    #[test]
    fn each_claim_is_its_type_or_wrong_and_a_wrong_one_is_named() {
        let ok = view(
            r#"{"exp": 17.9, "nbf": 3, "iss": "i", "aud": ["a", "b"], "roles": ["r"], "auth_time": 5, "x": {"y": [1]}}"#,
        );
        assert!(matches!(claim(ok.exp, "exp"), Ok(Some(NumericDate(17)))), "fractions are cut");
        assert!(matches!(claim(ok.nbf, "nbf"), Ok(Some(NumericDate(3)))));
        assert_eq!(claim(ok.iss, "iss").unwrap().as_deref(), Some("i"));
        assert!(matches!(claim(ok.aud, "aud"), Ok(Some(Audience::Many(many))) if many.len() == 2));
        assert!(matches!(claim(ok.roles, "roles"), Ok(Some(StringArray))));
        assert!(matches!(claim(ok.auth_time, "auth_time"), Ok(Some(5))));
        assert!(matches!(claim(ok.tid, "tid"), Ok(None)), "absent");
        let wrong = view(
            r#"{"exp": "1", "nbf": -1, "iss": 1, "aud": ["a", 2], "roles": ["r", null], "auth_time": 5.5, "tid": {"a": 1}, "oid": [], "sub": true, "scp": 1, "ver": null}"#,
        );
        assert_eq!(claim(wrong.exp, "exp").err(), Some(Denial::InvalidClaim("exp")));
        assert_eq!(claim(wrong.nbf, "nbf").err(), Some(Denial::InvalidClaim("nbf")), "negative");
        assert_eq!(claim(wrong.iss, "iss").err(), Some(Denial::InvalidClaim("iss")));
        assert_eq!(claim(wrong.aud, "aud").err(), Some(Denial::InvalidClaim("aud")));
        assert_eq!(claim(wrong.roles, "roles").err(), Some(Denial::InvalidClaim("roles")));
        assert_eq!(claim(wrong.auth_time, "auth_time").err(), Some(Denial::InvalidClaim("auth_time")));
        for (read, name) in [(wrong.tid, "tid"), (wrong.oid, "oid"), (wrong.sub, "sub"), (wrong.scp, "scp")] {
            assert_eq!(claim(read, name).err(), Some(Denial::InvalidClaim(name)), "{name}");
        }
        assert!(
            matches!(claim(wrong.ver, "ver"), Ok(None)),
            "null reads as absent, as serde reads an Option"
        );
        assert!(serde_json::from_str::<ClaimsView>(r#"{"exp": 1, "exp": 2}"#).is_err(), "a claim twice");
        assert!(serde_json::from_str::<ClaimsView>(r#"{"iss": "a\u0041"}"#).is_ok(), "escapes are read");
    }
}
