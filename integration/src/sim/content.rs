//! What the network holds, as the simulator knows it from outside the supernodes: the
//! catalog's words, who shares each file, and (from the caller) which leaves are indexed
//! where right now. It gives each query its ground truth and, for the flooding baseline,
//! which supernode would answer with what.

use std::collections::HashMap;

use superpeer_common::wire::FileEntry;
use superpeer_common::{ContentId, keywords};

use crate::workload::CatalogFile;

/// The catalog, indexed by word, and the holders of each file.
pub struct Content {
    files: Vec<FileEntry>,
    /// Word → catalog numbers of the files whose name has it, ascending.
    by_word: HashMap<String, Vec<u32>>,
    /// Catalog number → leaves that share the file.
    holders: Vec<Vec<u32>>,
}

impl Content {
    /// The content of `catalog` as shared by `shares` (per leaf, catalog numbers).
    pub fn new(catalog: &[CatalogFile], shares: &[Vec<usize>]) -> Self {
        let mut by_word: HashMap<String, Vec<u32>> = HashMap::new();
        let files = catalog
            .iter()
            .enumerate()
            .map(|(i, file)| {
                for word in keywords(&file.name) {
                    by_word.entry(word).or_default().push(i as u32);
                }
                FileEntry {
                    content_id: file.content_id,
                    name: file.name.clone(),
                    size: file.bytes.len() as u64,
                }
            })
            .collect();
        let mut holders = vec![Vec::new(); catalog.len()];
        for (leaf, share) in shares.iter().enumerate() {
            for &file in share {
                if let Some(h) = holders.get_mut(file) {
                    h.push(leaf as u32);
                }
            }
        }
        Self {
            files,
            by_word,
            holders,
        }
    }

    /// Files in the catalog.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// True for an empty catalog.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The entries a leaf publishes for the catalog numbers it shares.
    pub fn entries(&self, share: &[usize]) -> Vec<FileEntry> {
        share
            .iter()
            .filter_map(|&i| self.files.get(i).cloned())
            .collect()
    }

    /// The content id of catalog file `file`.
    pub fn content_id(&self, file: u32) -> Option<ContentId> {
        self.files.get(file as usize).map(|f| f.content_id)
    }

    /// Catalog files whose name has every word of `query` (after the common tokenizer).
    pub fn matching(&self, query: &[String]) -> Vec<u32> {
        let words = keywords(&query.join(" "));
        let mut lists: Vec<&Vec<u32>> = Vec::with_capacity(words.len());
        for word in &words {
            match self.by_word.get(word) {
                Some(list) => lists.push(list),
                None => return Vec::new(),
            }
        }
        lists.sort_by_key(|l| l.len());
        let Some((first, rest)) = lists.split_first() else {
            return Vec::new();
        };
        first
            .iter()
            .copied()
            .filter(|f| rest.iter().all(|l| l.binary_search(f).is_ok()))
            .collect()
    }

    /// Where the matches of `query` are indexed now: (supernode, catalog number) pairs
    /// sorted, one per supernode that indexes a live holder of the file. `indexed_at(leaf)`
    /// names the supernode whose index holds the leaf's files, if any.
    pub fn placed(
        &self,
        matching: &[u32],
        indexed_at: impl Fn(u32) -> Option<u32>,
    ) -> Vec<(u32, u32)> {
        let mut placed: Vec<(u32, u32)> = Vec::new();
        for &file in matching {
            for &leaf in self
                .holders
                .get(file as usize)
                .map_or(&[][..], Vec::as_slice)
            {
                if let Some(sn) = indexed_at(leaf) {
                    placed.push((sn, file));
                }
            }
        }
        placed.sort_unstable();
        placed.dedup();
        placed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload;

    #[test]
    fn matching_agrees_with_the_workload_truth() {
        let catalog = workload::catalog(200, 40, 3);
        let shares = workload::shares(catalog.len(), 30, 6, 0.5, 3);
        let content = Content::new(&catalog, &shares);
        let all: Vec<usize> = (0..30).collect();
        let truth = workload::Truth::new(&catalog, &shares, &all);
        for query in workload::queries(50, 40, 3) {
            let placed = content.placed(&content.matching(&query), |leaf| Some(leaf % 4));
            let mut found: Vec<ContentId> = placed
                .iter()
                .filter_map(|&(_, f)| content.content_id(f))
                .collect();
            found.sort();
            found.dedup();
            let expected: Vec<ContentId> = truth.answer(&query).into_iter().collect();
            assert_eq!(found, expected, "{query:?}");
        }
    }
}
