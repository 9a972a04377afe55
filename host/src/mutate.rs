//! Seeded mutations of valid inputs, for the tests that feed every parser of hostile input
//! (the transmit stream, the job's zip, inventories) thousands of broken variants: each must end
//! in `Ok` or a clear `Err`, never a panic or an endless loop. The seed makes a failure
//! reproducible; `FTL2_MUTATION_CASES` runs a deeper search than CI's default.

/// A small xorshift generator: deterministic per seed, no dependency.
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        if n == 0 {
            0
        } else {
            (self.0 % n as u64) as usize
        }
    }
}

/// Bytes that matter to the formats under test (JSON, YAML, INI, base64, zip headers).
const INTERESTING: &[u8] = b"\0\xff\n\r\t \"'{}[]:,=#&*!|>-.0129Ae\\%";

/// `input` with one to four random edits: flipped bits, special bytes, deleted, duplicated or
/// moved ranges, truncation.
pub fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = out.len().max(1);
        let at = rng.below(len).min(out.len());
        match rng.below(7) {
            0 if !out.is_empty() => {
                let i = at.min(out.len() - 1);
                out[i] ^= 1 << rng.below(8);
            }
            1 if !out.is_empty() => {
                let i = at.min(out.len() - 1);
                out[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            2 => {
                let end = (at + 1 + rng.below(16)).min(out.len());
                out.drain(at..end);
            }
            3 => {
                let end = (at + 1 + rng.below(64)).min(out.len());
                let chunk = out[at..end].to_vec();
                let to = rng.below(out.len() + 1);
                out.splice(
                    to..to,
                    chunk
                        .iter()
                        .copied()
                        .cycle()
                        .take(chunk.len() * (1 + rng.below(8))),
                );
            }
            4 => out.insert(at, INTERESTING[rng.below(INTERESTING.len())]),
            5 => out.truncate(at),
            _ => {
                let n = 1 + rng.below(32);
                let bytes: Vec<u8> = (0..n).map(|_| rng.below(256) as u8).collect();
                out.splice(at..at, bytes);
            }
        }
    }
    out
}

/// How many cases each mutation test runs: `FTL2_MUTATION_CASES`, else `default`.
pub fn cases(default: usize) -> usize {
    std::env::var("FTL2_MUTATION_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Run `check` on `cases` mutations of each seed input; a panic names the case and its input.
pub fn each_mutation(name: &str, inputs: &[&[u8]], cases: usize, mut check: impl FnMut(&[u8])) {
    let mut rng = Rng::new(0x5eed ^ name.len() as u64);
    for case in 0..cases {
        let seed_input = inputs[case % inputs.len()];
        let input = mutate(&mut rng, seed_input);
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&input)));
        assert!(
            ok.is_ok(),
            "{name}: case {case} panicked on input {:?}",
            String::from_utf8_lossy(&input)
        );
    }
}
