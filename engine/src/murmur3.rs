//! MurmurHash3 x86_32, the hash Unleash buckets users with. Streaming, so a
//! caller can hash `"{group_id}:{stickiness value}"` as three slices without
//! building the string.

const C1: u32 = 0xcc9e_2d51;
const C2: u32 = 0x1b87_3593;

/// An in-progress hash: feed slices with [`Murmur3::write`], then
/// [`Murmur3::finish`]. Equal to hashing the slices' concatenation.
#[derive(Clone, Copy, Debug)]
pub struct Murmur3 {
    hash: u32,
    tail: [u8; 4],
    tail_len: usize,
    total_len: usize,
}

#[inline]
fn mix_k(k: u32) -> u32 {
    k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2)
}

#[inline]
fn mix_h(hash: u32, k: u32) -> u32 {
    (hash ^ mix_k(k))
        .rotate_left(13)
        .wrapping_mul(5)
        .wrapping_add(0xe654_6b64)
}

impl Murmur3 {
    pub fn new(seed: u32) -> Self {
        Self {
            hash: seed,
            tail: [0; 4],
            tail_len: 0,
            total_len: 0,
        }
    }

    #[inline]
    pub fn write(&mut self, mut bytes: &[u8]) {
        self.total_len += bytes.len();
        if self.tail_len > 0 {
            let take = (4 - self.tail_len).min(bytes.len());
            self.tail[self.tail_len..self.tail_len + take].copy_from_slice(&bytes[..take]);
            self.tail_len += take;
            bytes = &bytes[take..];
            if self.tail_len < 4 {
                return;
            }
            self.hash = mix_h(self.hash, u32::from_le_bytes(self.tail));
            self.tail_len = 0;
        }
        let mut chunks = bytes.chunks_exact(4);
        for chunk in &mut chunks {
            let k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            self.hash = mix_h(self.hash, k);
        }
        let rest = chunks.remainder();
        self.tail[..rest.len()].copy_from_slice(rest);
        self.tail_len = rest.len();
    }

    #[inline]
    pub fn finish(self) -> u32 {
        let mut hash = self.hash;
        if self.tail_len > 0 {
            let mut k = 0u32;
            for (i, byte) in self.tail[..self.tail_len].iter().enumerate() {
                k |= u32::from(*byte) << (8 * i);
            }
            hash ^= mix_k(k);
        }
        // The reference implementation mixes in the length as a 32-bit value.
        hash ^= self.total_len as u32;
        hash ^= hash >> 16;
        hash = hash.wrapping_mul(0x85eb_ca6b);
        hash ^= hash >> 13;
        hash = hash.wrapping_mul(0xc2b2_ae35);
        hash ^ (hash >> 16)
    }
}

/// murmur3_x86_32 of `bytes` with `seed`.
pub fn murmur3_32(bytes: &[u8], seed: u32) -> u32 {
    let mut hasher = Murmur3::new(seed);
    hasher.write(bytes);
    hasher.finish()
}

/// Unleash's normalization: murmur3("{group_id}:{value}", seed) % modulus + 1,
/// so the result is in `1..=modulus`.
#[inline]
pub fn normalized_bucket(group_id: &str, value: &[u8], modulus: u32, seed: u32) -> u32 {
    let mut hasher = Murmur3::new(seed);
    hasher.write(group_id.as_bytes());
    hasher.write(b":");
    hasher.write(value);
    hasher.finish() % modulus + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_vectors() {
        // Published vectors of MurmurHash3_x86_32.
        assert_eq!(murmur3_32(b"", 0), 0);
        assert_eq!(murmur3_32(b"", 1), 0x514e_28b7);
        assert_eq!(murmur3_32(b"", 0xffff_ffff), 0x81f1_6f39);
        assert_eq!(murmur3_32(b"hello", 0), 0x248b_fa47);
        assert_eq!(murmur3_32(b"Hello, world!", 1234), 0xfaf6_cdb3);
        assert_eq!(
            murmur3_32(b"The quick brown fox jumps over the lazy dog", 0),
            0x2e4f_f723
        );
    }

    #[test]
    fn streaming_equals_one_shot_for_every_split() {
        let text = b"checkout.new_flow:user-1234567";
        let whole = murmur3_32(text, 86_028_157);
        for first in 0..text.len() {
            for second in first..text.len() {
                let mut hasher = Murmur3::new(86_028_157);
                hasher.write(&text[..first]);
                hasher.write(&text[first..second]);
                hasher.write(&text[second..]);
                assert_eq!(hasher.finish(), whole, "split at {first}/{second}");
            }
        }
    }
}
