//! Text that a server chose (an error's `Code`, `Message` or `RequestId`, a header), made
//! inert before it reaches cosign's terminal: bounded in length, with control characters and
//! the Unicode controls that reorder text shown as escapes, never acted on.

/// `text` at most `max_chars` characters long (then ending in `…`), each control character
/// or bidirectional-formatting character written as `\u{…}`.
pub fn server_text(text: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_chars * 2));
    for (n, c) in text.chars().enumerate() {
        if n == max_chars {
            out.push('…');
            break;
        }
        if c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}') {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// Caps for the fields a server echoes back.
pub const CODE_CHARS: usize = 100;
pub const REQUEST_ID_CHARS: usize = 100;
pub const MESSAGE_CHARS: usize = 500;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_length_is_capped() {
        assert_eq!(
            server_text("Forbidden.KeyNotFound", 100),
            "Forbidden.KeyNotFound"
        );
        assert_eq!(
            server_text("a\u{1b}[31mred\r\n\u{202E}x", 100),
            "a\\u{1b}[31mred\\u{d}\\u{a}\\u{202e}x"
        );
        assert_eq!(server_text(&"x".repeat(60_000), 5), "xxxxx…");
        assert_eq!(server_text("日本語", 2), "日本…");
    }
}
