//! The identifier rules: which event type names and event ids are safe to become object paths
//! and table names, and the id derived for an event that carries none.

use uuid::Uuid;

/// True for a safe event type name: `^[a-z][a-z0-9_]{0,63}$`. Only such names reach object
/// paths and table names.
pub fn is_valid_event_type(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && name.len() <= 64
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// True for a safe event id: `^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$`. Event ids become object
/// names, so no `/`, no leading dot.
pub fn is_valid_event_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && id.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '@' | '-'))
}

/// Namespace of event ids derived from Pub/Sub message ids (UUID v5, so redeliveries of one
/// message derive the same id).
const DERIVED_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6a1f_3c52_9b7e_4d0a_8f21_5c3e_7d9b_1a40);

/// The event id of a message whose event carries none.
pub fn derived_event_id(message_id: &str) -> String {
    Uuid::new_v5(&DERIVED_ID_NAMESPACE, message_id.as_bytes()).to_string()
}
