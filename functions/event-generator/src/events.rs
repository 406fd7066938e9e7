//! Valid events of each known type, built from the catalogue: orders whose totals add up,
//! inventory moves of ordered products, activity in user sessions, sensor readings around each
//! device's baseline with occasional anomalies, and the fields and type a schema drift adds.

use std::collections::VecDeque;
use std::f64::consts::TAU;

use rand::Rng;
use rand::seq::{IndexedRandom as _, index};
use serde_json::{Map, Value, json};

use crate::catalogue::{Catalogue, catalogue};

/// The event types the generator knows how to make (the registry's known types).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventKind {
    Order,
    Inventory,
    UserActivity,
    DeviceTelemetry,
}

impl EventKind {
    /// Every kind, in the order mixes list them.
    pub const ALL: [EventKind; 4] = [
        EventKind::Order,
        EventKind::Inventory,
        EventKind::UserActivity,
        EventKind::DeviceTelemetry,
    ];

    /// The `event_type` the registry knows it by.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Order => "order",
            EventKind::Inventory => "inventory",
            EventKind::UserActivity => "user_activity",
            EventKind::DeviceTelemetry => "device_telemetry",
        }
    }

    /// The kind of an `event_type` name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// The event type a schema drift introduces (not a known type: its table is inferred).
pub const DRIFT_EVENT_TYPE: &str = "shipment";

/// One event's fields, before it is serialised.
pub(crate) struct Built {
    pub fields: Map<String, Value>,
    pub event_type: &'static str,
    /// A telemetry reading a few sigma away from its sensor's baseline.
    pub anomaly: bool,
}

const ORDER_STATUSES: &[(&str, u32)] = &[
    ("pending", 10),
    ("confirmed", 15),
    ("paid", 40),
    ("shipped", 15),
    ("delivered", 12),
    ("cancelled", 5),
    ("refunded", 3),
];

const ACTIVITIES: &[(&str, u32)] = &[
    ("page_view", 30),
    ("search", 12),
    ("product_view", 25),
    ("add_to_cart", 10),
    ("remove_from_cart", 3),
    ("checkout", 5),
    ("purchase", 5),
    ("login", 5),
    ("logout", 3),
    ("signup", 2),
];

const SEARCHES: &[&str] = &[
    "garden hose",
    "usb-c cable",
    "cast iron pan",
    "kids puzzle",
    "rain jacket",
    "paperback thriller",
    "led bulb",
];

/// An order recently generated, so later events can refer to it.
struct RecentOrder {
    order_id: String,
    customer_id: String,
    items: Vec<(usize, u64)>,
    total_cents: u64,
}

/// Builds events and remembers what it built recently (orders, open sessions), so that
/// purchases, sales and shipments refer to orders that exist.
pub(crate) struct EventFactory {
    catalogue: &'static Catalogue,
    recent_orders: VecDeque<RecentOrder>,
    /// Open sessions: (customer index, session id).
    sessions: Vec<(usize, String)>,
    anomaly_ratio: f64,
}

const RECENT_ORDERS: usize = 256;
const OPEN_SESSIONS: usize = 32;

impl EventFactory {
    pub fn new(anomaly_ratio: f64) -> Self {
        Self {
            catalogue: catalogue(),
            recent_orders: VecDeque::with_capacity(RECENT_ORDERS),
            sessions: Vec::with_capacity(OPEN_SESSIONS),
            anomaly_ratio,
        }
    }

    /// A valid event of `kind` with the given envelope fields.
    pub fn build(
        &mut self,
        rng: &mut impl Rng,
        kind: EventKind,
        event_id: String,
        timestamp: String,
    ) -> Built {
        let mut anomaly = false;
        let body = match kind {
            EventKind::Order => self.order(rng),
            EventKind::Inventory => self.inventory(rng),
            EventKind::UserActivity => self.activity(rng),
            EventKind::DeviceTelemetry => {
                let (body, is_anomaly) = self.telemetry(rng);
                anomaly = is_anomaly;
                body
            }
        };
        Built {
            fields: envelope(kind.name(), event_id, timestamp, body),
            event_type: kind.name(),
            anomaly,
        }
    }

    /// Adds the fields a newer producer sends on a known type (nullable columns downstream).
    pub fn add_drift_fields(&self, rng: &mut impl Rng, built: &mut Built) {
        let extra = match built.event_type {
            "order" => json!({
                "coupon_code": *["AUTUMN10", "WELCOME5", "FREESHIP"].choose(rng).unwrap_or(&"AUTUMN10"),
                "channel": *["web", "app", "marketplace"].choose(rng).unwrap_or(&"web"),
            }),
            "inventory" => {
                json!({"batch_id": format!("b-{:06x}", rng.random::<u32>() & 0xff_ffff)})
            }
            "user_activity" => {
                json!({"app_version": format!("5.{}.{}", rng.random_range(0..4), rng.random_range(0..10))})
            }
            _ => json!({
                "firmware": format!("2.{}.0", rng.random_range(3..6)),
                "battery_pct": rng.random_range(5..=100),
            }),
        };
        if let Value::Object(extra) = extra {
            built.fields.extend(extra);
        }
    }

    /// An event of the type a schema drift introduces: a shipment of a recent order.
    pub fn shipment(&mut self, rng: &mut impl Rng, event_id: String, timestamp: String) -> Built {
        let order_id = match self.recent_orders.back() {
            Some(order) => order.order_id.clone(),
            None => self.order_id(rng),
        };
        let body = json!({
            "shipment_id": format!("shp-{:012x}", rng.random::<u64>() >> 16),
            "order_id": order_id,
            "carrier": *["dhl", "ups", "dpd", "hermes"].choose(rng).unwrap_or(&"dhl"),
            "status": *["label_created", "in_transit", "out_for_delivery", "delivered"].choose(rng).unwrap_or(&"in_transit"),
            "warehouse_id": *self.catalogue.warehouses.choose(rng).unwrap_or(&"wh-berlin"),
            "weight_kg": round(rng.random_range(0.2..25.0), 2),
        });
        Built {
            fields: envelope(DRIFT_EVENT_TYPE, event_id, timestamp, body),
            event_type: DRIFT_EVENT_TYPE,
            anomaly: false,
        }
    }

    fn order(&mut self, rng: &mut impl Rng) -> Value {
        let catalogue = self.catalogue;
        let customer = rng.random_range(0..catalogue.customers.len());
        let lines = weighted(rng, &[(1usize, 50), (2, 30), (3, 15), (4, 5)]);
        let items: Vec<(usize, u64)> = index::sample(rng, catalogue.products.len(), lines)
            .into_iter()
            .map(|product| {
                let quantity = weighted(rng, &[(1u64, 70), (2, 20), (3, 6), (4, 3), (5, 1)]);
                (product, quantity)
            })
            .collect();
        let total_cents: u64 = items
            .iter()
            .map(|&(p, q)| catalogue.products[p].price_cents * q)
            .sum();
        let order_id = self.order_id(rng);
        let body = json!({
            "order_id": order_id,
            "customer_id": catalogue.customers[customer],
            "items": items.iter().map(|&(p, q)| json!({
                "product_id": catalogue.products[p].id,
                "quantity": q,
                "price": cents(catalogue.products[p].price_cents),
            })).collect::<Vec<_>>(),
            "total_amount": cents(total_cents),
            "status": weighted(rng, ORDER_STATUSES),
            "currency": "EUR",
        });
        if self.recent_orders.len() == RECENT_ORDERS {
            self.recent_orders.pop_front();
        }
        self.recent_orders.push_back(RecentOrder {
            order_id,
            customer_id: catalogue.customers[customer].clone(),
            items,
            total_cents,
        });
        body
    }

    fn inventory(&mut self, rng: &mut impl Rng) -> Value {
        let catalogue = self.catalogue;
        let reason = weighted(
            rng,
            &[
                ("sale", 55),
                ("restock", 15),
                ("return", 10),
                ("adjustment", 12),
                ("damaged", 8),
            ],
        );
        let products = catalogue.products.len();
        let (product, change): (usize, i64) = match reason {
            // A sale takes the units of a line of a recent order out of stock.
            "sale" => match self.recent_orders.iter().nth_back(rng.random_range(0..8)) {
                Some(order) => {
                    let (p, q) = order.items[rng.random_range(0..order.items.len())];
                    (p, -(q as i64))
                }
                None => (rng.random_range(0..products), -rng.random_range(1..=3)),
            },
            "restock" => (rng.random_range(0..products), 12 * rng.random_range(2..=20)),
            "return" => (rng.random_range(0..products), rng.random_range(1..=2)),
            "adjustment" => {
                let change = rng.random_range(1..=5);
                (
                    rng.random_range(0..products),
                    if rng.random_bool(0.5) {
                        change
                    } else {
                        -change
                    },
                )
            }
            _ => (rng.random_range(0..products), -rng.random_range(1..=4)),
        };
        json!({
            "product_id": catalogue.products[product].id,
            "warehouse_id": *catalogue.warehouses.choose(rng).unwrap_or(&"wh-berlin"),
            "quantity_change": change,
            "reason": reason,
        })
    }

    fn activity(&mut self, rng: &mut impl Rng) -> Value {
        let catalogue = self.catalogue;
        let activity = weighted(rng, ACTIVITIES);
        // A purchase is the activity of a customer who just ordered.
        let purchase = match activity {
            "purchase" => self.recent_orders.back().map(|order| {
                let customer = catalogue
                    .customers
                    .iter()
                    .position(|c| *c == order.customer_id)
                    .unwrap_or_default();
                let metadata = json!({
                    "order_id": order.order_id,
                    "total_amount": cents(order.total_cents),
                    "items": order.items.len(),
                });
                (customer, metadata)
            }),
            _ => None,
        };
        let (customer, session_id) = match &purchase {
            Some((customer, _)) => (*customer, self.session_of(rng, *customer)),
            None => self.pick_session(rng),
        };
        let product = &catalogue.products[rng.random_range(0..catalogue.products.len())];
        let metadata = match (activity, purchase) {
            (_, Some((_, metadata))) => metadata,
            ("page_view", _) => json!({
                "page": *["/", "/deals", "/account", "/help"].choose(rng).unwrap_or(&"/"),
                "referrer": *["direct", "search", "email", "social"].choose(rng).unwrap_or(&"direct"),
            }),
            ("search", _) => json!({
                "query": *SEARCHES.choose(rng).unwrap_or(&"led bulb"),
                "results": rng.random_range(0..120),
            }),
            ("product_view" | "add_to_cart" | "remove_from_cart", _) => json!({
                "product_id": product.id,
                "category": product.category,
                "price": cents(product.price_cents),
            }),
            ("checkout", _) => json!({"cart_items": rng.random_range(1..=5)}),
            ("signup", _) => json!({
                "channel": *["web", "app"].choose(rng).unwrap_or(&"web"),
            }),
            _ => json!({"method": *["password", "sso"].choose(rng).unwrap_or(&"password")}),
        };
        json!({
            "user_id": catalogue.customers[customer],
            "activity_type": activity,
            "metadata": metadata,
            "session_id": session_id,
        })
    }

    /// Mostly continues an open session; sometimes a new visitor arrives.
    fn pick_session(&mut self, rng: &mut impl Rng) -> (usize, String) {
        if rng.random_bool(0.85)
            && let Some(open) = self.sessions.choose(rng)
        {
            return open.clone();
        }
        let customer = rng.random_range(0..self.catalogue.customers.len());
        (customer, self.session_of(rng, customer))
    }

    /// The open session of `customer`, or a new one (replacing a random open session when full).
    fn session_of(&mut self, rng: &mut impl Rng, customer: usize) -> String {
        if let Some((_, id)) = self.sessions.iter().find(|(c, _)| *c == customer) {
            return id.clone();
        }
        let session = (customer, format!("sess-{:012x}", rng.random::<u64>() >> 16));
        if self.sessions.len() == OPEN_SESSIONS {
            let slot = rng.random_range(0..OPEN_SESSIONS);
            self.sessions[slot] = session.clone();
        } else {
            self.sessions.push(session.clone());
        }
        session.1
    }

    fn telemetry(&mut self, rng: &mut impl Rng) -> (Value, bool) {
        let device = &self.catalogue.devices[rng.random_range(0..self.catalogue.devices.len())];
        let sensor = &device.sensors[rng.random_range(0..device.sensors.len())];
        let anomaly = rng.random_bool(self.anomaly_ratio);
        let deviation = if anomaly {
            let sigmas = rng.random_range(4.0..6.0);
            if rng.random_bool(0.5) {
                sigmas
            } else {
                -sigmas
            }
        } else {
            standard_normal(rng)
        };
        let body = json!({
            "device_id": device.id,
            "sensor_type": sensor.sensor_type,
            "reading": round(sensor.baseline + deviation * sensor.sigma, 3),
            "unit": sensor.unit,
        });
        (body, anomaly)
    }

    fn order_id(&self, rng: &mut impl Rng) -> String {
        format!("ord-{:012x}", rng.random::<u64>() >> 16)
    }
}

fn envelope(
    event_type: &str,
    event_id: String,
    timestamp: String,
    body: Value,
) -> Map<String, Value> {
    let mut fields = Map::new();
    fields.insert("event_id".to_owned(), Value::String(event_id));
    fields.insert(
        "event_type".to_owned(),
        Value::String(event_type.to_owned()),
    );
    fields.insert("timestamp".to_owned(), Value::String(timestamp));
    if let Value::Object(body) = body {
        fields.extend(body);
    }
    fields
}

/// Picks from `(value, weight)` pairs.
fn weighted<T: Copy>(rng: &mut impl Rng, choices: &[(T, u32)]) -> T {
    let total: u32 = choices.iter().map(|(_, w)| w).sum();
    let mut ticket = rng.random_range(0..total);
    for &(value, weight) in choices {
        if ticket < weight {
            return value;
        }
        ticket -= weight;
    }
    choices[choices.len() - 1].0
}

/// A draw from N(0, 1) (Box–Muller).
fn standard_normal(rng: &mut impl Rng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1], so the logarithm is finite
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (TAU * u2).cos()
}

fn cents(amount: u64) -> f64 {
    amount as f64 / 100.0
}

fn round(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng as _;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn order_totals_are_the_sum_of_their_lines() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut factory = EventFactory::new(0.0);
        for n in 0..500 {
            let built = factory.build(
                &mut rng,
                EventKind::Order,
                format!("e-{n}"),
                "2026-11-21T10:00:00Z".into(),
            );
            let items = built.fields["items"].as_array().unwrap();
            assert!((1..=4).contains(&items.len()));
            let sum: f64 = items
                .iter()
                .map(|i| i["price"].as_f64().unwrap() * i["quantity"].as_f64().unwrap())
                .sum();
            let total = built.fields["total_amount"].as_f64().unwrap();
            assert!((sum - total).abs() < 0.005, "{sum} vs {total}");
        }
    }

    #[test]
    fn sales_and_purchases_refer_to_generated_orders() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let mut factory = EventFactory::new(0.0);
        let mut orders = std::collections::HashSet::new();
        let mut products = std::collections::HashSet::new();
        let mut referenced = 0;
        for n in 0..2_000 {
            let kind = EventKind::ALL[n % 4];
            let built = factory.build(&mut rng, kind, format!("e-{n}"), "t".into());
            let f = &built.fields;
            match kind {
                EventKind::Order => {
                    orders.insert(f["order_id"].as_str().unwrap().to_owned());
                    for item in f["items"].as_array().unwrap() {
                        products.insert(item["product_id"].as_str().unwrap().to_owned());
                    }
                }
                EventKind::UserActivity if f["activity_type"] == "purchase" => {
                    assert!(orders.contains(f["metadata"]["order_id"].as_str().unwrap()));
                    referenced += 1;
                }
                EventKind::Inventory if f["reason"] == "sale" => {
                    assert!(products.contains(f["product_id"].as_str().unwrap()));
                    assert!(f["quantity_change"].as_i64().unwrap() < 0);
                    referenced += 1;
                }
                _ => {}
            }
        }
        assert!(referenced > 100, "{referenced}");
    }

    #[test]
    fn anomalies_are_several_sigma_from_the_baseline() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut factory = EventFactory::new(0.5);
        let (mut anomalies, mut normal_outliers, mut normal) = (0, 0, 0);
        for n in 0..4_000 {
            let built = factory.build(
                &mut rng,
                EventKind::DeviceTelemetry,
                format!("e-{n}"),
                "t".into(),
            );
            let f = &built.fields;
            let device = catalogue()
                .devices
                .iter()
                .find(|d| d.id == f["device_id"])
                .unwrap();
            let sensor = device
                .sensors
                .iter()
                .find(|s| s.sensor_type == f["sensor_type"])
                .unwrap();
            assert_eq!(f["unit"], sensor.unit);
            let sigmas = (f["reading"].as_f64().unwrap() - sensor.baseline).abs() / sensor.sigma;
            if built.anomaly {
                anomalies += 1;
                assert!(sigmas > 3.9, "{sigmas}");
            } else {
                normal += 1;
                normal_outliers += usize::from(sigmas > 4.0);
            }
        }
        assert!(anomalies > 1_500 && normal > 1_500);
        assert!(normal_outliers < 5, "{normal_outliers}");
    }
}
