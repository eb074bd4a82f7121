//! Text shown on a terminal that came from a file or a server (tensor names, `config.json`
//! values, URLs, messages): control characters are escaped, so that such text cannot move the
//! cursor, clear the screen or forge a line of output.

use std::borrow::Cow;

/// `text` with every control character (C0, DEL, C1) written as an escape (`\x1b`, `\n`, …),
/// so that a name or value from a model file, `config.json` or a server cannot move the
/// cursor, clear the screen or forge a line of output.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// [`printable`] for text of several lines: newlines and tabs stay, every other control
/// character is escaped. Every text block the CLI prints passes through it.
pub fn printable_lines(text: &str) -> Cow<'_, str> {
    if !text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.split('\n')
            .map(|line| {
                line.split('\t')
                    .map(printable)
                    .collect::<Vec<_>>()
                    .join("\t")
            })
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

/// Levenshtein distance between `a` and `b`, in characters (for "did you mean" hints).
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// `1234567` → `1,234,567`.
pub fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{printable, printable_lines};

    #[test]
    fn control_characters_are_escaped_and_plain_text_is_borrowed() {
        assert_eq!(
            printable("bert\x1b[2J\nerror: forged"),
            "bert\\u{1b}[2J\\nerror: forged"
        );
        assert_eq!(printable("a\u{9b}b\u{7f}"), "a\\u{9b}b\\u{7f}");
        assert!(matches!(
            printable("gpt2 — ünïcode"),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(
            printable_lines("Model type: bert\x1b[2J\n\tok\n"),
            "Model type: bert\\u{1b}[2J\n\tok\n"
        );
    }
}
