//! The name a download is saved under: a name from the network (a holder chose it) made
//! safe to create in the downloads folder and honest to look at.
//!
//! [`crate::names::sanitize`] already makes it one printable path component. On top of it:
//! - Bidirectional controls go (U+202E RIGHT-TO-LEFT OVERRIDE and its kin): they are
//!   invisible format characters that make `photo\u{202E}gpj.exe` look like `photoexe.jpg`,
//!   an executable dressed as a picture.
//! - What Windows cannot create or treats specially goes too, so a folder shared to or
//!   synced with Windows holds the same names: `< > : " | ? *` (`:` also names an NTFS
//!   alternate data stream), device names (`CON`, `nul.txt`, `COM1`, ...) and trailing
//!   dots and spaces (Windows drops them, so `a.exe.` would become `a.exe`).
//! - No leading dot: a download is never hidden and never looks like one of our `.part`
//!   files.
//! - At most [`MAX_NAME_BYTES`] bytes, the extension kept.

use crate::names::sanitize;

/// Longest final file name in bytes; leaves room for a ` (N)` suffix under the usual
/// 255-byte limit of file systems.
pub const MAX_NAME_BYTES: usize = 200;

/// Device names Windows reserves, whatever the extension (`nul.txt` is the device too).
const RESERVED_STEMS: [&str; 22] = [
    "con", "prn", "aux", "nul", "com1", "com2", "com3", "com4", "com5", "com6", "com7", "com8",
    "com9", "lpt1", "lpt2", "lpt3", "lpt4", "lpt5", "lpt6", "lpt7", "lpt8", "lpt9",
];

/// The name a download of `name` is saved under (see the module docs).
pub fn final_name(name: &str) -> String {
    let clean: String = sanitize(name)
        .chars()
        .map(|c| {
            if is_bidi_control(c) || is_windows_forbidden(c) {
                '_'
            } else {
                c
            }
        })
        .collect();
    let visible = clean
        .trim_start_matches('.')
        .trim_end_matches(['.', ' '])
        .trim_start();
    let visible = if visible.is_empty() {
        "download".to_string()
    } else if is_reserved_device(visible) {
        format!("_{visible}")
    } else {
        visible.to_string()
    };
    if visible.len() <= MAX_NAME_BYTES {
        return visible;
    }
    let (stem, ext) = split_extension(&visible);
    let ext = if ext.len() <= 16 { ext } else { "" };
    format!("{}{ext}", truncate(stem, MAX_NAME_BYTES - ext.len()))
}

/// Characters that reorder how the text around them is shown.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200E}' | '\u{200F}' | '\u{061C}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

fn is_windows_forbidden(c: char) -> bool {
    matches!(c, '<' | '>' | ':' | '"' | '|' | '?' | '*')
}

/// Whether the part before the first dot is a Windows device name (`CON`, `com1.tar.gz`).
fn is_reserved_device(name: &str) -> bool {
    let stem = name.split('.').next().unwrap_or(name).trim_end();
    RESERVED_STEMS
        .iter()
        .any(|reserved| stem.eq_ignore_ascii_case(reserved))
}

/// Splits at the last dot: `("archive.tar", ".gz")`; no extension when the only dot leads.
pub fn split_extension(name: &str) -> (&str, &str) {
    match name.rfind('.') {
        Some(dot) if dot > 0 => name.split_at(dot),
        _ => (name, ""),
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_names_stay_one_visible_component() {
        assert_eq!(final_name("song.mp3"), "song.mp3");
        assert_eq!(final_name("../../etc/passwd"), "_.._etc_passwd");
        assert_eq!(final_name(".bashrc"), "bashrc");
        assert_eq!(final_name(".."), "_");
        assert_eq!(final_name("..."), "download");
        assert_eq!(final_name("a\u{7}b\nc"), "a_b_c");
        let long = format!("{}.flac", "é".repeat(300));
        let capped = final_name(&long);
        assert!(capped.len() <= MAX_NAME_BYTES, "{}", capped.len());
        assert!(capped.ends_with("é.flac"));
    }

    #[test]
    fn right_to_left_overrides_cannot_spoof_an_extension() {
        // Shown as "holidayexe.jpg" by anything that honours the override.
        let spoofed = final_name("holiday\u{202E}gpj.exe");
        assert_eq!(spoofed, "holiday_gpj.exe");
        for c in [
            '\u{202A}', '\u{202B}', '\u{202D}', '\u{2066}', '\u{2069}', '\u{200F}',
        ] {
            assert!(!final_name(&format!("a{c}b.txt")).contains(c), "{c:?}");
        }
    }

    #[test]
    fn windows_reserved_names_and_characters_are_defused() {
        assert_eq!(final_name("CON"), "_CON");
        assert_eq!(final_name("nul.txt"), "_nul.txt");
        assert_eq!(final_name("com1.tar.gz"), "_com1.tar.gz");
        assert_eq!(final_name("Lpt9 .log"), "_Lpt9 .log");
        assert_eq!(final_name("console.log"), "console.log");
        assert_eq!(final_name("a:stream.txt"), "a_stream.txt");
        assert_eq!(final_name("what?<>|*\".txt"), "what______.txt");
        assert_eq!(final_name("evil.exe. . "), "evil.exe");
        assert_eq!(final_name("C:\\\\x"), "C___x");
    }
}
