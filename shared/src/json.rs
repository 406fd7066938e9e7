//! A JSON tree that borrows from the text it was parsed from: the event registry's working form
//! of an event.
//!
//! `serde_json::Value` owns every key and string (one allocation each) and keeps objects in a
//! `BTreeMap` (a node allocation every few members); parsing a 1 KB event into it, and writing it
//! out again, was most of the per-event CPU cost of preprocess (12.5 µs per event with it, 8.2 µs
//! with this tree, measured in one session). Here serde_json still does all of the parsing, with
//! the same strictness (UTF-8, escapes, surrogate pairs, number ranges, nesting depth) and the same
//! error messages, but strings and names without escapes stay slices of the input, an object is one
//! sorted `Vec`, and such slices are written out again as they are. Written out, a tree gives the
//! bytes `serde_json::to_vec` gives for the `Value` of the same text: compact, members sorted by
//! name, the last of duplicate names kept.

use std::borrow::Cow;
use std::fmt;
use std::ops::Deref;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Number;

/// A JSON value whose strings borrow from the parsed text where they can.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Json<'a> {
    Null,
    Bool(bool),
    Number(Number),
    String(Text<'a>),
    Array(Vec<Json<'a>>),
    Object(Object<'a>),
}

impl Json<'_> {
    /// A string value, escaped as needed when written.
    pub(crate) fn string<'t>(text: impl Into<Cow<'t, str>>) -> Json<'t> {
        Json::String(Text::Escaped(text.into()))
    }

    /// The value as an `f64`, if it is a number.
    pub(crate) fn as_f64(&self) -> Option<f64> {
        match self {
            Json::Number(n) => n.as_f64(),
            _ => None,
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Json::Null => out.extend_from_slice(b"null"),
            Json::Bool(true) => out.extend_from_slice(b"true"),
            Json::Bool(false) => out.extend_from_slice(b"false"),
            // serde_json's own number formatting (`1e2` is written `100.0`, as a `Value` is).
            Json::Number(n) => serde_json::to_writer(out, n).expect("writing to a Vec cannot fail"),
            Json::String(text) => text.write(out),
            Json::Array(items) => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    item.write(out);
                }
                out.push(b']');
            }
            Json::Object(object) => object.write(out),
        }
    }
}

/// A string or member name.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Text<'a> {
    /// A string exactly as it stood between its quotes in the parsed text. serde_json lends a
    /// slice of the input only for a string without escapes, and JSON text cannot hold `"`, `\`
    /// or a control character unescaped, so it is written out again as it is, which is what
    /// serde_json's escaping would write (it escapes nothing else). Only `Object::parse` makes
    /// these.
    Verbatim(&'a str),
    /// Any other string: escaped by serde_json when written.
    Escaped(Cow<'a, str>),
}

impl Deref for Text<'_> {
    type Target = str;

    fn deref(&self) -> &str {
        match self {
            Text::Verbatim(text) => text,
            Text::Escaped(text) => text,
        }
    }
}

impl Text<'_> {
    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Text::Verbatim(text) => {
                debug_assert!(
                    !text.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\'),
                    "a verbatim string needs escaping: {text:?}"
                );
                out.push(b'"');
                out.extend_from_slice(text.as_bytes());
                out.push(b'"');
            }
            Text::Escaped(text) => {
                serde_json::to_writer(out, text.as_ref()).expect("writing to a Vec cannot fail");
            }
        }
    }
}

/// A JSON object: its members sorted by name, one per name. Of duplicate names the last one
/// wins, as in `serde_json::Map`, so what is checked is what a consumer of the output reads.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Object<'a> {
    members: Vec<(Text<'a>, Json<'a>)>,
}

/// Objects of up to this many members are searched from the front: comparing lengths first
/// settles most names without comparing bytes, which beats a binary search's string
/// comparisons at these sizes.
const LINEAR_SEARCH_MAX: usize = 16;

impl<'a> Object<'a> {
    /// Parses `data`, which must be one JSON object, as `serde_json::from_slice` would (same
    /// checks, same errors).
    pub(crate) fn parse(data: &'a [u8]) -> Result<Self, serde_json::Error> {
        let mut deserializer = serde_json::Deserializer::from_slice(data);
        // Events have a dozen or so fields: room for them up front saves regrowing.
        let object = deserializer.deserialize_map(ObjectVisitor { capacity: 16 })?;
        deserializer.end()?;
        Ok(object)
    }

    /// Sorts members by name (stable) and keeps the last of each duplicate name: O(n log n), so a
    /// large object of repeated names costs no more than any other of its size.
    fn from_members(mut members: Vec<(Text<'a>, Json<'a>)>) -> Self {
        members.sort_by(|(a, _), (b, _)| a.deref().cmp(b.deref()));
        // `dedup_by` passes (later, kept); moving the later value into the kept slot keeps the
        // last value under the first slot of the run.
        members.dedup_by(|later, kept| {
            let same = *later.0 == *kept.0;
            if same {
                std::mem::swap(&mut later.1, &mut kept.1);
            }
            same
        });
        Self { members }
    }

    fn position(&self, name: &str) -> Result<usize, usize> {
        self.members
            .binary_search_by(|(key, _)| key.deref().cmp(name))
    }

    /// The value of member `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&Json<'a>> {
        if self.members.len() <= LINEAR_SEARCH_MAX {
            self.members
                .iter()
                .find(|(key, _)| key.len() == name.len() && **key == *name)
                .map(|(_, value)| value)
        } else {
            self.position(name).ok().map(|i| &self.members[i].1)
        }
    }

    /// Sets member `name`, replacing any value it had.
    pub(crate) fn insert(&mut self, name: &'a str, value: Json<'a>) {
        match self.position(name) {
            Ok(i) => self.members[i].1 = value,
            Err(i) => self
                .members
                .insert(i, (Text::Escaped(Cow::Borrowed(name)), value)),
        }
    }

    /// Removes member `name`, if present.
    pub(crate) fn remove(&mut self, name: &str) {
        if let Ok(i) = self.position(name) {
            self.members.remove(i);
        }
    }

    /// The object as compact JSON; `size_hint` is the expected length.
    pub(crate) fn to_vec(&self, size_hint: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(size_hint);
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.push(b'{');
        for (i, (name, value)) in self.members.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            name.write(out);
            out.push(b':');
            value.write(out);
        }
        out.push(b'}');
    }
}

// The visitors are reached only through `Object::parse`, with serde_json's slice reader: that is
// what makes a lent string `Text::Verbatim` (another deserializer may lend strings that need
// escaping, so none gets the chance).

/// Any JSON value.
struct JsonSeed;

impl<'de> DeserializeSeed<'de> for JsonSeed {
    type Value = Json<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for JsonSeed {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Self::Value, E> {
        Ok(Json::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Self::Value, E> {
        Ok(Json::Number(value.into()))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Self::Value, E> {
        Ok(Json::Number(value.into()))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Self::Value, E> {
        // As `serde_json::Value` does; JSON text cannot spell a non-finite number.
        Ok(Number::from_f64(value).map_or(Json::Null, Json::Number))
    }

    fn visit_borrowed_str<E>(self, value: &'de str) -> Result<Self::Value, E> {
        Ok(Json::String(Text::Verbatim(value)))
    }

    fn visit_str<E>(self, value: &str) -> Result<Self::Value, E> {
        Ok(Json::string(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Self::Value, E> {
        Ok(Json::string(value))
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Json::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(JsonSeed)? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        ObjectVisitor { capacity: 0 }
            .visit_map(map)
            .map(Json::Object)
    }
}

/// An object; anything else is "invalid type: …, expected a map", as for `serde_json::Map`.
struct ObjectVisitor {
    /// Members to make room for before the first (none for nested objects: an event of many
    /// empty objects must not cost an allocation each).
    capacity: usize,
}

impl<'de> Visitor<'de> for ObjectVisitor {
    type Value = Object<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members = Vec::with_capacity(self.capacity);
        while let Some(name) = map.next_key_seed(NameSeed)? {
            members.push((name, map.next_value_seed(JsonSeed)?));
        }
        Ok(Object::from_members(members))
    }
}

/// A member name.
struct NameSeed;

impl<'de> DeserializeSeed<'de> for NameSeed {
    type Value = Text<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for NameSeed {
    type Value = Text<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E>(self, value: &'de str) -> Result<Self::Value, E> {
        Ok(Text::Verbatim(value))
    }

    fn visit_str<E>(self, value: &str) -> Result<Self::Value, E> {
        Ok(Text::Escaped(Cow::Owned(value.to_owned())))
    }

    fn visit_string<E>(self, value: String) -> Result<Self::Value, E> {
        Ok(Text::Escaped(Cow::Owned(value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Object<'_> {
        Object::parse(text.as_bytes()).unwrap()
    }

    fn write(object: &Object<'_>) -> String {
        String::from_utf8(object.to_vec(0)).unwrap()
    }

    #[test]
    fn strings_and_names_borrow_unless_escaped() {
        let object = parse(r#"{"plain":"text","esc\u0061ped":"a\nb","nested":{"k":["v"]}}"#);
        let verbatim =
            |value: Option<&Json<'_>>| matches!(value, Some(Json::String(Text::Verbatim(_))));
        assert!(verbatim(object.get("plain")));
        assert!(
            matches!(object.get("escaped"), Some(Json::String(Text::Escaped(Cow::Owned(s)))) if s == "a\nb")
        );
        assert!(
            object
                .members
                .iter()
                .any(|(k, _)| matches!(k, Text::Escaped(Cow::Owned(k)) if k == "escaped"))
        );
        let Some(Json::Object(nested)) = object.get("nested") else {
            panic!("nested is an object")
        };
        let Some(Json::Array(items)) = nested.get("k") else {
            panic!("k is an array")
        };
        assert!(matches!(&items[0], Json::String(Text::Verbatim("v"))));
    }

    #[test]
    fn members_are_sorted_and_the_last_duplicate_wins() {
        let object = parse(r#"{"b":1,"a":2,"b":3,"c":{"y":1,"x":2,"y":3},"b":4}"#);
        assert_eq!(write(&object), r#"{"a":2,"b":4,"c":{"x":2,"y":3}}"#);
        // Many repeats of one name: one member, the last value.
        let text = format!(
            "{{{}\"k\":\"last\"}}",
            (0..10_000)
                .map(|i| format!("\"k\":{i},"))
                .collect::<String>()
        );
        assert_eq!(write(&parse(&text)), r#"{"k":"last"}"#);
    }

    #[test]
    fn lookups_find_members_in_small_and_large_objects() {
        for size in [0, 1, 3, LINEAR_SEARCH_MAX, LINEAR_SEARCH_MAX + 1, 200] {
            let text = format!(
                "{{{}}}",
                (0..size)
                    .map(|i| format!("\"k{i}\":{i}"))
                    .collect::<Vec<_>>()
                    .join(",")
            );
            let object = parse(&text);
            for i in 0..size {
                assert_eq!(
                    object.get(&format!("k{i}")),
                    Some(&Json::Number(i.into())),
                    "{size}"
                );
            }
            assert_eq!(object.get("k"), None);
            assert_eq!(object.get(&format!("k{size}")), None);
        }
    }

    #[test]
    fn insert_replaces_or_adds_in_order_and_remove_removes() {
        let mut object = parse(r#"{"b":1,"d":2}"#);
        object.insert("c", Json::Bool(true));
        object.insert("d", Json::Null);
        object.insert("a", Json::string("x\"y"));
        object.remove("b");
        object.remove("absent");
        assert_eq!(write(&object), r#"{"a":"x\"y","c":true,"d":null}"#);
    }

    #[test]
    fn writes_what_serde_json_writes_for_the_value() {
        let texts = [
            r#"{"n":[1,-1,1.5,1e2,-0,0.0,-0.0,18446744073709551615,-9223372036854775808,
                123456789012345678901234567890,5e-324,1.7976931348623157e308]}"#,
            // Escaped and verbatim strings side by side: what serde_json escapes, and what it
            // leaves (non-ASCII, U+2028, DEL, `/`).
            "{\"s\":\"\\u00e9\\ud83d\\ude00\\\"\\\\\\/\\b\\f\\n\\r\\t\\u0001\\u001f\\u2028\",
                \"v\":\"é😀 \u{2028}\u{7f}/'<>&\",\"\\u0000\":0,\"ü\":1}",
            r#"{"o":{"z":{},"a":[]},"t":true,"f":false,"z":null,"a":[[],[{}],[1,[2,[3]]]]}"#,
            " { \"spaced\" : [ 1 , 2 ] ,\n\t\"x\" : { \"y\" : null } } ",
        ];
        for text in texts {
            let value: serde_json::Value = serde_json::from_str(text).unwrap();
            assert_eq!(
                write(&parse(text)),
                serde_json::to_string(&value).unwrap(),
                "{text}"
            );
        }
    }

    #[test]
    fn a_long_decimal_reads_back_as_the_number_it_was() {
        // Found by fuzzing: serde_json parses decimals of more than 19 significant digits with an
        // approximate algorithm unless its `float_roundtrip` feature is on, and the shortest form
        // of that approximation reads back one unit in the last place away, so an event's amount
        // changed each time it was normalised.
        let digits = "2".repeat(117);
        let text = format!(r#"{{"amount":22.5{digits}}}"#);
        let written = write(&parse(&text));
        let amount = |text: &str| {
            serde_json::from_str::<serde_json::Value>(text).unwrap()["amount"]
                .as_f64()
                .unwrap()
        };
        assert_eq!(amount(&written), 22.522_222_222_222_222);
        assert_eq!(amount(&written), amount(&text), "{written}");
    }

    #[test]
    fn only_an_object_is_an_object_and_errors_are_serde_json_s() {
        for text in ["[]", "1", "\"s\"", "null", "{\"a\":1} 2", "{\"a\"}", ""] {
            let ours = Object::parse(text.as_bytes()).unwrap_err();
            let theirs = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(text)
                .unwrap_err();
            assert_eq!(ours.to_string(), theirs.to_string(), "{text}");
        }
    }
}
