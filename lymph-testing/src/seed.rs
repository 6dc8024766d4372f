//! Seeds: where a run's seed comes from, and the seeds derived from it.

/// Mixes `value` into `seed` (FNV-1a over the bytes, then a splitmix64 finaliser): stable across
/// runs, platforms and Rust versions, unlike `std`'s hashers.
pub fn derive(seed: u64, value: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for byte in value.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    splitmix(hash)
}

/// The `index`-th seed of a sweep starting at `base`.
pub fn nth(base: u64, index: u32) -> u64 {
    if index == 0 { base } else { splitmix(base.wrapping_add(u64::from(index))) }
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_seeds_are_stable_and_distinct() {
        assert_eq!(derive(42, "echo-1"), derive(42, "echo-1"));
        assert_ne!(derive(42, "echo-1"), derive(42, "echo-2"));
        assert_ne!(derive(42, "echo-1"), derive(43, "echo-1"));
        assert_eq!(nth(7, 0), 7);
        assert_ne!(nth(7, 1), nth(7, 2));
    }
}
