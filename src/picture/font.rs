//! A 3×5 bitmap font for labels and the colour bar: lowercase letters (drawn as capitals),
//! digits and the punctuation of tensor names and numbers. Enough for legends, and no font
//! crate or file.

/// Glyph columns and rows, in font pixels.
pub const GLYPH_W: u32 = 3;
/// See [`GLYPH_W`].
pub const GLYPH_H: u32 = 5;
/// Horizontal advance per character, in font pixels (one pixel between glyphs).
pub const ADVANCE: u32 = GLYPH_W + 1;

/// The rows of `c`'s glyph, top first, each three bits (bit 2 the left column).
fn glyph(c: char) -> [u8; 5] {
    match c.to_ascii_lowercase() {
        '0' => [0b111, 0b101, 0b101, 0b101, 0b111],
        '1' => [0b010, 0b110, 0b010, 0b010, 0b111],
        '2' => [0b111, 0b001, 0b111, 0b100, 0b111],
        '3' => [0b111, 0b001, 0b111, 0b001, 0b111],
        '4' => [0b101, 0b101, 0b111, 0b001, 0b001],
        '5' => [0b111, 0b100, 0b111, 0b001, 0b111],
        '6' => [0b111, 0b100, 0b111, 0b101, 0b111],
        '7' => [0b111, 0b001, 0b001, 0b010, 0b010],
        '8' => [0b111, 0b101, 0b111, 0b101, 0b111],
        '9' => [0b111, 0b101, 0b111, 0b001, 0b111],
        'a' => [0b010, 0b101, 0b111, 0b101, 0b101],
        'b' => [0b110, 0b101, 0b110, 0b101, 0b110],
        'c' => [0b011, 0b100, 0b100, 0b100, 0b011],
        'd' => [0b110, 0b101, 0b101, 0b101, 0b110],
        'e' => [0b111, 0b100, 0b110, 0b100, 0b111],
        'f' => [0b111, 0b100, 0b110, 0b100, 0b100],
        'g' => [0b011, 0b100, 0b101, 0b101, 0b011],
        'h' => [0b101, 0b101, 0b111, 0b101, 0b101],
        'i' => [0b111, 0b010, 0b010, 0b010, 0b111],
        'j' => [0b001, 0b001, 0b001, 0b101, 0b010],
        'k' => [0b101, 0b101, 0b110, 0b101, 0b101],
        'l' => [0b100, 0b100, 0b100, 0b100, 0b111],
        'm' => [0b101, 0b111, 0b111, 0b101, 0b101],
        'n' => [0b110, 0b101, 0b101, 0b101, 0b101],
        'o' => [0b010, 0b101, 0b101, 0b101, 0b010],
        'p' => [0b110, 0b101, 0b110, 0b100, 0b100],
        'q' => [0b010, 0b101, 0b101, 0b110, 0b011],
        'r' => [0b110, 0b101, 0b110, 0b101, 0b101],
        's' => [0b011, 0b100, 0b010, 0b001, 0b110],
        't' => [0b111, 0b010, 0b010, 0b010, 0b010],
        'u' => [0b101, 0b101, 0b101, 0b101, 0b111],
        'v' => [0b101, 0b101, 0b101, 0b101, 0b010],
        'w' => [0b101, 0b101, 0b111, 0b111, 0b101],
        'x' => [0b101, 0b101, 0b010, 0b101, 0b101],
        'y' => [0b101, 0b101, 0b010, 0b010, 0b010],
        'z' => [0b111, 0b001, 0b010, 0b100, 0b111],
        '.' => [0b000, 0b000, 0b000, 0b000, 0b010],
        '-' => [0b000, 0b000, 0b111, 0b000, 0b000],
        '_' => [0b000, 0b000, 0b000, 0b000, 0b111],
        '+' => [0b000, 0b010, 0b111, 0b010, 0b000],
        ':' => [0b000, 0b010, 0b000, 0b010, 0b000],
        '/' => [0b001, 0b001, 0b010, 0b100, 0b100],
        '(' => [0b010, 0b100, 0b100, 0b100, 0b010],
        ')' => [0b010, 0b001, 0b001, 0b001, 0b010],
        ' ' => [0; 5],
        _ => [0b111, 0b001, 0b010, 0b000, 0b010],
    }
}

/// Width of `text` drawn at `scale` (pixels per font pixel), without the trailing gap.
pub fn text_width(text: &str, scale: u32) -> u32 {
    (text.chars().count() as u32 * ADVANCE).saturating_sub(1) * scale
}

/// Height of a line at `scale`.
pub fn text_height(scale: u32) -> u32 {
    GLYPH_H * scale
}

/// Whether the pixel `(px, py)` of `text` drawn at `scale` with its top-left at the origin is
/// ink.
pub fn ink(text: &str, scale: u32, px: u32, py: u32) -> bool {
    let (fx, fy) = (px / scale, py / scale);
    if fy >= GLYPH_H {
        return false;
    }
    let (k, col) = ((fx / ADVANCE) as usize, fx % ADVANCE);
    if col >= GLYPH_W {
        return false;
    }
    text.chars()
        .nth(k)
        .is_some_and(|c| glyph(c)[fy as usize] & (0b100 >> col) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_and_letters_differ_and_ink_stays_inside() {
        let all: Vec<[u8; 5]> = "0123456789abcdefghijklmnopqrstuvwxyz"
            .chars()
            .map(glyph)
            .collect();
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a, b, "two glyphs are the same");
            }
        }
        assert_eq!(text_width("ab", 2), 14);
        assert!(ink("1", 1, 1, 0));
        assert!(!ink("1", 1, 0, 0));
        assert!(!ink("1", 1, 3, 0), "the gap between glyphs is blank");
        assert!(!ink("1", 1, 1, 5), "below the glyph is blank");
    }
}
