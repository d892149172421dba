//! Document deduplication: an exact hash of the normalised text, and MinHash signatures of
//! word 5-shingles banded for locality-sensitive hashing (near duplicates: documents whose
//! shingle sets have a Jaccard similarity above about 0.75 share a band with high
//! probability). `Dedup` keeps the first document of each group, in corpus order.
use std::collections::HashSet;

/// MinHash permutations: BANDS bands of ROWS rows. With b = 8, r = 8 a pair of Jaccard
/// similarity s collides in some band with probability 1 - (1 - s^8)^8: 0.96 at s = 0.9,
/// 0.53 at s = 0.75, 0.004 at s = 0.4.
pub const BANDS: usize = 8;
pub const ROWS: usize = 8;
const SHINGLE: usize = 5;

/// splitmix64's finaliser: a fast bijective 64-bit mix.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
    z ^ (z >> 31)
}

/// FNV-1a over bytes, finished with `mix`.
pub fn hash_bytes(b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for &c in b {
        h = (h ^ c as u64).wrapping_mul(0x100000001b3);
    }
    mix(h)
}

/// Exact-duplicate key: the hash of the text with whitespace runs collapsed.
pub fn exact_hash(text: &str) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for w in text.split_whitespace() {
        for &c in w.as_bytes() {
            h = (h ^ c as u64).wrapping_mul(0x100000001b3);
        }
        h = (h ^ b' ' as u64).wrapping_mul(0x100000001b3);
    }
    mix(h)
}

/// The band hashes of a document's MinHash signature (BANDS of them).
pub fn bands(text: &str) -> [u64; BANDS] {
    let words: Vec<u64> = text.split_whitespace().map(|w| hash_bytes(w.as_bytes())).collect();
    let mut sig = [u64::MAX; BANDS * ROWS];
    let n = words.len().saturating_sub(SHINGLE - 1).max(1);
    for i in 0..n {
        let mut h = 0u64;
        for w in &words[i..(i + SHINGLE).min(words.len())] {
            h = mix(h.rotate_left(17) ^ w);
        }
        for (k, s) in sig.iter_mut().enumerate() {
            let v = mix(h ^ (k as u64).wrapping_mul(0x9e3779b97f4a7c15));
            if v < *s {
                *s = v;
            }
        }
    }
    let mut out = [0u64; BANDS];
    for (b, o) in out.iter_mut().enumerate() {
        let mut h = b as u64;
        for v in &sig[b * ROWS..(b + 1) * ROWS] {
            h = mix(h ^ v);
        }
        *o = h;
    }
    out
}

/// What `Dedup::check` decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Unique,
    Exact,
    Near,
}

/// Seen documents: exact hashes and band keys. Memory is 8 bytes per document for the exact
/// set plus 8 * BANDS for the bands (about 100 bytes a document with the sets' overhead).
#[derive(Default)]
pub struct Dedup {
    exact: HashSet<u64>,
    bands: HashSet<u64>,
}

impl Dedup {
    /// Checks a document and records it when it is unique.
    pub fn check(&mut self, exact: u64, bands: &[u64; BANDS]) -> Verdict {
        if !self.exact.insert(exact) {
            return Verdict::Exact;
        }
        let keys = bands.iter().enumerate().map(|(i, b)| mix(*b ^ i as u64));
        let keys: Vec<u64> = keys.collect();
        if keys.iter().any(|k| self.bands.contains(k)) {
            return Verdict::Near;
        }
        self.bands.extend(keys);
        Verdict::Unique
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(seed: u64, words: usize) -> String {
        (0..words).map(|i| format!("w{}", mix(seed * 1_000_003 + i as u64) % 5000)).collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn exact_duplicates_ignore_whitespace_changes() {
        let a = text(1, 300);
        let b = a.replace(' ', "  \n");
        let mut d = Dedup::default();
        assert_eq!(d.check(exact_hash(&a), &bands(&a)), Verdict::Unique);
        assert_eq!(d.check(exact_hash(&b), &bands(&b)), Verdict::Exact);
    }

    #[test]
    fn near_duplicates_are_found_and_different_texts_are_not() {
        let a = text(1, 2000);
        // The same text with 1% of its words changed.
        let b: String = a.split(' ').enumerate().map(|(i, w)| if i % 100 == 7 { "CHANGED" } else { w }).collect::<Vec<_>>().join(" ");
        let c = text(2, 2000);
        let mut d = Dedup::default();
        assert_eq!(d.check(exact_hash(&a), &bands(&a)), Verdict::Unique);
        assert_eq!(d.check(exact_hash(&b), &bands(&b)), Verdict::Near);
        assert_eq!(d.check(exact_hash(&c), &bands(&c)), Verdict::Unique);
    }
}
