//! Files for the testnet's leaves to share: varied names (some shared by several leaves, as
//! popular files are) and sizes, contents made up from a seed.

use std::io::Write;
use std::path::Path;

use anyhow::Context;

const ARTISTS: [&str; 8] = [
    "ABBA",
    "Nina Simone",
    "Miles Davis",
    "Björk",
    "Fela Kuti",
    "Kraftwerk",
    "Amália Rodrigues",
    "Ravi Shankar",
];

const TITLES: [&str; 8] = [
    "Waterloo",
    "Feeling Good",
    "So What",
    "Hyperballad",
    "Zombie",
    "Autobahn",
    "Barco Negro",
    "Raga Jog",
];

const KINDS: [(&str, u64); 4] = [
    ("mp3", 900_000),
    ("flac", 2_600_000),
    ("txt", 3_000),
    ("ogg", 400_000),
];

/// The name of file `n` of the testnet (the same `n` is the same file everywhere).
pub fn name(n: usize) -> String {
    let pick = |list: &[&'static str], k: usize| list.get(k % list.len()).copied().unwrap_or("");
    let (kind, _) = KINDS.get(n % KINDS.len()).copied().unwrap_or(("bin", 1));
    format!(
        "{} - {} ({}).{kind}",
        pick(&ARTISTS, n),
        pick(&TITLES, n / 3),
        1960 + (n * 7) % 60
    )
}

/// Writes file `n` into `dir`: its size varies with its kind, its bytes with `n`.
pub fn write(dir: &Path, n: usize) -> anyhow::Result<u64> {
    let (_, base) = KINDS.get(n % KINDS.len()).copied().unwrap_or(("bin", 1));
    let size = base + (n as u64 * 7919) % (base / 2 + 1);
    let path = dir.join(name(n));
    let mut file = std::fs::File::create(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    let mut state = (n as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut left = size;
    let mut block = Vec::with_capacity(64 * 1024);
    while left > 0 {
        block.clear();
        while block.len() < 64 * 1024 && (block.len() as u64) < left {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            block.extend_from_slice(&state.to_le_bytes());
        }
        let take = (block.len() as u64).min(left) as usize;
        file.write_all(block.get(..take).unwrap_or_default())?;
        left -= take as u64;
    }
    Ok(size)
}

/// The file every third leaf shares (a few MB, so a download takes pieces from several).
pub const POPULAR: usize = 1;

/// Which files leaf `leaf` shares: two of its own, and one of three popular files (so
/// every third leaf has the same one).
pub fn shares_of(leaf: usize) -> Vec<usize> {
    vec![2 * leaf + 2, 2 * leaf + 3, (leaf % 3) * 100 + POPULAR]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_vary_and_sizes_follow_the_kind() {
        assert_eq!(name(0), name(0));
        assert_ne!(name(1), name(2));
        let dir = tempfile::tempdir().unwrap();
        let size = write(dir.path(), 2).unwrap();
        assert_eq!(
            std::fs::metadata(dir.path().join(name(2))).unwrap().len(),
            size
        );
        assert!(write(dir.path(), 3).unwrap() > 1000);
    }
}
