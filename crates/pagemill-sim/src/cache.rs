//! Prompt-cache emulation: prompt tokens hashed in chained blocks (each block's hash covers
//! everything before it, so only a shared *prefix* can hit), held in a bounded LRU.
//!
//! A lookup counts the leading blocks already cached; fewer than the minimum cacheable prefix
//! count as none (OpenAI caches from 1,024 tokens, in 128-token steps). Every full block of the
//! prompt is then cached, so the next request with the same prefix hits.

use std::hash::{Hash, Hasher};
use std::num::NonZeroUsize;
use std::sync::Mutex;

use lru::LruCache;

use crate::profile::Cache as CacheSettings;

/// What one prompt found in, and added to, the cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheOutcome {
    /// Prompt tokens served from cache.
    pub cached: u64,
    /// Prompt tokens newly written to cache.
    pub written: u64,
}

/// A bounded LRU of chained block hashes.
#[derive(Debug)]
pub struct PrefixCache {
    block: usize,
    min_prefix: usize,
    blocks: Option<Mutex<LruCache<u64, ()>>>,
}

impl PrefixCache {
    /// A cache with these settings (disabled ones never hit).
    pub fn new(settings: &CacheSettings) -> Self {
        let capacity = NonZeroUsize::new(settings.capacity_blocks);
        Self {
            block: settings.block_tokens.max(1),
            min_prefix: settings.min_prefix_tokens,
            blocks: match (settings.enabled, capacity) {
                (true, Some(c)) => Some(Mutex::new(LruCache::new(c))),
                _ => None,
            },
        }
    }

    /// Looks up the prompt's prefix and caches its full blocks.
    pub fn lookup_and_insert(&self, tokens: &[u32]) -> CacheOutcome {
        let Some(blocks) = &self.blocks else {
            return CacheOutcome::default();
        };
        let hashes = chained_hashes(tokens, self.block);
        let mut lru = blocks.lock().unwrap_or_else(|e| e.into_inner());
        let hits = hashes.iter().take_while(|h| lru.get(*h).is_some()).count();
        let mut written = 0;
        for h in &hashes[hits..] {
            if lru.put(*h, ()).is_none() {
                written += 1;
            }
        }
        let cached = hits * self.block;
        CacheOutcome {
            cached: if cached >= self.min_prefix && cached > 0 {
                cached as u64
            } else {
                0
            },
            written: (written * self.block) as u64,
        }
    }
}

/// Hash of each full block, chained: block i's hash covers blocks 0..=i.
fn chained_hashes(tokens: &[u32], block: usize) -> Vec<u64> {
    let mut prev = 0u64;
    tokens
        .chunks_exact(block)
        .map(|b| {
            let mut h = std::hash::DefaultHasher::new();
            prev.hash(&mut h);
            b.hash(&mut h);
            prev = h.finish();
            prev
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(block: usize, min: usize, cap: usize) -> CacheSettings {
        CacheSettings {
            enabled: true,
            block_tokens: block,
            min_prefix_tokens: min,
            capacity_blocks: cap,
            ..CacheSettings::default()
        }
    }

    fn tokens(prefix: u32, len: usize) -> Vec<u32> {
        (0..len as u32).map(|i| prefix * 100_000 + i).collect()
    }

    #[test]
    fn a_repeated_prefix_hits_in_whole_blocks_above_the_minimum() {
        let c = PrefixCache::new(&settings(128, 1024, 1000));
        let mut a = tokens(1, 2000);
        assert_eq!(
            c.lookup_and_insert(&a),
            CacheOutcome {
                cached: 0,
                written: 1920
            }
        );
        // Same 1,900-token prefix, different tail: 14 whole blocks = 1,792 tokens hit.
        a.truncate(1900);
        a.extend(tokens(2, 300));
        assert_eq!(c.lookup_and_insert(&a).cached, 1792);
    }

    #[test]
    fn a_shared_prefix_below_the_minimum_does_not_count() {
        let c = PrefixCache::new(&settings(128, 1024, 1000));
        c.lookup_and_insert(&tokens(1, 600));
        assert_eq!(c.lookup_and_insert(&tokens(1, 600)).cached, 0);
    }

    #[test]
    fn the_same_block_after_a_different_prefix_does_not_hit() {
        let c = PrefixCache::new(&settings(4, 4, 1000));
        let mut a = tokens(1, 8);
        c.lookup_and_insert(&a);
        a[0] = 999; // the second block is unchanged, but its prefix is not
        assert_eq!(c.lookup_and_insert(&a).cached, 0);
    }

    #[test]
    fn least_recently_used_blocks_are_evicted() {
        let c = PrefixCache::new(&settings(4, 4, 4));
        c.lookup_and_insert(&tokens(1, 8)); // 2 blocks
        c.lookup_and_insert(&tokens(2, 8)); // 2 more: full
        c.lookup_and_insert(&tokens(3, 8)); // evicts prompt 1
        assert_eq!(c.lookup_and_insert(&tokens(1, 8)).cached, 0);
        assert_eq!(c.lookup_and_insert(&tokens(3, 8)).cached, 8);
    }

    #[test]
    fn disabled_never_hits() {
        let mut s = settings(4, 4, 100);
        s.enabled = false;
        let c = PrefixCache::new(&s);
        c.lookup_and_insert(&tokens(1, 8));
        assert_eq!(c.lookup_and_insert(&tokens(1, 8)), CacheOutcome::default());
    }
}
