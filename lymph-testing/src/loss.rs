//! The loss model shared by the simulator ([`World::set_loss`](crate::World::set_loss)) and the
//! fault proxy of real runs: a lossy link stalls, as TCP over a lossy network does, and loses
//! nothing.

use std::time::Duration;

use rand::Rng;

/// How often a lossy link may lose a segment: every 100 ms of its time.
pub const LOSS_INTERVAL: Duration = Duration::from_millis(100);
/// The retransmission timeout after a loss: Linux's least, `TCP_RTO_MIN`.
const MIN_RTO: Duration = Duration::from_millis(200);
/// The longest retransmission timeout: Linux's `TCP_RTO_MAX`.
const MAX_RTO: Duration = Duration::from_secs(120);

/// Draws what happens on a link that loses segments at `rate` in the next [`LOSS_INTERVAL`]:
/// `None` when nothing is lost, else how long the link stalls: the retransmission timeout,
/// doubled for each retransmission lost too.
pub(crate) fn stall(rng: &mut impl Rng, rate: f64) -> Option<Duration> {
    if rng.random::<f64>() >= rate {
        return None;
    }
    let mut rto = MIN_RTO;
    while rto < MAX_RTO && rng.random::<f64>() < rate {
        rto = (rto * 2).min(MAX_RTO);
    }
    Some(rto)
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn stalls_grow_with_the_rate_and_stay_within_tcps_bounds() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        assert_eq!(stall(&mut rng, 0.0), None);
        assert_eq!(stall(&mut rng, 1.0), Some(MAX_RTO), "every retransmission is lost too");
        let total = |rate: f64, rng: &mut rand::rngs::StdRng| -> Duration {
            (0..10_000).filter_map(|_| stall(rng, rate)).sum()
        };
        let (low, high) = (total(0.05, &mut rng), total(0.5, &mut rng));
        assert!(low > Duration::ZERO && high > low * 5, "5 %: {low:?}, 50 %: {high:?}");
        for _ in 0..1000 {
            let rto = stall(&mut rng, 0.9).unwrap_or(MIN_RTO);
            assert!((MIN_RTO..=MAX_RTO).contains(&rto), "{rto:?}");
        }
    }
}
