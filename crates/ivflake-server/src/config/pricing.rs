//! `[pricing]`: what the store charges, so every search reports its cost
//! in dollars (`stats.cost`, `ivflake_search_cost_nanodollars_total`).

use serde::Deserialize;

/// Store prices in US dollars. The defaults are S3 Standard's list prices
/// in us-east-1: GET $0.0004 and LIST $0.005 per 1,000 requests, and
/// nothing per byte read from the bucket's own region.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PricingConfig {
    pub get_per_1000: f64,
    pub list_per_1000: f64,
    /// Per GB (2^30 bytes) read: 0 in the bucket's region; set it when
    /// reading across regions or clouds (e.g. 0.02 or 0.09).
    pub per_gb: f64,
}

impl Default for PricingConfig {
    fn default() -> Self {
        let lib = ivflake::StorePrices::default();
        Self {
            get_per_1000: lib.per_get * 1000.0,
            list_per_1000: lib.per_list * 1000.0,
            per_gb: lib.per_gb,
        }
    }
}

impl PricingConfig {
    /// The library's prices these settings describe.
    pub fn prices(&self) -> ivflake::StorePrices {
        ivflake::StorePrices {
            per_get: self.get_per_1000 / 1000.0,
            per_list: self.list_per_1000 / 1000.0,
            per_gb: self.per_gb,
        }
    }

    /// Every price is a finite amount, zero or more.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        for (key, value) in [
            ("pricing.get_per_1000", self.get_per_1000),
            ("pricing.list_per_1000", self.list_per_1000),
            ("pricing.per_gb", self.per_gb),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                return Err((key, format!("{value} is not a price (a finite amount, 0 or more)")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_s3_standard_and_convert_per_request() {
        let p = PricingConfig::default();
        assert_eq!((p.get_per_1000, p.list_per_1000, p.per_gb), (0.0004, 0.005, 0.0));
        let lib = p.prices();
        assert!((lib.price(1000, 0, 0) - 0.0004).abs() < 1e-15);
        assert!((lib.price(0, 1000, 0) - 0.005).abs() < 1e-15);
    }

    #[test]
    fn negative_or_nan_prices_name_their_key() {
        for (get, gb, key) in [(-1.0, 0.0, "pricing.get_per_1000"), (0.0, f64::NAN, "pricing.per_gb")] {
            let p = PricingConfig {
                get_per_1000: get,
                per_gb: gb,
                ..PricingConfig::default()
            };
            assert_eq!(p.validate().unwrap_err().0, key);
        }
    }
}
