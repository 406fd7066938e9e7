//! Validation and normalisation of one event: a known type is checked against its catalogue
//! entry, any other type against the envelope fields only; a valid event comes out with a UTC
//! `timestamp`, its `event_date` and ingest metadata.

use std::fmt;

use bytes::Bytes;
use chrono::{DateTime, Utc};

use super::catalogue::{Check, FieldKind, FieldSpec, known_type};
use super::identifiers::{derived_event_id, is_valid_event_id, is_valid_event_type};
use crate::error::{Reason, Rejection};
use crate::instant::{self, rfc3339};
use crate::json::{Json, Object};

/// Where a message came from: recorded on the normalised event.
#[derive(Clone, Copy, Debug)]
pub struct Provenance<'a> {
    pub message_id: &'a str,
    pub publish_time: Option<&'a str>,
    pub ingested_at: DateTime<Utc>,
}

/// A valid event, normalised: UTC `timestamp`, `event_date`, and ingest metadata added.
#[derive(Clone, Debug, PartialEq)]
pub struct NormalisedEvent {
    pub event_type: String,
    pub event_id: String,
    pub timestamp: DateTime<Utc>,
    /// The whole event as it is archived and published: compact JSON, members sorted by name
    /// (written once, by `normalise`).
    json: Bytes,
}

impl NormalisedEvent {
    /// The event as compact JSON (clone it to share it: no copy).
    pub fn json(&self) -> &Bytes {
        &self.json
    }
}

/// Validates `data` as an event and normalises it. `max_bytes` bounds the decoded size.
pub fn normalise(
    data: &[u8],
    provenance: &Provenance<'_>,
    max_bytes: usize,
) -> Result<NormalisedEvent, Rejection> {
    if data.len() > max_bytes {
        return Err(Rejection::new(
            Reason::TooLarge,
            format!(
                "the event is {} bytes; the limit is {max_bytes}",
                data.len()
            ),
        ));
    }
    // Borrowing parse (see `crate::json`): strings stay slices of `data` unless escaped.
    let mut fields = Object::parse(data).map_err(|e| {
        Rejection::new(
            Reason::BadJson,
            format!("message data is not a JSON object: {e}"),
        )
    })?;

    let event_type = required_string(&fields, "event_type")?.to_owned();
    if !is_valid_event_type(&event_type) {
        return Err(Rejection::new(
            Reason::InvalidEventType,
            format!(
                "event_type {:?} is not a safe identifier (lower-case letter, then up to 63 \
                 lower-case letters, digits or underscores)",
                truncate(&event_type)
            ),
        ));
    }

    let event_id = match fields.get("event_id") {
        None | Some(Json::Null) => derived_event_id(provenance.message_id),
        Some(Json::String(id)) if is_valid_event_id(id) => id.to_string(),
        Some(Json::String(id)) => {
            return Err(Rejection::new(
                Reason::BadValue,
                format!(
                    "event_id {:?} must be 1-128 letters, digits or `._:@-`, starting with a \
                     letter or digit",
                    truncate(id)
                ),
            ));
        }
        Some(other) => return Err(wrong_type("event_id", "a string", other)),
    };

    let timestamp = parse_timestamp(
        "timestamp",
        required(&fields, "timestamp")?,
        instant::parse_event_time,
    )?;

    if let Some(spec) = known_type(&event_type) {
        check_fields(&fields, spec.fields, FieldPath::Root)?;
    }

    fields.insert("event_id", Json::string(event_id.as_str()));
    fields.insert("timestamp", Json::string(rfc3339(timestamp)));
    // `NaiveDate`'s `Display` is `%Y-%m-%d` without parsing a format string each time.
    fields.insert(
        "event_date",
        Json::string(timestamp.date_naive().to_string()),
    );
    fields.insert("ingested_at", Json::string(rfc3339(provenance.ingested_at)));
    fields.insert("message_id", Json::string(provenance.message_id));
    match provenance
        .publish_time
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
    {
        Some(t) => fields.insert("publish_time", Json::string(rfc3339(t.with_timezone(&Utc)))),
        None => fields.remove("publish_time"),
    }
    // The output is the input without spaces, plus the fields above.
    let json = Bytes::from(fields.to_vec(data.len() + 256));

    Ok(NormalisedEvent {
        event_type,
        event_id,
        timestamp,
        json,
    })
}

fn check_fields(
    fields: &Object<'_>,
    specs: &[FieldSpec],
    parent: FieldPath<'_>,
) -> Result<(), Rejection> {
    for spec in specs {
        let name = FieldPath::Field(&parent, spec.name);
        match fields.get(spec.name) {
            None | Some(Json::Null) if spec.required => {
                return Err(Rejection::new(
                    Reason::MissingField,
                    format!("required field `{name}` is missing"),
                ));
            }
            None | Some(Json::Null) => {}
            Some(value) => check_value(name, spec, value)?,
        }
    }
    Ok(())
}

fn check_value(name: FieldPath<'_>, spec: &FieldSpec, value: &Json<'_>) -> Result<(), Rejection> {
    let bad_value = |why: String| {
        Err(Rejection::new(
            Reason::BadValue,
            format!("field `{name}`: {why}"),
        ))
    };
    match (spec.kind, value) {
        (FieldKind::String, Json::String(s)) => match spec.check {
            Check::NonEmpty if s.trim().is_empty() => return bad_value("must not be empty".into()),
            Check::OneOf(allowed) if !allowed.contains(&&**s) => {
                return bad_value(format!(
                    "{:?} is not one of {}",
                    truncate(s),
                    allowed.join(", ")
                ));
            }
            _ => {}
        },
        (FieldKind::Integer, Json::Number(n)) if n.is_i64() || n.is_u64() => {}
        (FieldKind::Number, Json::Number(_)) => {}
        (FieldKind::Boolean, Json::Bool(_)) | (FieldKind::Object, Json::Object(_)) => {}
        (FieldKind::Timestamp, _) => {
            parse_timestamp(name, value, instant::parse_storable)?;
        }
        (FieldKind::Records(item_specs), Json::Array(items)) => {
            if items.is_empty() {
                return bad_value("must hold at least one item".into());
            }
            for (i, item) in items.iter().enumerate() {
                let item_name = FieldPath::Item(&name, i);
                let Json::Object(item) = item else {
                    return Err(wrong_type(item_name, "an object", item));
                };
                check_fields(item, item_specs, item_name)?;
            }
        }
        (kind, other) => return Err(wrong_type(name, expected(kind), other)),
    }
    if let (Check::NonNegative | Check::Positive, Some(n)) = (spec.check, value.as_f64())
        && (n < 0.0 || (spec.check == Check::Positive && n == 0.0))
    {
        let bound = if spec.check == Check::Positive {
            "> 0"
        } else {
            "≥ 0"
        };
        return bad_value(format!("{n} must be {bound}"));
    }
    Ok(())
}

/// Where a field sits in an event (`items[0].quantity`), spelled out only for error details, so
/// checking a valid event formats nothing.
#[derive(Clone, Copy)]
enum FieldPath<'a> {
    Root,
    Field(&'a FieldPath<'a>, &'a str),
    Item(&'a FieldPath<'a>, usize),
}

impl fmt::Display for FieldPath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldPath::Root => Ok(()),
            FieldPath::Field(FieldPath::Root, name) => f.write_str(name),
            FieldPath::Field(parent, name) => write!(f, "{parent}.{name}"),
            FieldPath::Item(parent, index) => write!(f, "{parent}[{index}]"),
        }
    }
}

fn expected(kind: FieldKind) -> &'static str {
    match kind {
        FieldKind::String => "a string",
        FieldKind::Integer => "an integer",
        FieldKind::Number => "a number",
        FieldKind::Boolean => "a boolean",
        FieldKind::Timestamp => "an RFC 3339 timestamp string",
        FieldKind::Object => "an object",
        FieldKind::Records(_) => "an array of objects",
    }
}

fn json_type(value: &Json<'_>) -> &'static str {
    match value {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

fn wrong_type(name: impl fmt::Display, expected: &str, got: &Json<'_>) -> Rejection {
    Rejection::new(
        Reason::BadFieldType,
        format!("field `{name}` must be {expected}, got {}", json_type(got)),
    )
}

fn required<'a, 'j>(fields: &'a Object<'j>, name: &str) -> Result<&'a Json<'j>, Rejection> {
    match fields.get(name) {
        None | Some(Json::Null) => Err(Rejection::new(
            Reason::MissingField,
            format!("required field `{name}` is missing"),
        )),
        Some(value) => Ok(value),
    }
}

fn required_string<'a, 'j>(fields: &'a Object<'j>, name: &str) -> Result<&'a str, Rejection> {
    match required(fields, name)? {
        Json::String(s) => Ok(s),
        other => Err(wrong_type(name, "a string", other)),
    }
}

/// A timestamp field, parsed by `parse` ([`instant`]'s rules of what both warehouses store).
fn parse_timestamp(
    name: impl fmt::Display,
    value: &Json<'_>,
    parse: fn(&str) -> Result<DateTime<Utc>, String>,
) -> Result<DateTime<Utc>, Rejection> {
    let Json::String(text) = value else {
        return Err(wrong_type(name, "an RFC 3339 timestamp string", value));
    };
    parse(text).map_err(|why| {
        Rejection::new(
            Reason::BadValue,
            format!("field `{name}`: {:?} is {why}", truncate(text)),
        )
    })
}

/// Keeps user input quoted in error details short.
fn truncate(s: &str) -> &str {
    match s.char_indices().nth(80) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::catalogue::KNOWN_TYPES;
    use serde_json::{Map, Value, json};

    fn provenance() -> Provenance<'static> {
        Provenance {
            message_id: "1001",
            publish_time: Some("2024-05-01T12:00:01.5Z"),
            ingested_at: DateTime::parse_from_rfc3339("2024-05-01T12:00:02Z")
                .unwrap()
                .with_timezone(&Utc),
        }
    }

    fn run(event: &Value) -> Result<NormalisedEvent, Rejection> {
        normalise(&serde_json::to_vec(event).unwrap(), &provenance(), 1 << 20)
    }

    fn reject(event: &Value) -> Rejection {
        run(event).expect_err("the event should be rejected")
    }

    /// The normalised event's JSON, parsed.
    fn fields(event: &NormalisedEvent) -> Map<String, Value> {
        serde_json::from_slice(event.json()).unwrap()
    }

    pub(crate) fn valid(event_type: &str) -> Value {
        let base = json!({"event_id": "e-1", "event_type": event_type, "timestamp": "2024-05-01T13:59:58+02:00"});
        let extra = match event_type {
            "order" => json!({"order_id": "o-1", "customer_id": "c-1", "status": "paid",
                "items": [{"product_id": "p-1", "quantity": 2, "price": 9.5}], "total_amount": 19.0}),
            "inventory" => {
                json!({"product_id": "p-1", "warehouse_id": "w-1", "quantity_change": -3})
            }
            "user_activity" => {
                json!({"user_id": "u-1", "activity_type": "search", "metadata": {"q": "socks"}})
            }
            "device_telemetry" => {
                json!({"device_id": "d-1", "sensor_type": "temperature", "reading": 21.5, "unit": "C"})
            }
            _ => json!({"anything": [1, 2]}),
        };
        let mut event = base;
        event
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        event
    }

    fn with(event_type: &str, key: &str, value: Value) -> Value {
        let mut event = valid(event_type);
        event[key] = value;
        event
    }

    fn without(event_type: &str, key: &str) -> Value {
        let mut event = valid(event_type);
        event.as_object_mut().unwrap().remove(key);
        event
    }

    #[test]
    fn every_known_type_accepts_a_valid_event_and_normalises_it() {
        for spec in KNOWN_TYPES {
            let event = run(&valid(spec.name)).unwrap();
            assert_eq!(event.event_type, spec.name);
            assert_eq!(event.event_id, "e-1");
            let fields = fields(&event);
            assert_eq!(fields["timestamp"], "2024-05-01T11:59:58Z");
            assert_eq!(fields["event_date"], "2024-05-01");
            assert_eq!(fields["ingested_at"], "2024-05-01T12:00:02Z");
            assert_eq!(fields["message_id"], "1001");
            assert_eq!(fields["publish_time"], "2024-05-01T12:00:01.500Z");
        }
    }

    #[test]
    fn every_known_type_requires_each_of_its_fields() {
        for spec in KNOWN_TYPES {
            for field in spec.fields.iter().filter(|f| f.required) {
                let err = reject(&without(spec.name, field.name));
                assert_eq!(
                    err.reason,
                    Reason::MissingField,
                    "{}.{}",
                    spec.name,
                    field.name
                );
                assert!(err.detail.contains(field.name), "{}", err.detail);
                let err = reject(&with(spec.name, field.name, Value::Null));
                assert_eq!(err.reason, Reason::MissingField);
            }
        }
    }

    #[test]
    fn every_known_type_checks_field_types() {
        for spec in KNOWN_TYPES {
            for field in spec.fields {
                let wrong = match field.kind {
                    FieldKind::String => json!(5),
                    _ => json!("five"),
                };
                let err = reject(&with(spec.name, field.name, wrong));
                assert_eq!(
                    err.reason,
                    Reason::BadFieldType,
                    "{}.{}: {}",
                    spec.name,
                    field.name,
                    err.detail
                );
            }
        }
    }

    #[test]
    fn values_outside_their_domain_are_bad_values() {
        let cases = [
            with("order", "status", json!("lost")),
            with("order", "total_amount", json!(-1)),
            with("order", "items", json!([])),
            with(
                "order",
                "items",
                json!([{"product_id": "p", "quantity": 0, "price": 1}]),
            ),
            with("user_activity", "activity_type", json!("teleport")),
            with("device_telemetry", "sensor_type", json!("smell")),
            with("inventory", "warehouse_id", json!("  ")),
            with("order", "timestamp", json!("yesterday")),
            with("order", "event_id", json!("../../etc/passwd")),
        ];
        for event in cases {
            assert_eq!(reject(&event).reason, Reason::BadValue, "{event}");
        }
    }

    #[test]
    fn nested_items_are_checked_by_path() {
        let err = reject(&with(
            "order",
            "items",
            json!([{"product_id": "p", "quantity": 1.5, "price": 1}]),
        ));
        assert_eq!(err.reason, Reason::BadFieldType);
        assert!(err.detail.contains("items[0].quantity"), "{}", err.detail);
        let err = reject(&with(
            "order",
            "items",
            json!([{"quantity": 1, "price": 1}]),
        ));
        assert_eq!(err.reason, Reason::MissingField);
    }

    #[test]
    fn event_type_must_be_a_safe_identifier() {
        for bad in [
            "Order",
            "1order",
            "or-der",
            "",
            "../x",
            "a".repeat(65).as_str(),
            "drop table;",
        ] {
            assert_eq!(
                reject(&with("order", "event_type", json!(bad))).reason,
                Reason::InvalidEventType,
                "{bad}"
            );
        }
        assert_eq!(
            reject(&with("order", "event_type", json!(3))).reason,
            Reason::BadFieldType
        );
        assert_eq!(
            reject(&without("order", "event_type")).reason,
            Reason::MissingField
        );
        assert!(is_valid_event_type(&"a".repeat(64)));
    }

    #[test]
    fn unknown_types_need_only_the_envelope_fields() {
        let event = run(&valid("shipment_scan")).unwrap();
        assert_eq!(fields(&event)["anything"], json!([1, 2]));
        assert_eq!(
            reject(&without("shipment_scan", "timestamp")).reason,
            Reason::MissingField
        );
    }

    #[test]
    fn a_missing_event_id_is_derived_from_the_message_id() {
        let first = run(&without("order", "event_id")).unwrap();
        let again = run(&without("order", "event_id")).unwrap();
        assert_eq!(first.event_id, again.event_id);
        assert_eq!(fields(&first)["event_id"], json!(first.event_id));
        assert_ne!(first.event_id, derived_event_id("1002"));
    }

    #[test]
    fn not_json_objects_and_oversized_events_are_rejected() {
        let p = provenance();
        assert_eq!(
            normalise(b"[1]", &p, 100).unwrap_err().reason,
            Reason::BadJson
        );
        assert_eq!(
            normalise(b"{\"a\":", &p, 100).unwrap_err().reason,
            Reason::BadJson
        );
        assert_eq!(
            normalise(&[b' '; 101], &p, 100).unwrap_err().reason,
            Reason::TooLarge
        );
    }

    /// What normalisation produced while it went through `serde_json::Map`: the event parsed
    /// into a `Map`, the normalised fields set, serialised again.
    fn through_value(data: &[u8]) -> Vec<u8> {
        let mut fields: Map<String, Value> = serde_json::from_slice(data).unwrap();
        let event = normalise(data, &provenance(), 1 << 20).unwrap();
        for (key, value) in [
            ("event_id", event.event_id.clone()),
            ("timestamp", rfc3339(event.timestamp)),
            ("event_date", event.timestamp.format("%Y-%m-%d").to_string()),
            ("ingested_at", rfc3339(provenance().ingested_at)),
            ("message_id", "1001".to_owned()),
            ("publish_time", "2024-05-01T12:00:01.500Z".to_owned()),
        ] {
            fields.insert(key.to_owned(), Value::String(value));
        }
        serde_json::to_vec(&fields).unwrap()
    }

    #[test]
    fn the_output_is_byte_for_byte_what_a_serde_json_map_gave() {
        let events: Vec<String> = vec![
            valid("order").to_string(),
            valid("user_activity").to_string(),
            valid("shipment_scan").to_string(),
            // Pretty-printed, escapes in names and values, astral characters, and numbers at the
            // edges of what serde_json keeps exactly.
            serde_json::to_string_pretty(&valid("device_telemetry")).unwrap(),
            r#"{"event_type":"x","timestamp":"2024-05-01T00:00:00Z","caf\u00e9":"a\"b\\c\n\u0001",
                "emoji":"\ud83d\ude00 \u2028","/":"\/","big":18446744073709551615,
                "small":-9223372036854775808,"huge":123456789012345678901234567890,
                "exp":1E2,"tiny":0.1e-5,"neg_zero":-0,"zero_frac":0.0,"pi":3.141592653589793,
                "empty":{},"none":[],"nil":null,"yes":true,"no":false}"#
                .to_owned(),
            // Duplicate names, top level and nested: the last one wins, as in a Map.
            r#"{"event_type":"x","timestamp":"2024-05-01T00:00:00Z","a":1,"b":{"z":1,"y":2,"z":3},
                "a":[{"k":1,"k":{"k":2}}],"event_id":"first","event_id":"second","event_date":5}"#
                .to_owned(),
            // Members out of order at every depth.
            r#"{"zz":{"b":[{"d":1,"c":2}],"a":0},"timestamp":"2024-05-01T00:00:00Z","event_type":"x"}"#
                .to_owned(),
        ];
        for event in events {
            let ours = normalise(event.as_bytes(), &provenance(), 1 << 20).unwrap();
            assert_eq!(
                String::from_utf8(ours.json().to_vec()).unwrap(),
                String::from_utf8(through_value(event.as_bytes())).unwrap(),
                "{event}"
            );
        }
    }

    #[test]
    fn what_serde_json_refuses_is_refused_in_its_words() {
        let deep = format!(
            r#"{{"event_type":"x","timestamp":"2024-05-01T00:00:00Z","d":{}{}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        let cases: Vec<Vec<u8>> = vec![
            b"[1]".to_vec(),
            b"\"x\"".to_vec(),
            b"{\"a\":".to_vec(),
            b"{\"a\":1} x".to_vec(),
            b"{\"a\":1,}".to_vec(),
            // Strictness a skimming parse would lack: a lone surrogate, a number out of range,
            // invalid UTF-8 in a string and in a name, a control character, nesting too deep.
            br#"{"event_type":"x","timestamp":"2024-05-01T00:00:00Z","s":"\ud800"}"#.to_vec(),
            br#"{"event_type":"x","timestamp":"2024-05-01T00:00:00Z","n":1e400}"#.to_vec(),
            b"{\"event_type\":\"x\",\"s\":\"\xff\"}".to_vec(),
            b"{\"\xc3\":1}".to_vec(),
            b"{\"s\":\"a\x01b\"}".to_vec(),
            b"{\"s\":\"\\x\"}".to_vec(),
            deep.into_bytes(),
        ];
        for data in cases {
            let serde_json_says = serde_json::from_slice::<Map<String, Value>>(&data).unwrap_err();
            let err = normalise(&data, &provenance(), 1 << 20).unwrap_err();
            assert_eq!(
                err.reason,
                Reason::BadJson,
                "{}",
                String::from_utf8_lossy(&data)
            );
            assert_eq!(
                err.detail,
                format!("message data is not a JSON object: {serde_json_says}")
            );
        }
        // The nesting limit is serde_json's, to the level.
        for depth in 120..135 {
            let deep = format!(
                r#"{{"event_type":"x","timestamp":"2024-05-01T00:00:00Z","d":{}{}}}"#,
                "[".repeat(depth),
                "]".repeat(depth)
            );
            assert_eq!(
                normalise(deep.as_bytes(), &provenance(), 1 << 20).is_ok(),
                serde_json::from_slice::<Map<String, Value>>(deep.as_bytes()).is_ok(),
                "{depth}"
            );
        }
    }

    #[test]
    fn of_duplicate_fields_the_last_is_checked_and_kept() {
        let data = br#"{"event_type":"order","event_id":"e-1","timestamp":"2024-05-01T00:00:00Z",
            "order_id":"o-1","customer_id":"c-1","total_amount":1,
            "items":[{"product_id":"p","quantity":0,"price":1,"quantity":2}],
            "status":"lost","status":"paid"}"#;
        let event = normalise(data, &provenance(), 1 << 20).unwrap();
        assert_eq!(fields(&event)["status"], "paid");
        assert_eq!(fields(&event)["items"][0]["quantity"], 2);

        let data = br#"{"event_type":"order","event_id":"e-1","timestamp":"2024-05-01T00:00:00Z",
            "order_id":"o-1","customer_id":"c-1","total_amount":1,
            "items":[{"product_id":"p","quantity":1,"price":1}],"status":"paid","status":"lost"}"#;
        let err = normalise(data, &provenance(), 1 << 20).unwrap_err();
        assert_eq!(err.reason, Reason::BadValue);
        assert!(err.detail.contains("\"lost\""), "{}", err.detail);

        let data = br#"{"event_type":"Scan","event_type":"scan","event_id":"../x","event_id":"e-2",
            "timestamp":"2024-05-01T00:00:00Z"}"#;
        let event = normalise(data, &provenance(), 1 << 20).unwrap();
        assert_eq!(
            (event.event_type.as_str(), event.event_id.as_str()),
            ("scan", "e-2")
        );
    }

    #[test]
    fn escaped_values_are_checked_unescaped() {
        let data = br#"{"event_type":"\u006frder","event_id":"e\u002d1","timestamp":"2024-05-01T00:00:00Z",
            "order_id":"o-1","customer_id":"c-1","total_amount":1,
            "items":[{"product_id":"p","quantity":1,"price":1}],"status":"p\u0061id"}"#;
        let event = normalise(data, &provenance(), 1 << 20).unwrap();
        assert_eq!(
            (event.event_type.as_str(), event.event_id.as_str()),
            ("order", "e-1")
        );
        assert_eq!(fields(&event)["status"], "paid");
    }

    #[test]
    fn an_unparseable_publish_time_is_dropped_not_kept() {
        let p = Provenance {
            publish_time: Some("soon"),
            ..provenance()
        };
        let data = serde_json::to_vec(&with("order", "publish_time", json!("kept?"))).unwrap();
        let event = normalise(&data, &p, 1 << 20).unwrap();
        assert!(!fields(&event).contains_key("publish_time"));
    }

    #[test]
    fn event_date_is_the_utc_day_of_every_accepted_time() {
        // `date_naive().to_string()` stands in for `format("%Y-%m-%d")`; they agree at the edges.
        for timestamp in [
            "1960-01-01T00:30:00-01:00",
            "1960-01-01T00:00:00Z",
            "2024-05-01T23:30:00-02:00",
            "2159-12-31T23:59:59+01:00",
        ] {
            let event = run(&with("shipment_scan", "timestamp", json!(timestamp))).unwrap();
            assert_eq!(
                fields(&event)["event_date"],
                event.timestamp.format("%Y-%m-%d").to_string(),
                "{timestamp}"
            );
        }
        let event = run(&with(
            "scan",
            "timestamp",
            json!("2024-05-01T23:30:00-02:00"),
        ))
        .unwrap();
        assert_eq!(fields(&event)["event_date"], "2024-05-02");
    }

    /// Years past 9999 in UTC were archived under `+10000/…`, which no replay's listing selects,
    /// and leap seconds passed here and failed both warehouses: every time is now one the
    /// partitions, the archive and the warehouses hold, or is refused with the reason.
    #[test]
    fn times_no_partition_or_warehouse_holds_are_bad_values() {
        for (field, value, why) in [
            ("timestamp", "9999-12-31T23:59:59-01:00", "year 10000"),
            ("timestamp", "0000-01-01T00:00:00Z", "year 0 "),
            (
                "timestamp",
                "2160-01-01T00:00:00Z",
                "outside the event times",
            ),
            (
                "timestamp",
                "1959-12-31T23:59:59Z",
                "1960-01-01 to 2159-12-31",
            ),
            ("timestamp", "2016-12-31T23:59:60Z", "leap second"),
        ] {
            let rejection = reject(&with("order", field, json!(value)));
            assert_eq!(rejection.reason, Reason::BadValue, "{value}");
            assert!(
                rejection.detail.contains(why),
                "{value}: {}",
                rejection.detail
            );
        }
    }
}
