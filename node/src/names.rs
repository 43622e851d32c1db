//! File names that came from the network, made safe to show and to write.

/// `name` with control characters and path separators replaced, never empty, `.` or `..`:
/// safe to print on a terminal and to use as one path component.
pub fn sanitize(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_control() || c == '/' || c == '\\' || c == '\0' {
                '_'
            } else {
                c
            }
        })
        .collect();
    let trimmed = cleaned.trim();
    match trimmed {
        "" | "." | ".." => "_".to_string(),
        _ => trimmed.to_string(),
    }
}

/// Most characters of a peer's message shown to the user.
const MAX_SHOWN_CHARS: usize = 200;

/// A message from a peer (a refusal's reason), made safe to print on one line: control
/// characters replaced, cut to [`MAX_SHOWN_CHARS`].
pub fn printable(text: &str) -> String {
    let mut shown: String = text
        .chars()
        .take(MAX_SHOWN_CHARS)
        .map(|c| if c.is_control() { '_' } else { c })
        .collect();
    if text.chars().nth(MAX_SHOWN_CHARS).is_some() {
        shown.push('…');
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_messages_print_on_one_line_and_are_capped() {
        assert_eq!(printable("slow down"), "slow down");
        assert_eq!(printable("a\nb\u{1b}[2J"), "a_b_[2J");
        let long = "x".repeat(1000);
        assert_eq!(printable(&long).chars().count(), MAX_SHOWN_CHARS + 1);
    }

    #[test]
    fn hostile_names_are_defused() {
        assert_eq!(sanitize("../../etc/passwd"), ".._.._etc_passwd");
        assert_eq!(sanitize("a\u{1b}[2Jb"), "a_[2Jb");
        assert_eq!(sanitize(".."), "_");
        assert_eq!(sanitize("  "), "_");
        assert_eq!(sanitize("C:\\\\x"), "C:__x");
        assert_eq!(sanitize("Ünïcode song.mp3"), "Ünïcode song.mp3");
    }
}
