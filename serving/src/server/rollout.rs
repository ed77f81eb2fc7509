//! Canary routing (issue #19, docs/rollout.md section 3): which model decides for a customer
//! while a canary runs. Deterministic and sticky: a customer's bucket is a fixed, portable hash
//! of its id salted with the canary's version (`fraudlake_model::rollout::stable_hash`, not
//! `std`'s per-process random hasher), so every replica, every restart and every test sends the
//! customer to the same model, and raising the percent only ever adds customers to the canary.

use fraudlake_model::rollout::{stable_hash, Role};

/// Buckets of the split: its resolution is 0.01 %.
pub const BUCKETS: u32 = 10_000;

/// A canary's share of customers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CanarySplit {
    /// Buckets (of [`BUCKETS`]) routed to the canary: the percent times 100.
    pub basis_points: u32,
    /// Draws each rollout's own slice of customers: the canary's version number, so that the
    /// same customers are not the test population of every model.
    pub salt: i64,
}

impl CanarySplit {
    /// `percent` in [0, 100], rounded to 0.01 %; `None` outside that range (or NaN).
    pub fn new(percent: f64, salt: i64) -> Option<CanarySplit> {
        if !(0.0..=100.0).contains(&percent) {
            return None;
        }
        Some(CanarySplit {
            basis_points: (percent * 100.0).round() as u32,
            salt,
        })
    }

    pub fn percent(self) -> f64 {
        f64::from(self.basis_points) / 100.0
    }
}

/// The customer's bucket, in `0..BUCKETS`.
pub fn bucket(customer_id: i64, salt: i64) -> u32 {
    (stable_hash(customer_id, salt) % u64::from(BUCKETS)) as u32
}

/// Who decides for `customer_id`: the canary when the customer's bucket is below the split's
/// basis points (none at 0 %, all at 100 %), else the champion.
pub fn route(customer_id: i64, split: CanarySplit) -> Role {
    if bucket(customer_id, split.salt) < split.basis_points {
        Role::Canary
    } else {
        Role::Champion
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CUSTOMERS: i64 = 20_000;

    fn split(percent: f64, salt: i64) -> CanarySplit {
        CanarySplit::new(percent, salt).expect("a valid percent")
    }

    fn canary_customers(s: CanarySplit) -> Vec<i64> {
        (0..CUSTOMERS)
            .filter(|&c| route(c, s) == Role::Canary)
            .collect()
    }

    #[test]
    fn ten_percent_of_20000_customers_is_ten_percent_within_one_point() {
        // Binomial: 2,000 expected, standard deviation 42; +- 1 % is +- 200. Several salts
        // (canary versions), each its own draw.
        for salt in 1..=10 {
            let n = canary_customers(split(10.0, salt)).len();
            assert!((1_800..=2_200).contains(&n), "salt {salt}: {n} of 20,000");
        }
    }

    #[test]
    fn a_customer_always_gets_the_same_role() {
        let s = split(10.0, 3);
        for c in 0..CUSTOMERS {
            assert_eq!(route(c, s), route(c, s), "customer {c}");
        }
        // Raising the percent keeps every canary customer in the canary.
        let ten = canary_customers(s);
        let quarter = split(25.0, 3);
        assert!(ten.iter().all(|&c| route(c, quarter) == Role::Canary));
        assert!(canary_customers(quarter).len() > ten.len());
        // Fixed values: the hash may never change, or a rollout would move its customers
        // when replicas run different builds.
        // (Computed once with an independent implementation of SplitMix64.)
        assert_eq!(
            (0..5).map(|c| bucket(c, 1)).collect::<Vec<_>>(),
            vec![2957, 1970, 6695, 7527, 3004]
        );
        assert_eq!(bucket(-1, 7), 6699);
    }

    #[test]
    fn zero_and_hundred_percent_are_exact() {
        assert!(canary_customers(split(0.0, 5)).is_empty());
        assert_eq!(canary_customers(split(100.0, 5)).len(), CUSTOMERS as usize);
        assert_eq!(route(i64::MIN, split(100.0, 5)), Role::Canary);
        assert_eq!(route(i64::MAX, split(0.0, 5)), Role::Champion);
    }

    #[test]
    fn each_rollout_draws_its_own_customers() {
        let a = canary_customers(split(10.0, 1));
        let b: std::collections::HashSet<i64> =
            canary_customers(split(10.0, 2)).into_iter().collect();
        // Independent draws share about 10 % of 10 %: 200 of 20,000.
        let shared = a.iter().filter(|&c| b.contains(c)).count();
        assert!(shared < 500, "{shared} customers in both slices");
    }

    #[test]
    fn percents_outside_0_to_100_are_refused() {
        assert_eq!(CanarySplit::new(-0.5, 1), None);
        assert_eq!(CanarySplit::new(100.5, 1), None);
        assert_eq!(CanarySplit::new(f64::NAN, 1), None);
        assert_eq!(split(0.01, 1).basis_points, 1);
        assert_eq!(split(12.5, 1).basis_points, 1_250);
        assert_eq!(split(12.5, 1).percent(), 12.5);
    }
}
