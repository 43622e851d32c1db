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

#[cfg(test)]
mod tests {
    use super::*;

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
