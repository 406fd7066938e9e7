//! The catalogue of known event types: their fields, allowed values, table and clustering.

/// The JSON type a field must have, and what its column becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldKind {
    String,
    Integer,
    Number,
    Boolean,
    /// An RFC 3339 string.
    Timestamp,
    /// Any JSON object (a free-form record).
    Object,
    /// A non-empty array of records with these fields.
    Records(&'static [FieldSpec]),
}

/// A constraint on a field's value beyond its type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    None,
    /// A non-empty string.
    NonEmpty,
    /// A number ≥ 0.
    NonNegative,
    /// A number > 0.
    Positive,
    /// One of these strings.
    OneOf(&'static [&'static str]),
}

/// One field of a known event type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldSpec {
    pub name: &'static str,
    pub kind: FieldKind,
    pub required: bool,
    pub check: Check,
    pub description: &'static str,
}

const fn field(
    name: &'static str,
    kind: FieldKind,
    check: Check,
    description: &'static str,
) -> FieldSpec {
    FieldSpec {
        name,
        kind,
        required: true,
        check,
        description,
    }
}

const fn optional(name: &'static str, kind: FieldKind, description: &'static str) -> FieldSpec {
    FieldSpec {
        name,
        kind,
        required: false,
        check: Check::None,
        description,
    }
}

/// A known event type: how it is validated and where it lands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventTypeSpec {
    pub name: &'static str,
    pub table: &'static str,
    pub description: &'static str,
    /// Fields beyond `event_id`, `event_type` and `timestamp`.
    pub fields: &'static [FieldSpec],
    pub clustering: &'static [&'static str],
}

/// Order statuses accepted on `order` events.
pub const ORDER_STATUSES: &[&str] = &[
    "pending",
    "confirmed",
    "paid",
    "shipped",
    "delivered",
    "cancelled",
    "refunded",
];

/// Activity types accepted on `user_activity` events.
pub const ACTIVITY_TYPES: &[&str] = &[
    "page_view",
    "search",
    "product_view",
    "add_to_cart",
    "remove_from_cart",
    "checkout",
    "purchase",
    "login",
    "logout",
    "signup",
];

/// Sensor types accepted on `device_telemetry` events.
pub const SENSOR_TYPES: &[&str] = &[
    "temperature",
    "humidity",
    "pressure",
    "vibration",
    "voltage",
    "current",
];

const ORDER_ITEM: &[FieldSpec] = &[
    field(
        "product_id",
        FieldKind::String,
        Check::NonEmpty,
        "Product ordered.",
    ),
    field(
        "quantity",
        FieldKind::Integer,
        Check::Positive,
        "Units ordered, at least 1.",
    ),
    field(
        "price",
        FieldKind::Number,
        Check::NonNegative,
        "Unit price.",
    ),
];

/// The event types known from the start, each with its own table.
pub const KNOWN_TYPES: &[EventTypeSpec] = &[
    EventTypeSpec {
        name: "order",
        table: "orders",
        description: "A customer order and its line items.",
        fields: &[
            field(
                "order_id",
                FieldKind::String,
                Check::NonEmpty,
                "Order identifier.",
            ),
            field(
                "customer_id",
                FieldKind::String,
                Check::NonEmpty,
                "Customer who ordered.",
            ),
            field(
                "items",
                FieldKind::Records(ORDER_ITEM),
                Check::None,
                "Line items.",
            ),
            field(
                "total_amount",
                FieldKind::Number,
                Check::NonNegative,
                "Order total.",
            ),
            field(
                "status",
                FieldKind::String,
                Check::OneOf(ORDER_STATUSES),
                "Order status.",
            ),
            optional("currency", FieldKind::String, "ISO 4217 currency code."),
        ],
        clustering: &["customer_id", "status"],
    },
    EventTypeSpec {
        name: "inventory",
        table: "inventory",
        description: "A change in stock of one product at one warehouse.",
        fields: &[
            field(
                "product_id",
                FieldKind::String,
                Check::NonEmpty,
                "Product whose stock changed.",
            ),
            field(
                "warehouse_id",
                FieldKind::String,
                Check::NonEmpty,
                "Warehouse holding it.",
            ),
            field(
                "quantity_change",
                FieldKind::Integer,
                Check::None,
                "Units added (+) or removed (−).",
            ),
            optional("reason", FieldKind::String, "Why the stock changed."),
        ],
        clustering: &["product_id", "warehouse_id"],
    },
    EventTypeSpec {
        name: "user_activity",
        table: "user_activity",
        description: "Something a user did on the site or app.",
        fields: &[
            field(
                "user_id",
                FieldKind::String,
                Check::NonEmpty,
                "User who acted.",
            ),
            field(
                "activity_type",
                FieldKind::String,
                Check::OneOf(ACTIVITY_TYPES),
                "What they did.",
            ),
            field(
                "metadata",
                FieldKind::Object,
                Check::None,
                "Details of the activity.",
            ),
            optional(
                "session_id",
                FieldKind::String,
                "Session the activity belongs to.",
            ),
        ],
        clustering: &["user_id", "activity_type"],
    },
    EventTypeSpec {
        name: "device_telemetry",
        table: "device_telemetry",
        description: "One sensor reading from a device.",
        fields: &[
            field(
                "device_id",
                FieldKind::String,
                Check::NonEmpty,
                "Device that measured.",
            ),
            field(
                "sensor_type",
                FieldKind::String,
                Check::OneOf(SENSOR_TYPES),
                "What was measured.",
            ),
            field(
                "reading",
                FieldKind::Number,
                Check::None,
                "The measured value.",
            ),
            field(
                "unit",
                FieldKind::String,
                Check::NonEmpty,
                "Unit of the reading.",
            ),
        ],
        clustering: &["device_id", "sensor_type"],
    },
];

/// Looks up a known event type.
pub fn known_type(name: &str) -> Option<&'static EventTypeSpec> {
    KNOWN_TYPES.iter().find(|spec| spec.name == name)
}
