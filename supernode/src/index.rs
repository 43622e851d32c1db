//! The content index: every file the leaves of this supernode share, searchable by keyword.
//!
//! A KaZaA-sized supernode holds some 500 leaves x 1,000 files, and it answers its own leaves
//! and every query the overlay forwards to it, so a lookup must cost microseconds, and a leaf
//! that leaves must vanish from the results at once without a sweep over the whole index.
//!
//! Design:
//! - Entries (one per holder and content id) live in a slab: `u32` slot ids that stay valid
//!   until the entry goes, freed slots reused. Content ids and holders are interned the same
//!   way, so an entry costs four `u32`s of references instead of two 32-byte ids.
//! - Keywords (from the shared tokenizer, [`superpeer_common::keywords`]) are interned to
//!   `u32` ids; each has a posting set of entry slots. A word whose last entry goes is dropped
//!   and its id recycled; [`ContentIndex::keyword_generation`] counts such changes to the set
//!   of words, which is what the routing summary is built from.
//! - Each entry keeps its keyword ids, so removing it touches only its own postings, never a
//!   whole posting list. Each holder keeps a map content -> entry slot, so removing a holder
//!   costs O(its entries x their keywords), independent of the index size.
//! - The entries of one content id (one per holder) form a doubly linked list through the
//!   slab, so a hit lists every holder of a content without scanning, and unlinking is O(1).
//!
//! Queries are AND over exact words. The posting set of the rarest query word is walked, each
//! slot checked against the other words' sets (O(1) each), and hits are grouped by content id
//! and size until `want` hits are found. A content's size is part of what a holder claims,
//! not of the id: grouping by (id, size) keeps a copy published with a false size in a hit
//! of its own, so it never hides the holders of the true size (downloaders prove the size). So a query costs O(entries walked x words): a rare word or
//! a word set that matches densely stops early; the worst case is two frequent words that seldom
//! occur together, which walks the smaller posting set once.
//!
//! All-or-nothing: a publish that breaks a cap or holds an invalid entry changes nothing, so a
//! misbehaving leaf cannot leave half a file list behind.

use std::fmt;
use std::mem::size_of;

use rustc_hash::{FxHashMap, FxHashSet};
use superpeer_common::wire::{FileEntry, Holder, MAX_HOLDERS_PER_HIT, QueryHit};
use superpeer_common::{ContentId, MAX_KEYWORDS_PER_NAME, NodeId, keywords};

/// End of a copy list (no previous / next entry of the same content).
const NIL: u32 = u32::MAX;

/// Slot and keyword ids are `u32` and every entry may bring [`MAX_KEYWORDS_PER_NAME`] new
/// words, so the index never holds more entries than this, whatever the limits say.
const MAX_ADDRESSABLE_ENTRIES: usize = (u32::MAX as usize - 1) / MAX_KEYWORDS_PER_NAME;

/// Caps on what leaves can make the index hold: a leaf cannot fill the supernode's memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexLimits {
    /// Most entries one holder may publish (default 10,000: ten times a typical share).
    pub max_entries_per_holder: usize,
    /// Most entries in the whole index (default 1,000,000: 500 leaves at twice the typical
    /// 1,000 files; about 270 MB at the measured ~270 bytes per entry).
    pub max_total_entries: usize,
}

impl Default for IndexLimits {
    fn default() -> Self {
        Self {
            max_entries_per_holder: 10_000,
            max_total_entries: 1_000_000,
        }
    }
}

/// Why a publish was refused. A refused publish changes nothing in the index.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The holder would have more entries than [`IndexLimits::max_entries_per_holder`].
    #[error("holder {holder:?} would exceed its limit of {limit} entries")]
    TooManyForHolder {
        /// The holder that published.
        holder: NodeId,
        /// The per-holder limit.
        limit: usize,
    },
    /// The index would hold more entries than [`IndexLimits::max_total_entries`].
    #[error("index full ({limit} entries)")]
    Full {
        /// The total limit.
        limit: usize,
    },
    /// An entry broke the wire limits ([`FileEntry::validate`]); says which and why.
    #[error("invalid entry: {0}")]
    InvalidEntry(String),
}

/// A vector of reusable slots addressed by `u32`: ids stay valid until removed and freed ids
/// are handed out again, so memory follows the live count rather than the history.
struct Slab<T> {
    slots: Vec<Option<T>>,
    free: Vec<u32>,
    len: usize,
}

impl<T> Slab<T> {
    fn new() -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }

    fn insert(&mut self, value: T) -> u32 {
        self.len += 1;
        let reused = self
            .free
            .pop()
            .and_then(|id| self.slots.get_mut(id as usize).map(|slot| (id, slot)));
        if let Some((id, slot)) = reused {
            *slot = Some(value);
            return id;
        }
        self.slots.push(Some(value));
        // Fits: the index never holds more than MAX_ADDRESSABLE_ENTRIES live items of a kind.
        (self.slots.len() - 1) as u32
    }

    fn remove(&mut self, id: u32) -> Option<T> {
        let value = self.slots.get_mut(id as usize)?.take()?;
        self.free.push(id);
        self.len -= 1;
        Some(value)
    }

    fn get(&self, id: u32) -> Option<&T> {
        self.slots.get(id as usize)?.as_ref()
    }

    fn get_mut(&mut self, id: u32) -> Option<&mut T> {
        self.slots.get_mut(id as usize)?.as_mut()
    }

    fn iter(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().flatten()
    }

    /// Bytes of the slot and free vectors (capacity, not length: what is really allocated).
    fn heap_bytes(&self) -> usize {
        self.slots.capacity() * size_of::<Option<T>>() + self.free.capacity() * size_of::<u32>()
    }
}

/// One file as one holder shares it.
struct Entry {
    name: Box<str>,
    /// Keyword ids of `name`: the postings to leave on removal, without re-tokenizing.
    words: Box<[u32]>,
    size: u64,
    holder: u32,
    content: u32,
    /// Neighbours in the list of entries of the same content ([`NIL`] at the ends).
    prev_copy: u32,
    next_copy: u32,
}

/// A distinct content id and the first entry of its copy list.
struct Content {
    id: ContentId,
    first_copy: u32,
}

/// An interned keyword and the slots of every entry whose name has it.
struct Word {
    text: Box<str>,
    postings: FxHashSet<u32>,
}

/// A holder, its latest address, and its entries by content slot.
struct HolderRecord {
    holder: Holder,
    entries: FxHashMap<u32, u32>,
}

/// The keyword index of the files this supernode's leaves share. See the module docs.
pub struct ContentIndex {
    limits: IndexLimits,
    entries: Slab<Entry>,
    words: Slab<Word>,
    word_ids: FxHashMap<Box<str>, u32>,
    contents: Slab<Content>,
    content_ids: FxHashMap<ContentId, u32>,
    holders: Slab<HolderRecord>,
    holder_ids: FxHashMap<NodeId, u32>,
    keyword_generation: u64,
    /// Keywords (words and content ids) that appeared or went since the directory last
    /// took them ([`ContentIndex::take_keyword_changes`]). Bounded by the words ever
    /// indexed between two takes; the core takes them every tick.
    changed_keywords: FxHashSet<Box<str>>,
}

impl fmt::Debug for ContentIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContentIndex")
            .field("entries", &self.entries.len)
            .field("holders", &self.holder_ids.len())
            .field("contents", &self.content_ids.len())
            .field("keywords", &self.word_ids.len())
            .field("keyword_generation", &self.keyword_generation)
            .finish_non_exhaustive()
    }
}

impl ContentIndex {
    /// An empty index enforcing `limits`.
    pub fn new(limits: IndexLimits) -> Self {
        Self {
            limits,
            entries: Slab::new(),
            words: Slab::new(),
            word_ids: FxHashMap::default(),
            contents: Slab::new(),
            content_ids: FxHashMap::default(),
            holders: Slab::new(),
            holder_ids: FxHashMap::default(),
            keyword_generation: 0,
            changed_keywords: FxHashSet::default(),
        }
    }

    /// Adds `entries` for `holder`, or replaces the name and size of a content id it already
    /// published; the holder's address is updated to the latest one given. Returns how many
    /// entries were added or replaced (`entries.len()`).
    ///
    /// All or nothing: an invalid entry or a batch that would break a cap is refused whole
    /// and leaves the index unchanged, so a leaf never ends up half published.
    pub fn publish(&mut self, holder: Holder, entries: &[FileEntry]) -> Result<usize, IndexError> {
        for (i, entry) in entries.iter().enumerate() {
            entry
                .validate()
                .map_err(|e| IndexError::InvalidEntry(format!("entry {i}: {e}")))?;
        }
        let added = self.count_new(&holder.node_id, entries);
        let limit = self.limits.max_entries_per_holder;
        if self.entries_of(&holder.node_id).saturating_add(added) > limit {
            return Err(IndexError::TooManyForHolder {
                holder: holder.node_id,
                limit,
            });
        }
        let limit = self.limits.max_total_entries.min(MAX_ADDRESSABLE_ENTRIES);
        if self.len().saturating_add(added) > limit {
            return Err(IndexError::Full { limit });
        }
        if entries.is_empty() {
            return Ok(0);
        }
        let holder_slot = self.holder_slot(holder);
        for entry in entries {
            self.upsert(holder_slot, entry);
        }
        Ok(entries.len())
    }

    /// Removes the entries of `holder` for `content_ids` (unknown ones are ignored). Returns
    /// how many were removed.
    pub fn unpublish(&mut self, holder: NodeId, content_ids: &[ContentId]) -> usize {
        let Some(&holder_slot) = self.holder_ids.get(&holder) else {
            return 0;
        };
        let mut removed = 0;
        for id in content_ids {
            let Some(&content) = self.content_ids.get(id) else {
                continue;
            };
            let slot = self
                .holders
                .get_mut(holder_slot)
                .and_then(|record| record.entries.remove(&content));
            if let Some(slot) = slot {
                self.remove_entry(slot);
                removed += 1;
            }
        }
        if self.entries_of(&holder) == 0 {
            self.holder_ids.remove(&holder);
            self.holders.remove(holder_slot);
        }
        removed
    }

    /// Removes every entry of a holder at once (its session ended). Costs O(its entries),
    /// whatever the size of the index. Returns how many were removed.
    pub fn remove_holder(&mut self, holder: NodeId) -> usize {
        let Some(record) = self
            .holder_ids
            .remove(&holder)
            .and_then(|slot| self.holders.remove(slot))
        else {
            return 0;
        };
        for &slot in record.entries.values() {
            self.remove_entry(slot);
        }
        record.entries.len()
    }

    /// AND query: every keyword (lower-case words from [`superpeer_common::keywords`], as
    /// queries carry them) must be a word of the name. Returns at most `want` hits, one per
    /// content id, in no particular order; each lists the holders whose entry for it matches
    /// (the first is the one whose name and size the hit shows), at most
    /// [`MAX_HOLDERS_PER_HIT`]. No keywords, or a word no entry has, give no hits.
    ///
    /// A keyword that is a content id (64 lower-case hex digits, as `get` searches for
    /// holders) matches the entries of that content, whatever their names: content ids are
    /// not posted as words (that would cost a word per file), they are looked up directly.
    pub fn query(&self, keywords: &[String], want: usize) -> Vec<QueryHit> {
        if want == 0 {
            return Vec::new();
        }
        let (by_id, words): (Vec<&String>, Vec<&String>) = keywords
            .iter()
            .partition(|word| content_keyword(word).is_some());
        if let Some(first) = by_id.first() {
            return self.query_content(first, &by_id, &words, want);
        }
        let mut ids = Vec::with_capacity(keywords.len());
        for word in keywords {
            match self.word_ids.get(word.as_str()) {
                Some(&id) => ids.push(id),
                None => return Vec::new(),
            }
        }
        ids.sort_unstable();
        ids.dedup();
        let mut sets: Vec<&FxHashSet<u32>> = ids
            .iter()
            .filter_map(|&id| self.words.get(id).map(|word| &word.postings))
            .collect();
        sets.sort_by_key(|set| set.len());
        let Some((rarest, others)) = sets.split_first() else {
            return Vec::new();
        };
        let in_others = |slot: u32| others.iter().all(|set| set.contains(&slot));
        let mut hits = Vec::new();
        let mut seen = FxHashSet::default();
        for &slot in rarest.iter() {
            if hits.len() >= want {
                break;
            }
            if !in_others(slot) {
                continue;
            }
            let Some(entry) = self.entries.get(slot) else {
                continue;
            };
            if seen.insert((entry.content, entry.size)) {
                let matches = |copy: u32| rarest.contains(&copy) && in_others(copy);
                hits.extend(self.hit(slot, entry, matches));
            }
        }
        hits
    }

    /// The hits for the content `id_word` names, one per size its holders give it (most
    /// holders first, at most `want`), with the holders whose entry also has every one of
    /// `words`; none if another content id is asked for at the same time.
    fn query_content(
        &self,
        id_word: &str,
        ids: &[&String],
        words: &[&String],
        want: usize,
    ) -> Vec<QueryHit> {
        if ids.iter().any(|other| other.as_str() != id_word) {
            return Vec::new();
        }
        let Some(&content) = content_keyword(id_word).and_then(|id| self.content_ids.get(&id))
        else {
            return Vec::new();
        };
        let mut sets = Vec::with_capacity(words.len());
        for word in words {
            match self
                .word_ids
                .get(word.as_str())
                .and_then(|&w| self.words.get(w))
            {
                Some(word) => sets.push(&word.postings),
                None => return Vec::new(),
            }
        }
        let matches = |slot: u32| sets.iter().all(|set| set.contains(&slot));
        // Each size claimed: its first matching copy and how many copies claim it. One
        // entry per holder, so this is bounded by the holders of the content.
        let mut sizes: Vec<(u64, u32, usize)> = Vec::new();
        let mut copy = self.contents.get(content).map_or(NIL, |c| c.first_copy);
        while copy != NIL {
            let Some(entry) = self.entries.get(copy) else {
                break;
            };
            if matches(copy) {
                match sizes.iter_mut().find(|(size, ..)| *size == entry.size) {
                    Some((_, _, count)) => *count += 1,
                    None => sizes.push((entry.size, copy, 1)),
                }
            }
            copy = entry.next_copy;
        }
        // Most holders first: a lying copy gets its own hit, after the honest one.
        sizes.sort_by_key(|&(_, _, count)| std::cmp::Reverse(count));
        sizes
            .into_iter()
            .take(want)
            .filter_map(|(_, slot, _)| {
                let entry = self.entries.get(slot)?;
                self.hit(slot, entry, matches)
            })
            .collect()
    }

    /// Number of entries (holder, content id pairs).
    pub fn len(&self) -> usize {
        self.entries.len
    }

    /// Whether the index holds no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.len == 0
    }

    /// Number of holders with at least one entry.
    pub fn holders(&self) -> usize {
        self.holder_ids.len()
    }

    /// Number of entries `holder` has published.
    pub fn entries_of(&self, holder: &NodeId) -> usize {
        self.holder_ids
            .get(holder)
            .and_then(|&slot| self.holders.get(slot))
            .map_or(0, |record| record.entries.len())
    }

    /// Bumped whenever the set of distinct keywords changes (a word appears for the first
    /// time, or its last entry goes); replacing an entry by one with the same words does not
    /// bump it. The routing summary is rebuilt when this changes.
    pub fn keyword_generation(&self) -> u64 {
        self.keyword_generation
    }

    /// Every distinct keyword currently indexed, in no particular order.
    pub fn keywords(&self) -> impl Iterator<Item = &str> + '_ {
        self.word_ids.keys().map(|word| &**word)
    }

    /// Every distinct content id currently indexed, as the keyword a query for it carries
    /// (the routing summary holds these too, so a search by content id is routed like any
    /// other). [`Self::keyword_generation`] changes when this set changes.
    pub fn content_keywords(&self) -> impl Iterator<Item = String> + '_ {
        self.content_ids.keys().map(ContentId::to_string)
    }

    /// Entries holding `keyword` (a word, or a content id as a query names it): what the
    /// directory tells the keyword's owners.
    pub fn keyword_count(&self, keyword: &str) -> u32 {
        let count = match content_keyword(keyword) {
            Some(id) => self.content_ids.get(&id).map_or(0, |&c| self.copies(c)),
            None => self
                .word_ids
                .get(keyword)
                .and_then(|&w| self.words.get(w))
                .map_or(0, |w| w.postings.len()),
        };
        u32::try_from(count).unwrap_or(u32::MAX)
    }

    /// Keywords that appeared or went since the last call, with their counts now (0: gone).
    pub fn take_keyword_changes(&mut self) -> Vec<(String, u32)> {
        let changed = std::mem::take(&mut self.changed_keywords);
        changed
            .into_iter()
            .map(|k| {
                let count = self.keyword_count(&k);
                (k.into_string(), count)
            })
            .collect()
    }

    /// Every keyword held (words and content ids) with its count: what a full refresh of
    /// the directory publishes.
    pub fn keyword_counts(&self) -> Vec<(String, u32)> {
        let words = self.words.iter().map(|w| {
            let count = u32::try_from(w.postings.len()).unwrap_or(u32::MAX);
            (w.text.to_string(), count)
        });
        let contents = self
            .contents
            .iter()
            .map(|c| (c.id.to_string(), self.copies_of(c)));
        words.chain(contents).collect()
    }

    fn copies(&self, content: u32) -> usize {
        self.contents
            .get(content)
            .map_or(0, |c| self.copies_of(c) as usize)
    }

    fn copies_of(&self, content: &Content) -> u32 {
        let mut count = 0u32;
        let mut slot = content.first_copy;
        while slot != NIL {
            count += 1;
            slot = self.entries.get(slot).map_or(NIL, |e| e.next_copy);
        }
        count
    }

    /// Rough bytes the index uses: vector capacities times element sizes, hash tables as
    /// 8/7 buckets per unit of capacity times (item + 1 control byte), plus the bytes of
    /// names, keyword lists and words. Allocator overhead and rounding are not counted (the
    /// process RSS is higher; see BENCHMARKS.md). Walks every entry: O(len), call it rarely.
    pub fn approx_bytes(&self) -> usize {
        let mut bytes = size_of::<Self>()
            + self.entries.heap_bytes()
            + self.words.heap_bytes()
            + self.contents.heap_bytes()
            + self.holders.heap_bytes()
            + table_bytes::<(Box<str>, u32)>(self.word_ids.capacity())
            + table_bytes::<(ContentId, u32)>(self.content_ids.capacity())
            + table_bytes::<(NodeId, u32)>(self.holder_ids.capacity());
        for entry in self.entries.iter() {
            bytes += entry.name.len() + size_of::<u32>() * entry.words.len();
        }
        for word in self.words.iter() {
            // The text is kept twice: in the word and as the key of `word_ids`.
            bytes += 2 * word.text.len() + table_bytes::<u32>(word.postings.capacity());
        }
        for record in self.holders.iter() {
            bytes += table_bytes::<(u32, u32)>(record.entries.capacity());
        }
        bytes
    }

    /// How many of `entries` are new for `holder` (not published before, counted once even
    /// if the batch repeats them): what the caps are checked against.
    fn count_new(&self, holder: &NodeId, entries: &[FileEntry]) -> usize {
        let held = self
            .holder_ids
            .get(holder)
            .and_then(|&slot| self.holders.get(slot))
            .map(|record| &record.entries);
        let mut fresh = FxHashSet::default();
        entries
            .iter()
            .filter(|entry| {
                let known = held.is_some_and(|held| {
                    self.content_ids
                        .get(&entry.content_id)
                        .is_some_and(|content| held.contains_key(content))
                });
                !known && fresh.insert(entry.content_id)
            })
            .count()
    }

    /// Replaces what is known of how to reach `holder` (its address, whether it is
    /// firewalled), if it holds anything here.
    pub fn update_holder(&mut self, holder: Holder) {
        if let Some(&slot) = self.holder_ids.get(&holder.node_id)
            && let Some(record) = self.holders.get_mut(slot)
        {
            record.holder = holder;
        }
    }

    /// The slot of `holder`, created if new; the address is updated to the latest.
    fn holder_slot(&mut self, holder: Holder) -> u32 {
        if let Some(&slot) = self.holder_ids.get(&holder.node_id) {
            if let Some(record) = self.holders.get_mut(slot) {
                record.holder = holder;
            }
            return slot;
        }
        let slot = self.holders.insert(HolderRecord {
            holder,
            entries: FxHashMap::default(),
        });
        self.holder_ids.insert(holder.node_id, slot);
        slot
    }

    fn upsert(&mut self, holder: u32, entry: &FileEntry) {
        let content = match self.content_ids.get(&entry.content_id) {
            Some(&content) => content,
            None => {
                let content = self.contents.insert(Content {
                    id: entry.content_id,
                    first_copy: NIL,
                });
                self.content_ids.insert(entry.content_id, content);
                self.keyword_generation += 1;
                self.changed_keywords
                    .insert(entry.content_id.to_string().into_boxed_str());
                content
            }
        };
        let existing = self
            .holders
            .get(holder)
            .and_then(|record| record.entries.get(&content))
            .copied();
        match existing {
            Some(slot) => self.replace(slot, entry),
            None => self.insert_entry(holder, content, entry),
        }
    }

    fn insert_entry(&mut self, holder: u32, content: u32, entry: &FileEntry) {
        let first = self.contents.get(content).map_or(NIL, |c| c.first_copy);
        let slot = self.entries.insert(Entry {
            name: entry.name.as_str().into(),
            words: Box::default(),
            size: entry.size,
            holder,
            content,
            prev_copy: NIL,
            next_copy: first,
        });
        if first != NIL {
            if let Some(next) = self.entries.get_mut(first) {
                next.prev_copy = slot;
            }
        }
        if let Some(content) = self.contents.get_mut(content) {
            content.first_copy = slot;
        }
        if let Some(record) = self.holders.get_mut(holder) {
            record.entries.insert(content, slot);
        }
        let words = self.post_words(slot, &entry.name);
        if let Some(stored) = self.entries.get_mut(slot) {
            stored.words = words;
        }
    }

    /// Gives an entry a new name and size in place. The new words are posted before the old
    /// ones are left, so a word in both never drops out of the set (no spurious generation).
    fn replace(&mut self, slot: u32, entry: &FileEntry) {
        let same_name = self
            .entries
            .get(slot)
            .is_some_and(|stored| *stored.name == *entry.name);
        if same_name {
            if let Some(stored) = self.entries.get_mut(slot) {
                stored.size = entry.size;
            }
            return;
        }
        let words = self.post_words(slot, &entry.name);
        let Some(stored) = self.entries.get_mut(slot) else {
            return;
        };
        let old = std::mem::replace(&mut stored.words, words);
        stored.name = entry.name.as_str().into();
        stored.size = entry.size;
        let stale: Vec<u32> = old
            .iter()
            .filter(|word| !stored.words.contains(word))
            .copied()
            .collect();
        for word in stale {
            self.unpost(word, slot);
        }
    }

    /// Posts `slot` under every keyword of `name`; returns the keyword ids.
    fn post_words(&mut self, slot: u32, name: &str) -> Box<[u32]> {
        keywords(name)
            .into_iter()
            .map(|text| {
                let id = self.intern(text);
                if let Some(word) = self.words.get_mut(id) {
                    word.postings.insert(slot);
                }
                id
            })
            .collect()
    }

    fn intern(&mut self, text: String) -> u32 {
        if let Some(&id) = self.word_ids.get(text.as_str()) {
            return id;
        }
        let text = text.into_boxed_str();
        let id = self.words.insert(Word {
            text: text.clone(),
            postings: FxHashSet::default(),
        });
        self.changed_keywords.insert(text.clone());
        self.word_ids.insert(text, id);
        self.keyword_generation += 1;
        id
    }

    /// Takes `slot` out of a word's postings; the word goes when nothing has it any more.
    fn unpost(&mut self, id: u32, slot: u32) {
        let Some(word) = self.words.get_mut(id) else {
            return;
        };
        word.postings.remove(&slot);
        if word.postings.is_empty() {
            if let Some(word) = self.words.remove(id) {
                self.word_ids.remove(&word.text);
                self.changed_keywords.insert(word.text);
            }
            self.keyword_generation += 1;
        }
    }

    /// Removes an entry from the slab, its postings and its copy list (the content goes with
    /// its last copy). The caller has already taken it out of its holder's map.
    fn remove_entry(&mut self, slot: u32) {
        let Some(entry) = self.entries.remove(slot) else {
            return;
        };
        for &word in entry.words.iter() {
            self.unpost(word, slot);
        }
        if entry.next_copy != NIL {
            if let Some(next) = self.entries.get_mut(entry.next_copy) {
                next.prev_copy = entry.prev_copy;
            }
        }
        if entry.prev_copy != NIL {
            if let Some(prev) = self.entries.get_mut(entry.prev_copy) {
                prev.next_copy = entry.next_copy;
            }
        } else if entry.next_copy != NIL {
            if let Some(content) = self.contents.get_mut(entry.content) {
                content.first_copy = entry.next_copy;
            }
        } else if let Some(content) = self.contents.remove(entry.content) {
            self.content_ids.remove(&content.id);
            self.keyword_generation += 1;
            self.changed_keywords
                .insert(content.id.to_string().into_boxed_str());
        }
    }

    /// The hit for the content of `entry` (found at `slot`) at its size: its name and size,
    /// its holder first, then every other holder of the content at the same size whose
    /// entry `matches`. Holders that give the content another size are never listed here:
    /// a copy published with a false size must not make the honest holders look wrong.
    fn hit(&self, slot: u32, entry: &Entry, matches: impl Fn(u32) -> bool) -> Option<QueryHit> {
        let content = self.contents.get(entry.content)?;
        let mut holders: Vec<Holder> = self
            .holders
            .get(entry.holder)
            .map(|r| r.holder)
            .into_iter()
            .collect();
        let mut copy = content.first_copy;
        while copy != NIL && holders.len() < MAX_HOLDERS_PER_HIT {
            let Some(other) = self.entries.get(copy) else {
                break;
            };
            if copy != slot && other.size == entry.size && matches(copy) {
                holders.extend(self.holders.get(other.holder).map(|r| r.holder));
            }
            copy = other.next_copy;
        }
        Some(QueryHit {
            content_id: content.id,
            name: entry.name.to_string(),
            size: entry.size,
            holders,
        })
    }
}

/// The content id a query keyword names, if it is one: exactly 64 lower-case hex digits
/// (the tokenizer lower-cases every query word).
pub fn content_keyword(word: &str) -> Option<ContentId> {
    if word.len() != 64 || word.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    word.parse().ok()
}

/// Rough heap bytes of a std (hashbrown) table of `capacity` items of type `T`.
fn table_bytes<T>(capacity: usize) -> usize {
    if capacity == 0 {
        return 0;
    }
    capacity.saturating_mul(8) / 7 * (size_of::<T>() + 1)
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    fn holder(n: u8) -> Holder {
        Holder {
            node_id: NodeId::from_bytes([n; 32]),
            addr: SocketAddr::from(([127, 0, 0, n], 4000 + u16::from(n))),
            via: None,
        }
    }

    fn entry(content: &str, name: &str) -> FileEntry {
        FileEntry {
            content_id: ContentId::of_bytes(content.as_bytes()),
            name: name.to_owned(),
            // A content's size comes with its id, whatever a holder names it.
            size: 1000 * content.len() as u64,
        }
    }

    fn words(query: &str) -> Vec<String> {
        keywords(query)
    }

    fn names(hits: &[QueryHit]) -> Vec<&str> {
        let mut names: Vec<&str> = hits.iter().map(|hit| hit.name.as_str()).collect();
        names.sort_unstable();
        names
    }

    fn sample() -> ContentIndex {
        let mut index = ContentIndex::new(IndexLimits::default());
        let files = [
            entry("a", "Abbey_Road-(1969).FLAC"),
            entry("b", "Abbey Road Remastered.mp3"),
            entry("c", "Let It Be.mp3"),
            entry("d", "road trip notes.txt"),
        ];
        assert_eq!(index.publish(holder(1), &files).unwrap(), 4);
        index
    }

    #[test]
    fn and_query_over_tokenized_words() {
        let index = sample();
        assert_eq!(index.len(), 4);
        assert_eq!(names(&index.query(&words("road"), 10)).len(), 3);
        assert_eq!(
            names(&index.query(&words("ABBEY road"), 10)),
            ["Abbey Road Remastered.mp3", "Abbey_Road-(1969).FLAC"]
        );
        assert_eq!(
            names(&index.query(&words("abbey flac"), 10)),
            ["Abbey_Road-(1969).FLAC"]
        );
        assert_eq!(
            names(&index.query(&words("mp3"), 10)),
            ["Abbey Road Remastered.mp3", "Let It Be.mp3"]
        );
        let hit = &index.query(&words("1969"), 10)[0];
        assert_eq!(hit.content_id, ContentId::of_bytes(b"a"));
        assert_eq!(hit.size, 1000);
        assert_eq!(hit.holders, [holder(1)]);
        // Words are whole words, not prefixes or substrings.
        assert!(index.query(&words("abb"), 10).is_empty());
    }

    #[test]
    fn query_by_content_id_finds_every_holder_whatever_the_name() {
        let mut index = sample();
        let id = ContentId::of_bytes(b"c");
        index
            .publish(holder(2), &[entry("c", "something else entirely.ogg")])
            .unwrap();
        index
            .publish(holder(3), &[entry("x", "Let It Be.mp3")])
            .unwrap();
        let by_id = words(&id.to_string());
        let hits = index.query(&by_id, 10);
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].content_id, id);
        let mut holders = hits[0].holders.clone();
        holders.sort_by_key(|h| h.addr);
        assert_eq!(holders, [holder(1), holder(2)]);
        // With a name word too, only the holders whose name has it.
        let mut both = by_id.clone();
        both.push("ogg".into());
        assert_eq!(index.query(&both, 10)[0].holders, [holder(2)]);
        both.push("nothing".into());
        assert!(index.query(&both, 10).is_empty());
        // Unknown, or two different ids at once: no hit.
        assert!(
            index
                .query(&words(&ContentId::of_bytes(b"zz").to_string()), 10)
                .is_empty()
        );
        let mut two = by_id.clone();
        two.push(ContentId::of_bytes(b"a").to_string());
        assert!(index.query(&two, 10).is_empty());
        // Content ids are in the summary's keywords and their changes bump the generation.
        let ids: Vec<String> = index.content_keywords().collect();
        assert!(ids.contains(&id.to_string()));
        let before = index.keyword_generation();
        index
            .publish(holder(4), &[entry("new", "Let It Be.mp3")])
            .unwrap();
        assert_ne!(index.keyword_generation(), before);
        let before = index.keyword_generation();
        index.remove_holder(holder(4).node_id);
        assert_ne!(index.keyword_generation(), before);
        assert!(content_keyword(&"A".repeat(64)).is_none());
    }

    #[test]
    fn miss_and_empty_query() {
        let index = sample();
        assert!(index.query(&words("beatles"), 10).is_empty());
        assert!(index.query(&words("abbey beatles"), 10).is_empty());
        assert!(index.query(&words("let abbey"), 10).is_empty());
        assert!(index.query(&[], 10).is_empty());
        assert!(index.query(&words("road"), 0).is_empty());
        assert!(
            ContentIndex::new(IndexLimits::default())
                .query(&words("road"), 10)
                .is_empty()
        );
    }

    #[test]
    fn want_limits_the_hits() {
        let mut index = ContentIndex::new(IndexLimits::default());
        let files: Vec<FileEntry> = (0..100)
            .map(|i| entry(&i.to_string(), &format!("track {i}.mp3")))
            .collect();
        index.publish(holder(1), &files).unwrap();
        assert_eq!(index.query(&words("mp3"), 7).len(), 7);
        assert_eq!(index.query(&words("track mp3"), 1000).len(), 100);
        assert_eq!(index.query(&words("track 42"), 1000).len(), 1);
    }

    #[test]
    fn one_hit_per_content_lists_every_matching_holder() {
        let mut index = sample();
        index
            .publish(holder(2), &[entry("c", "let it be.mp3")])
            .unwrap();
        index
            .publish(holder(3), &[entry("c", "renamed.mp3")])
            .unwrap();
        let hits = index.query(&words("let it be"), 10);
        assert_eq!(hits.len(), 1);
        let mut holders = hits[0].holders.clone();
        holders.sort_by_key(|h| h.node_id);
        // Holder 3 names it differently, so its entry does not match.
        assert_eq!(holders, [holder(1), holder(2)]);
        assert_eq!(index.query(&words("mp3"), 10).len(), 2);
        let renamed = index.query(&words("renamed"), 10);
        assert_eq!(renamed[0].holders, [holder(3)]);
        assert_eq!(index.holders(), 3);
    }

    #[test]
    fn a_false_size_gets_its_own_hit_and_never_hides_the_honest_holders() {
        let mut index = sample();
        let honest = entry("c", "Let It Be.mp3");
        index
            .publish(holder(2), std::slice::from_ref(&honest))
            .unwrap();
        // Published last, so its copy heads the content's list.
        let lie = FileEntry {
            size: 1 << 40,
            ..honest.clone()
        };
        index.publish(holder(9), &[lie]).unwrap();
        let by_id = index.query(&[ContentId::of_bytes(b"c").to_string()], 50);
        let groups: Vec<(u64, Vec<Holder>)> = by_id
            .iter()
            .map(|hit| {
                let mut holders = hit.holders.clone();
                holders.sort_by_key(|h| h.node_id);
                (hit.size, holders)
            })
            .collect();
        assert_eq!(
            groups,
            [
                (honest.size, vec![holder(1), holder(2)]),
                (1 << 40, vec![holder(9)]),
            ]
        );
        let by_words = index.query(&words("let it be"), 10);
        assert_eq!(by_words.len(), 2, "one hit per (id, size)");
        for hit in &by_words {
            let expected = if hit.size == honest.size { 2 } else { 1 };
            assert_eq!(hit.holders.len(), expected, "{hit:?}");
        }
        // `want` counts hits: the first is the size most holders give.
        let first = index.query(&[ContentId::of_bytes(b"c").to_string()], 1);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].size, honest.size);
    }

    #[test]
    fn holders_per_hit_are_capped() {
        let mut index = ContentIndex::new(IndexLimits::default());
        for n in 0..(MAX_HOLDERS_PER_HIT as u8 + 5) {
            index
                .publish(holder(n), &[entry("x", "popular.mp3")])
                .unwrap();
        }
        let hits = index.query(&words("popular"), 10);
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].holders.len(), MAX_HOLDERS_PER_HIT);
    }

    #[test]
    fn removing_a_holder_hides_its_files_at_once() {
        let mut index = sample();
        index
            .publish(
                holder(2),
                &[entry("c", "Let It Be.mp3"), entry("e", "Yesterday.mp3")],
            )
            .unwrap();
        assert_eq!(index.remove_holder(holder(1).node_id), 4);
        assert_eq!(index.len(), 2);
        assert_eq!(index.holders(), 1);
        assert_eq!(index.entries_of(&holder(1).node_id), 0);
        assert!(index.query(&words("road"), 10).is_empty());
        assert!(index.query(&words("flac"), 10).is_empty());
        let hits = index.query(&words("mp3"), 10);
        assert_eq!(names(&hits), ["Let It Be.mp3", "Yesterday.mp3"]);
        assert!(hits.iter().all(|hit| hit.holders == [holder(2)]));
        assert!(!index.keywords().any(|w| w == "abbey"));
        assert_eq!(index.remove_holder(holder(1).node_id), 0);
        assert_eq!(index.remove_holder(holder(2).node_id), 2);
        assert!(index.is_empty());
        assert_eq!(index.keywords().count(), 0);
    }

    #[test]
    fn unpublish_removes_only_the_named_entries() {
        let mut index = sample();
        index
            .publish(holder(2), &[entry("b", "abbey road.mp3")])
            .unwrap();
        let gone = [ContentId::of_bytes(b"b"), ContentId::of_bytes(b"zzz")];
        assert_eq!(index.unpublish(holder(1).node_id, &gone), 1);
        assert_eq!(index.entries_of(&holder(1).node_id), 3);
        let hits = index.query(&words("abbey mp3"), 10);
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].holders, [holder(2)]);
        assert!(index.query(&words("remastered"), 10).is_empty());
        assert_eq!(index.unpublish(holder(9).node_id, &gone), 0);
        // A holder whose last entry goes is forgotten.
        assert_eq!(index.unpublish(holder(2).node_id, &gone), 1);
        assert_eq!(index.holders(), 1);
    }

    #[test]
    fn republishing_replaces_name_and_size() {
        let mut index = sample();
        let mut moved = entry("c", "Let It Be (Naked).flac");
        moved.size = 99;
        assert_eq!(index.publish(holder(1), &[moved]).unwrap(), 1);
        assert_eq!(index.len(), 4);
        assert!(index.query(&words("let mp3"), 10).is_empty());
        let hits = index.query(&words("naked"), 10);
        assert_eq!(hits.len(), 1);
        assert_eq!(
            (hits[0].name.as_str(), hits[0].size),
            ("Let It Be (Naked).flac", 99)
        );
        assert_eq!(index.query(&words("let it be"), 10).len(), 1);
    }

    #[test]
    fn per_holder_cap_refuses_the_batch() {
        let limits = IndexLimits {
            max_entries_per_holder: 3,
            max_total_entries: 100,
        };
        let mut index = ContentIndex::new(limits);
        index
            .publish(holder(1), &[entry("a", "one"), entry("b", "two")])
            .unwrap();
        let generation = index.keyword_generation();
        let err = index
            .publish(holder(1), &[entry("c", "three"), entry("d", "four")])
            .unwrap_err();
        assert!(matches!(err, IndexError::TooManyForHolder { limit: 3, .. }));
        assert_eq!(index.len(), 2);
        assert!(index.query(&words("three"), 10).is_empty());
        assert_eq!(index.keyword_generation(), generation);
        // Replacements and repeats within a batch do not count as new entries.
        let batch = [entry("a", "uno"), entry("c", "three"), entry("c", "tres")];
        assert_eq!(index.publish(holder(1), &batch).unwrap(), 3);
        assert_eq!(index.entries_of(&holder(1).node_id), 3);
        assert_eq!(names(&index.query(&words("tres"), 10)), ["tres"]);
        // Another holder has its own allowance.
        index
            .publish(holder(2), &[entry("c", "three"), entry("d", "four")])
            .unwrap();
    }

    #[test]
    fn total_cap_refuses_the_batch() {
        let limits = IndexLimits {
            max_entries_per_holder: 10,
            max_total_entries: 3,
        };
        let mut index = ContentIndex::new(limits);
        index
            .publish(holder(1), &[entry("a", "one"), entry("b", "two")])
            .unwrap();
        let err = index
            .publish(holder(2), &[entry("a", "one"), entry("c", "three")])
            .unwrap_err();
        assert!(matches!(err, IndexError::Full { limit: 3 }));
        assert_eq!(index.len(), 2);
        assert_eq!(index.holders(), 1);
        assert_eq!(index.query(&words("one"), 10)[0].holders, [holder(1)]);
        index.publish(holder(2), &[entry("a", "one")]).unwrap();
        assert_eq!(index.len(), 3);
    }

    #[test]
    fn invalid_entry_refuses_the_batch() {
        let mut index = sample();
        let generation = index.keyword_generation();
        let long = "x".repeat(superpeer_common::wire::MAX_NAME_BYTES + 1);
        for bad in [entry("z", ""), entry("z", &long)] {
            let err = index
                .publish(holder(2), &[entry("y", "fine.mp3"), bad])
                .unwrap_err();
            assert!(matches!(err, IndexError::InvalidEntry(ref why) if why.contains("entry 1")));
        }
        assert_eq!(index.len(), 4);
        assert_eq!(index.holders(), 1);
        assert!(index.query(&words("fine"), 10).is_empty());
        assert_eq!(index.keyword_generation(), generation);
    }

    #[test]
    fn keyword_generation_follows_the_set_of_words() {
        let mut index = ContentIndex::new(IndexLimits::default());
        let g0 = index.keyword_generation();
        index
            .publish(
                holder(1),
                &[entry("a", "red song.mp3"), entry("b", "Song Red.MP3")],
            )
            .unwrap();
        let g1 = index.keyword_generation();
        assert_ne!(g1, g0);
        // Same words and contents again: from another holder, as a republish.
        index
            .publish(holder(2), &[entry("a", "red song.mp3")])
            .unwrap();
        index
            .publish(holder(1), &[entry("a", "song red.mp3")])
            .unwrap();
        assert_eq!(index.keyword_generation(), g1);
        // Removing entries while every word and content still has one left.
        index.remove_holder(holder(2).node_id);
        assert_eq!(index.keyword_generation(), g1);
        // A content goes (its id leaves the summary's keywords), though its words stay.
        index.unpublish(holder(1).node_id, &[ContentId::of_bytes(b"a")]);
        assert_ne!(index.keyword_generation(), g1);
        let g1 = index.keyword_generation();
        // A new word appears.
        index
            .publish(holder(1), &[entry("c", "blue song.mp3")])
            .unwrap();
        let g2 = index.keyword_generation();
        assert_ne!(g2, g1);
        // A rename drops "red" and adds nothing new.
        index
            .publish(holder(1), &[entry("b", "blue song.mp3")])
            .unwrap();
        let g3 = index.keyword_generation();
        assert_ne!(g3, g2);
        let mut set: Vec<&str> = index.keywords().collect();
        set.sort_unstable();
        assert_eq!(set, ["blue", "mp3", "song"]);
        index.remove_holder(holder(1).node_id);
        assert_ne!(index.keyword_generation(), g3);
        assert_eq!(index.keywords().count(), 0);
    }

    #[test]
    fn slots_are_reused_and_copy_lists_stay_consistent() {
        let mut index = ContentIndex::new(IndexLimits::default());
        for round in 0..3 {
            for n in 1..=4 {
                let files = [
                    entry("shared", "shared file.mp3"),
                    entry(&format!("{n}"), "own.txt"),
                ];
                index.publish(holder(n), &files).unwrap();
            }
            // Remove from the middle, the head and the tail of the copy list.
            for n in [2, 4, 1] {
                index.remove_holder(holder(n).node_id);
            }
            let hits = index.query(&words("shared"), 10);
            assert_eq!(hits.len(), 1, "round {round}");
            assert_eq!(hits[0].holders, [holder(3)]);
            index.remove_holder(holder(3).node_id);
            assert!(index.is_empty());
        }
        assert!(index.entries.slots.len() <= 8);
        assert!(index.approx_bytes() > 0);
    }
}
