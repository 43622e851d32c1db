//! Keywords: how file names and queries become searchable words.
//!
//! Every node uses this one tokenizer, so a query word matches a name word exactly when both
//! come out the same here. Words are the maximal runs of Unicode letters and digits, in lower
//! case; everything else (spaces, `_-.()[]`, other punctuation) separates words. So the
//! extension's dot goes but the extension stays a word: `"Abbey_Road-(1969).FLAC"` gives
//! `abbey road 1969 flac`.

/// Words longer than this are cut: nobody types them, and they would bloat indexes.
pub const MAX_KEYWORD_CHARS: usize = 48;

/// A name yields at most this many distinct words; the rest are not indexed.
pub const MAX_KEYWORDS_PER_NAME: usize = 32;

/// The distinct words of `text`, in order of first appearance, lower-cased and capped.
pub fn keywords(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let word: String = word
            .chars()
            .flat_map(char::to_lowercase)
            .take(MAX_KEYWORD_CHARS)
            .collect();
        if !out.contains(&word) {
            out.push(word);
            if out.len() == MAX_KEYWORDS_PER_NAME {
                break;
            }
        }
    }
    out
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
        assert_eq!(keywords("İstanbul"), ["i̇stanbul"]);
    }

    #[test]
    fn duplicates_dropped_and_sizes_capped() {
        assert_eq!(keywords("the THE The"), ["the"]);
        assert!(keywords("").is_empty());
        assert!(keywords("--..__()").is_empty());
        let long = "x".repeat(500);
        assert_eq!(keywords(&long)[0].chars().count(), MAX_KEYWORD_CHARS);
        let many: String = (0..100).map(|i| format!("w{i} ")).collect();
        assert_eq!(keywords(&many).len(), MAX_KEYWORDS_PER_NAME);
    }
}
