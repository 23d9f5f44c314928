//! Checking `LOC_synset_mapping.txt` against the shipped ImageNet-1k wnids. Class index is a
//! wnid's position in sorted order (SPEC §1), so a mapping that lacks, adds or repeats a wnid
//! shifts every index after it; it is refused, never used.

use std::collections::{BTreeMap, HashSet};

/// How many offending wnids a message names before it says how many more there are.
const SHOWN: usize = 5;

/// The wnids of a mapping file's text (`wnid name...` per line, blank lines allowed), in file
/// order, when they are exactly `shipped`; otherwise what is wrong, with line numbers where a
/// line is at fault.
pub(crate) fn check_mapping<'a>(text: &'a str, shipped: &[&str]) -> Result<Vec<&'a str>, String> {
    let mut lines_of: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    let mut wnids = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let Some(wnid) = line.split_whitespace().next() else { continue };
        if !is_wnid(wnid) {
            return Err(format!("line {}: `{}` is not a wnid (`n` and 8 digits, then the class name)", i + 1, wnid.escape_debug()));
        }
        lines_of.entry(wnid).or_default().push(i + 1);
        wnids.push(wnid);
    }
    let repeated: Vec<String> = lines_of
        .iter()
        .filter(|(_, lines)| lines.len() > 1)
        .map(|(wnid, lines)| format!("{wnid} (lines {})", join(lines.iter().map(usize::to_string))))
        .collect();
    if !repeated.is_empty() {
        return Err(format!("wnids listed more than once: {}", first_few(repeated)));
    }
    let expected: HashSet<&str> = shipped.iter().copied().collect();
    let missing: Vec<&str> = shipped.iter().copied().filter(|w| !lines_of.contains_key(w)).collect();
    let extra: Vec<String> =
        lines_of.iter().filter(|(w, _)| !expected.contains(*w)).map(|(w, lines)| format!("{w} (line {})", lines[0])).collect();
    if missing.is_empty() && extra.is_empty() {
        return Ok(wnids);
    }
    let mut problems = Vec::new();
    if !missing.is_empty() {
        problems.push(format!("missing {}", first_few(missing.iter().map(|w| w.to_string()).collect())));
    }
    if !extra.is_empty() {
        problems.push(format!("not ImageNet-1k wnids: {}", first_few(extra)));
    }
    Err(format!(
        "lists {} wnids, not the {} of ImageNet-1k (class indices would shift): {}",
        wnids.len(),
        shipped.len(),
        problems.join("; ")
    ))
}

/// `n01440764`: `n` and eight digits.
fn is_wnid(token: &str) -> bool {
    token.len() == 9 && token.starts_with('n') && token[1..].bytes().all(|b| b.is_ascii_digit())
}

fn join(items: impl Iterator<Item = String>) -> String {
    items.collect::<Vec<_>>().join(", ")
}

/// The first [`SHOWN`] items, then how many more.
fn first_few(items: Vec<String>) -> String {
    let more = items.len().saturating_sub(SHOWN);
    let shown = join(items.into_iter().take(SHOWN));
    if more == 0 {
        shown
    } else {
        format!("{shown} and {more} more")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHIPPED: [&str; 3] = ["n00000001", "n00000002", "n00000003"];

    #[test]
    fn exact_set_in_any_order_with_blank_lines_is_accepted() {
        let text = "n00000002 two\r\n\nn00000001 one, uno\nn00000003 three\n  \n";
        assert_eq!(check_mapping(text, &SHIPPED).unwrap(), vec!["n00000002", "n00000001", "n00000003"]);
    }

    #[test]
    fn each_fault_is_named() {
        for (text, expected) in [
            ("n00000001 a\nn00000003 c\n", "lists 2 wnids, not the 3 of ImageNet-1k (class indices would shift): missing n00000002"),
            (
                "n00000001 a\nn00000002 b\nn00000003 c\nn00000009 z\n",
                "lists 4 wnids, not the 3 of ImageNet-1k (class indices would shift): not ImageNet-1k wnids: n00000009 (line 4)",
            ),
            ("n00000001 a\nn00000002 b\nn00000001 a\nn00000003 c\n", "wnids listed more than once: n00000001 (lines 1, 3)"),
            ("n00000001 a\ntench, Tinca tinca\n", "line 2: `tench,` is not a wnid (`n` and 8 digits, then the class name)"),
        ] {
            assert_eq!(check_mapping(text, &SHIPPED).unwrap_err(), expected, "{text:?}");
        }
    }

    #[test]
    fn long_lists_are_cut_to_the_first_few() {
        let shipped: Vec<String> = (0..8).map(|i| format!("n{i:08}")).collect();
        let shipped: Vec<&str> = shipped.iter().map(String::as_str).collect();
        assert_eq!(
            check_mapping("", &shipped).unwrap_err(),
            "lists 0 wnids, not the 8 of ImageNet-1k (class indices would shift): missing n00000000, n00000001, \
             n00000002, n00000003, n00000004 and 3 more"
        );
    }
}
