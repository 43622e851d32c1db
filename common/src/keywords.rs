//! Keywords: how file names and queries become searchable words.
//!
//! Every node uses this one tokenizer, so a query word matches a name word exactly when both
//! come out the same here. Words are the maximal runs of Unicode letters and digits, in lower
//! case; everything else (spaces, `_-.()[]`, other punctuation) separates words. So the
//! extension's dot goes but the extension stays a word: `"Abbey_Road-(1969).FLAC"` gives
//! `abbey road 1969 flac`.

/// Words longer than this many bytes of UTF-8 are cut (at a character boundary): nobody
/// types them, and they would bloat indexes. The same bound as a query keyword on the wire,
/// so whatever the tokenizer yields is a valid query word.
pub const MAX_KEYWORD_BYTES: usize = crate::wire::MAX_KEYWORD_BYTES;

/// A name yields at most this many distinct words; the rest are not indexed.
pub const MAX_KEYWORDS_PER_NAME: usize = 32;

/// The distinct words of `text`, in order of first appearance: NFKC-normalised (so a
/// decomposed `café` from macOS matches a composed one, and full-width letters match
/// ASCII), lower-cased, and capped.
pub fn keywords(text: &str) -> Vec<String> {
    use unicode_normalization::UnicodeNormalization;
    let lowered: String = text.nfkc().flat_map(char::to_lowercase).collect();
    // Lower-casing can decompose (`İ` → `i` + U+0307): compose again.
    let normalized: String = lowered.nfkc().collect();
    let mut out: Vec<String> = Vec::new();
    for word in normalized
        .split(|c: char| !is_word_char(c))
        .filter(|w| !w.is_empty())
    {
        let word = truncate_at_char(word, MAX_KEYWORD_BYTES);
        if !out.iter().any(|w| w == word) {
            out.push(word.to_owned());
            if out.len() == MAX_KEYWORDS_PER_NAME {
                break;
            }
        }
    }
    out
}

/// Letters, digits, and combining marks (which belong to the letter before them).
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric()
        || matches!(c, '\u{0300}'..='\u{036F}' | '\u{1AB0}'..='\u{1AFF}' | '\u{1DC0}'..='\u{1DFF}' | '\u{20D0}'..='\u{20FF}' | '\u{FE20}'..='\u{FE2F}')
}

/// The longest prefix of `word` of at most `max` bytes that ends at a character boundary.
fn truncate_at_char(word: &str, max: usize) -> &str {
    if word.len() <= max {
        return word;
    }
    let mut end = max;
    while !word.is_char_boundary(end) {
        end -= 1;
    }
    word.get(..end).unwrap_or(word)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_separators_and_keeps_the_extension() {
        assert_eq!(
            keywords("Abbey_Road-(1969).FLAC"),
            ["abbey", "road", "1969", "flac"]
        );
        assert_eq!(
            keywords("[Live] Song.Name  (remix).mp3"),
            ["live", "song", "name", "remix", "mp3"]
        );
        assert_eq!(keywords("a/b\\c:d"), ["a", "b", "c", "d"]);
    }

    #[test]
    fn unicode_aware_and_case_insensitive() {
        assert_eq!(
            keywords("Ärger_ÜBER_Straße.txt"),
            ["ärger", "über", "straße", "txt"]
        );
        assert_eq!(keywords("ΣΟΦΙΑ-東京.ogg"), keywords("σοφια 東京 OGG"));
        // Lower-casing İ gives i + a combining dot: it stays one word, and tokenizing the
        // word again gives the same word.
        let istanbul = keywords("İstanbul");
        assert_eq!(istanbul.len(), 1);
        assert_eq!(keywords(&istanbul[0]), istanbul);
        // Decomposed and composed forms are the same word; so are full-width letters.
        assert_eq!(keywords("cafe\u{301}"), keywords("café"));
        assert_eq!(keywords("ＡＢＢＡ"), ["abba"]);
    }

    #[test]
    fn duplicates_dropped_and_sizes_capped() {
        assert_eq!(keywords("the THE The"), ["the"]);
        assert!(keywords("").is_empty());
        assert!(keywords("--..__()").is_empty());
        let long = "x".repeat(500);
        assert_eq!(keywords(&long)[0].len(), MAX_KEYWORD_BYTES);
        // A long run of 3-byte characters is cut at a character boundary, and the result
        // is a valid query keyword.
        let cjk = keywords(&"東".repeat(40));
        assert_eq!(cjk[0].chars().count(), MAX_KEYWORD_BYTES / 3);
        assert!(cjk[0].len() <= MAX_KEYWORD_BYTES);
        let many: String = (0..100).map(|i| format!("w{i} ")).collect();
        assert_eq!(keywords(&many).len(), MAX_KEYWORDS_PER_NAME);
    }
}
