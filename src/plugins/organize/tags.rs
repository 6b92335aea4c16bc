//! Tags as one select option each (case, plurals and spacing normalised), and which documents
//! are related.

use std::collections::{BTreeMap, BTreeSet};

/// One tag as it is stored: lower case, words separated by one space, the last word in its
/// singular (`Neural Networks ` → `neural network`). Empty when nothing is left.
pub fn normalize(tag: &str) -> String {
    let cleaned: String = tag
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '+' || c == '#' || c == '.' {
                c
            } else {
                ' '
            }
        })
        .collect::<String>()
        .to_lowercase();
    let mut words: Vec<String> = cleaned
        .split_whitespace()
        .map(|w| w.trim_matches('.').to_owned())
        .filter(|w| !w.is_empty())
        .collect();
    if let Some(last) = words.last_mut() {
        *last = singular(last);
    }
    words.join(" ")
}

/// The singular of an English plural, for the common regular forms; other words as they are.
fn singular(word: &str) -> String {
    let n = word.chars().count();
    if n <= 3 || !word.is_ascii() {
        return word.to_owned();
    }
    // Words that end in s and are not plurals (fields of study in -ics among them).
    const KEEP: [&str; 6] = ["analysis", "basis", "thesis", "news", "series", "species"];
    if KEEP.contains(&word)
        || word.ends_with("ics")
        || word.ends_with("ss")
        || word.ends_with("us")
        || word.ends_with("is")
    {
        return word.to_owned();
    }
    // -ches and -shes drop -es (branches, dishes), except words whose singular ends in -e.
    const E_ENDING: [&str; 6] = [
        "caches",
        "niches",
        "headaches",
        "avalanches",
        "moustaches",
        "quiches",
    ];
    if E_ENDING.contains(&word) {
        return word[..word.len() - 1].to_owned();
    }
    if let Some(stem) = word.strip_suffix("ies") {
        return format!("{stem}y");
    }
    for ending in ["ches", "shes", "sses", "xes", "zes"] {
        if word.ends_with(ending) {
            return word[..word.len() - 2].to_owned();
        }
    }
    match word.strip_suffix('s') {
        Some(stem) => stem.to_owned(),
        None => word.to_owned(),
    }
}

/// A record's tags: normalised, each once, at most `max`, in the model's order.
pub fn clean(tags: &[String], max: usize) -> Vec<String> {
    let mut seen = BTreeSet::new();
    tags.iter()
        .map(|t| normalize(t))
        .filter(|t| !t.is_empty() && t.chars().count() <= 60)
        .filter(|t| seen.insert(t.clone()))
        .take(max)
        .collect()
}

/// What relates two documents: their tags and category.
pub struct Profile<'a> {
    pub key: &'a str,
    pub category: &'a str,
    pub tags: &'a [String],
}

/// Each document's related documents: those sharing two tags, or the category and a tag,
/// strongest first (shared tags count twice, the category once), at most `max` of its own
/// choosing; then made mutual, so a link stands in both records. Keys in, keys out, sorted.
pub fn related(docs: &[Profile<'_>], max: usize) -> BTreeMap<String, BTreeSet<String>> {
    let mut links: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for a in docs {
        let tags_a: BTreeSet<&String> = a.tags.iter().collect();
        let mut scored: Vec<(usize, &str)> = docs
            .iter()
            .filter(|b| b.key != a.key)
            .filter_map(|b| {
                let shared = b.tags.iter().filter(|t| tags_a.contains(t)).count();
                let same = usize::from(!a.category.is_empty() && a.category == b.category);
                (shared >= 2 || (shared >= 1 && same == 1)).then_some((shared * 2 + same, b.key))
            })
            .collect();
        scored.sort_by(|x, y| y.0.cmp(&x.0).then(x.1.cmp(y.1)));
        for (_, b) in scored.into_iter().take(max) {
            links
                .entry(a.key.to_owned())
                .or_default()
                .insert(b.to_owned());
            links
                .entry(b.to_owned())
                .or_default()
                .insert(a.key.to_owned());
        }
    }
    links
}

/// What the model chooses among for each document of `of`: the others it shares a tag with,
/// strongest first (as [`related`] scores them), at most `max`. A document with none is left
/// out: there is nothing to ask.
pub fn candidates(
    docs: &[Profile<'_>],
    of: &BTreeSet<&str>,
    max: usize,
) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for a in docs.iter().filter(|a| of.contains(a.key)) {
        let tags_a: BTreeSet<&String> = a.tags.iter().collect();
        let mut scored: Vec<(usize, &str)> = docs
            .iter()
            .filter(|b| b.key != a.key)
            .filter_map(|b| {
                let shared = b.tags.iter().filter(|t| tags_a.contains(t)).count();
                let same = usize::from(!a.category.is_empty() && a.category == b.category);
                (shared >= 1).then_some((shared * 2 + same, b.key))
            })
            .collect();
        scored.sort_by(|x, y| y.0.cmp(&x.0).then(x.1.cmp(y.1)));
        let picked: Vec<String> = scored
            .into_iter()
            .take(max)
            .map(|(_, b)| b.to_owned())
            .collect();
        if !picked.is_empty() {
            out.insert(a.key.to_owned(), picked);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_one_option_whatever_their_spelling() {
        for (given, stored) in [
            ("Neural Networks", "neural network"),
            ("  neural   network ", "neural network"),
            ("NEURAL-NETWORKS", "neural network"),
            ("Libraries", "library"),
            ("caches", "cache"),
            ("branches", "branch"),
            ("boxes", "box"),
            ("analysis", "analysis"),
            ("Physics", "physics"),
            ("optics", "optics"),
            ("status", "status"),
            ("C++", "c++"),
            ("rust", "rust"),
            ("gas", "gas"),
            ("…", ""),
        ] {
            assert_eq!(normalize(given), stored, "{given:?}");
        }
        let tags: Vec<String> = ["Rust", "rust ", "Async", "Tokio", "Futures", "more", "x"]
            .map(String::from)
            .to_vec();
        assert_eq!(clean(&tags, 4), ["rust", "async", "tokio", "future"]);
    }

    #[test]
    fn related_documents_share_tags_and_links_go_both_ways() {
        let t = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (a, b, c, d) = (t(&["x", "y"]), t(&["x", "y", "z"]), t(&["x"]), t(&["q"]));
        let docs = [
            Profile {
                key: "a",
                category: "One",
                tags: &a,
            },
            Profile {
                key: "b",
                category: "Two",
                tags: &b,
            },
            Profile {
                key: "c",
                category: "One",
                tags: &c,
            },
            Profile {
                key: "d",
                category: "One",
                tags: &d,
            },
        ];
        let links = related(&docs, 5);
        let of = |k: &str| {
            links
                .get(k)
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .collect::<Vec<_>>()
        };
        // a–b share two tags; a–c share the category and a tag; b–c share only one tag;
        // d shares nothing but the category.
        assert_eq!(of("a"), ["b", "c"]);
        assert_eq!(of("b"), ["a"]);
        assert_eq!(of("c"), ["a"]);
        assert!(of("d").is_empty());
        // At most one of its own choosing: a picks b (two tags beat the category), and c
        // still links to a, so a lists c as well.
        let links = related(&docs, 1);
        assert_eq!(links["a"], BTreeSet::from(["b".to_owned(), "c".to_owned()]));

        // What the model chooses among: one shared tag is enough to be shown; strongest first.
        let of = BTreeSet::from(["a", "b", "d"]);
        let shown = candidates(&docs, &of, 5);
        assert_eq!(shown["a"], ["b", "c"]);
        assert_eq!(shown["b"], ["a", "c"]);
        assert!(!shown.contains_key("c"), "only those asked for");
        assert!(!shown.contains_key("d"), "nothing shares a tag with d");
        assert_eq!(candidates(&docs, &of, 1)["b"], ["a"]);
    }
}
