//! Generated workloads: a catalog of files whose popularity and name words follow Zipf
//! laws (as measured on Gnutella and KaZaA: a few files and words are everywhere, most are
//! rare), shares drawn from it, and keyword queries. Seeded: the same seed gives the same
//! workload, so a failure can be replayed.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use anyhow::Context;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use superpeer_common::{ContentId, keywords};

/// Draws ranks `0..n` with probability proportional to `1 / (rank + 1)^s`.
#[derive(Clone, Debug)]
pub struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    /// Over `n` ranks (at least 1) with exponent `s`.
    pub fn new(n: usize, s: f64) -> Zipf {
        let mut total = 0.0;
        let cumulative = (0..n.max(1))
            .map(|rank| {
                total += 1.0 / ((rank + 1) as f64).powf(s);
                total
            })
            .collect();
        Zipf { cumulative }
    }

    /// One rank.
    pub fn sample(&self, rng: &mut impl Rng) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(1.0);
        let x = rng.random::<f64>() * total;
        self.cumulative
            .partition_point(|&c| c < x)
            .min(self.cumulative.len() - 1)
    }
}

/// Words names are made of: syllable pairs, so they are real words to the tokenizer and
/// never collide with each other.
pub fn word(rank: usize) -> String {
    const SYLLABLES: [&str; 16] = [
        "ka", "ze", "mo", "ri", "tu", "la", "po", "ne", "si", "go", "ba", "fu", "di", "ye", "xo",
        "va",
    ];
    let syllable = |i: usize| SYLLABLES.get(i % SYLLABLES.len()).copied().unwrap_or("qu");
    format!(
        "{}{}{}",
        syllable(rank),
        syllable(rank / 16),
        syllable(rank / 256 + 7)
    )
}

/// A file of the catalog: its name and bytes (small; the content id follows from them).
#[derive(Clone, Debug)]
pub struct CatalogFile {
    pub name: String,
    pub bytes: Vec<u8>,
    pub content_id: ContentId,
}

/// `files` distinct files whose names are 2 or 3 words drawn by Zipf from `vocabulary`
/// words, plus a number that keeps names apart.
pub fn catalog(files: usize, vocabulary: usize, seed: u64) -> Vec<CatalogFile> {
    let mut rng = StdRng::seed_from_u64(seed);
    let words = Zipf::new(vocabulary, 1.0);
    (0..files)
        .map(|i| {
            let count = 2 + rng.random_range(0..2);
            let chosen: Vec<String> = (0..count).map(|_| word(words.sample(&mut rng))).collect();
            let name = format!("{} {i}.dat", chosen.join(" "));
            let bytes = format!("catalog file {i} of seed {seed}: {name}").into_bytes();
            let content_id = ContentId::of_bytes(&bytes);
            CatalogFile {
                name,
                bytes,
                content_id,
            }
        })
        .collect()
}

/// Which catalog files each of `leaves` leaves shares: a share-nothing fraction
/// (`free_riders`, as measured on Gnutella about 70%), the others `per_leaf` files drawn by
/// Zipf popularity (so popular files have many holders).
pub fn shares(
    catalog_len: usize,
    leaves: usize,
    per_leaf: usize,
    free_riders: f64,
    seed: u64,
) -> Vec<Vec<usize>> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5EED);
    let popularity = Zipf::new(catalog_len, 0.8);
    (0..leaves)
        .map(|_| {
            if rng.random::<f64>() < free_riders {
                return Vec::new();
            }
            let set: BTreeSet<usize> = (0..per_leaf).map(|_| popularity.sample(&mut rng)).collect();
            set.into_iter().collect()
        })
        .collect()
}

/// Writes the catalog files `which` into `dir`.
pub fn write_share(dir: &Path, catalog: &[CatalogFile], which: &[usize]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for &i in which {
        let file = catalog.get(i).context("no such catalog file")?;
        let path = dir.join(&file.name);
        std::fs::write(&path, &file.bytes)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// `count` keyword queries of 1 or 2 words, drawn by Zipf from the vocabulary (so most
/// match something), with an unknown word now and then (a miss).
pub fn queries(count: usize, vocabulary: usize, seed: u64) -> Vec<Vec<String>> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x0_0E21);
    let words = Zipf::new(vocabulary, 1.0);
    (0..count)
        .map(|_| {
            if rng.random::<f64>() < 0.1 {
                return vec![format!("nosuchword{}", rng.random::<u32>())];
            }
            let n = 1 + rng.random_range(0..2);
            (0..n).map(|_| word(words.sample(&mut rng))).collect()
        })
        .collect()
}

/// The ground truth: for each content shared by one of `live` leaves, its words and who
/// shares it.
pub struct Truth {
    contents: HashMap<ContentId, (Vec<String>, BTreeSet<usize>)>,
}

impl Truth {
    /// What the leaves in `live` share (`shares[leaf]` are catalog indices).
    pub fn new(catalog: &[CatalogFile], shares: &[Vec<usize>], live: &[usize]) -> Truth {
        let mut contents: HashMap<ContentId, (Vec<String>, BTreeSet<usize>)> = HashMap::new();
        for &leaf in live {
            for &i in shares.get(leaf).map(Vec::as_slice).unwrap_or_default() {
                if let Some(file) = catalog.get(i) {
                    contents
                        .entry(file.content_id)
                        .or_insert_with(|| (keywords(&file.name), BTreeSet::new()))
                        .1
                        .insert(leaf);
                }
            }
        }
        Truth { contents }
    }

    /// The contents whose name has every word of `query`.
    pub fn answer(&self, query: &[String]) -> BTreeSet<ContentId> {
        let wanted = keywords(&query.join(" "));
        self.contents
            .iter()
            .filter(|(_, (words, _))| wanted.iter().all(|w| words.contains(w)))
            .map(|(id, _)| *id)
            .collect()
    }

    /// The leaves that share `content`.
    pub fn holders(&self, content: &ContentId) -> BTreeSet<usize> {
        self.contents
            .get(content)
            .map(|(_, holders)| holders.clone())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_favours_low_ranks() {
        let zipf = Zipf::new(100, 1.0);
        let mut rng = StdRng::seed_from_u64(1);
        let mut counts = [0usize; 100];
        for _ in 0..20_000 {
            counts[zipf.sample(&mut rng)] += 1;
        }
        assert!(counts[0] > 5 * counts[20], "{:?}", &counts[..25]);
        assert!(counts.iter().all(|&c| c < 20_000));
    }

    #[test]
    fn words_are_distinct_tokens() {
        let words: BTreeSet<String> = (0..4096).map(word).collect();
        assert_eq!(words.len(), 4096);
        for w in words.iter().take(50) {
            assert_eq!(keywords(w), vec![w.clone()]);
        }
    }

    #[test]
    fn truth_answers_and_queries_are_seeded() {
        let catalog = catalog(50, 30, 7);
        assert_eq!(
            catalog[3].content_id,
            super::catalog(50, 30, 7)[3].content_id
        );
        let shares = shares(50, 10, 5, 0.3, 7);
        let live: Vec<usize> = (0..10).collect();
        let truth = Truth::new(&catalog, &shares, &live);
        let some_word =
            keywords(&catalog[shares.iter().flatten().next().copied().unwrap()].name)[0].clone();
        assert!(!truth.answer(&[some_word]).is_empty());
        assert!(truth.answer(&["nosuchword".into()]).is_empty());
        assert_eq!(queries(5, 30, 1), queries(5, 30, 1));
    }
}
