//! The world the events describe: products, customers, warehouses and a fleet of IoT devices
//! with per-sensor baselines. Built once from a fixed seed, so every run and every scenario
//! refers to the same ids (an order's products are the ones inventory events move).

use std::sync::LazyLock;

use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;

/// The catalogue's own seed: fixed, so ids are stable across runs whatever the run's seed.
const CATALOGUE_SEED: u64 = 0x7075_6c73_6500_0001;

/// A product that can be ordered, viewed and stocked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Product {
    pub id: String,
    pub category: &'static str,
    /// Unit price in cents (so order totals add up exactly).
    pub price_cents: u64,
}

/// One sensor on a device: what it measures, its unit, and its normal behaviour.
#[derive(Clone, Debug, PartialEq)]
pub struct Sensor {
    /// One of `pulse_shared::registry::catalogue::SENSOR_TYPES`.
    pub sensor_type: &'static str,
    pub unit: &'static str,
    /// Mean of a normal reading.
    pub baseline: f64,
    /// Standard deviation of a normal reading.
    pub sigma: f64,
}

/// An IoT device and its sensors.
#[derive(Clone, Debug, PartialEq)]
pub struct Device {
    pub id: String,
    pub sensors: Vec<Sensor>,
}

/// Everything events refer to.
#[derive(Debug)]
pub struct Catalogue {
    pub products: Vec<Product>,
    /// Customer ids; the same ids are the `user_id`s of activity events.
    pub customers: Vec<String>,
    pub warehouses: Vec<&'static str>,
    pub devices: Vec<Device>,
}

const CATEGORIES: &[(&str, u64, u64)] = &[
    // (category, cheapest, dearest) in cents
    ("kitchen", 499, 8_999),
    ("garden", 799, 24_999),
    ("books", 599, 3_999),
    ("electronics", 1_999, 79_999),
    ("toys", 399, 6_999),
    ("apparel", 999, 14_999),
];

const WAREHOUSES: &[&str] = &[
    "wh-berlin",
    "wh-hamburg",
    "wh-munich",
    "wh-leipzig",
    "wh-cologne",
];

/// A sensor of a device model: type, unit, typical baseline, relative spread of the baseline
/// between devices, sigma.
type SensorModel = (&'static str, &'static str, f64, f64, f64);

/// Device models: id prefix and sensors.
const MODELS: &[(&str, &[SensorModel])] = &[
    (
        "fridge",
        &[
            ("temperature", "C", 4.0, 0.25, 0.4),
            ("humidity", "%", 55.0, 0.1, 3.0),
        ],
    ),
    (
        "compressor",
        &[
            ("vibration", "mm/s", 2.5, 0.2, 0.3),
            ("current", "A", 12.0, 0.1, 0.8),
            ("temperature", "C", 45.0, 0.1, 1.5),
        ],
    ),
    (
        "weather",
        &[
            ("temperature", "C", 12.0, 0.3, 2.0),
            ("humidity", "%", 70.0, 0.1, 6.0),
            ("pressure", "hPa", 1013.0, 0.005, 4.0),
        ],
    ),
    (
        "meter",
        &[
            ("voltage", "V", 230.0, 0.01, 1.5),
            ("current", "A", 8.0, 0.3, 1.0),
        ],
    ),
];

const PRODUCTS: usize = 48;
const CUSTOMERS: usize = 500;
const DEVICES_PER_MODEL: usize = 6;

/// The catalogue every generator uses.
pub fn catalogue() -> &'static Catalogue {
    static CATALOGUE: LazyLock<Catalogue> = LazyLock::new(Catalogue::build);
    &CATALOGUE
}

impl Catalogue {
    fn build() -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(CATALOGUE_SEED);
        let products = (1..=PRODUCTS)
            .map(|n| {
                let (category, low, high) = CATEGORIES[n % CATEGORIES.len()];
                // Prices end in 99 cents, as shop prices do.
                let euros = rng.random_range(low / 100..=high / 100);
                Product {
                    id: format!("sku-{n:05}"),
                    category,
                    price_cents: euros * 100 + 99,
                }
            })
            .collect();
        let customers = (1..=CUSTOMERS).map(|n| format!("cust-{n:05}")).collect();
        let devices = MODELS
            .iter()
            .flat_map(|(model, sensors)| {
                (1..=DEVICES_PER_MODEL).map(move |n| (*model, *sensors, n))
            })
            .map(|(model, sensors, n)| Device {
                id: format!("{model}-{n:02}"),
                sensors: sensors
                    .iter()
                    .map(|&(sensor_type, unit, typical, spread, sigma)| Sensor {
                        sensor_type,
                        unit,
                        baseline: typical * (1.0 + rng.random_range(-spread..=spread)),
                        sigma,
                    })
                    .collect(),
            })
            .collect();
        Self {
            products,
            customers,
            warehouses: WAREHOUSES.to_vec(),
            devices,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pulse_shared::registry::catalogue::SENSOR_TYPES;

    #[test]
    fn ids_are_unique_and_sensors_known() {
        let c = catalogue();
        let mut ids: Vec<&str> = c.products.iter().map(|p| p.id.as_str()).collect();
        ids.extend(c.devices.iter().map(|d| d.id.as_str()));
        let total = ids.len();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), total);
        for device in &c.devices {
            for sensor in &device.sensors {
                assert!(SENSOR_TYPES.contains(&sensor.sensor_type));
                assert!(sensor.sigma > 0.0);
            }
        }
        assert!(c.products.iter().all(|p| p.price_cents % 100 == 99));
    }

    #[test]
    fn the_catalogue_is_the_same_every_time() {
        assert_eq!(Catalogue::build().products, catalogue().products);
        assert_eq!(Catalogue::build().devices, catalogue().devices);
    }
}
