//! Reading the rendered DOM: its start tags, and the figures a page shows
//! by `data-metric` and `data-key`.

use std::collections::{BTreeMap, HashMap};

/// One element of the serialised DOM: its name, attributes and the text
/// right after its start tag.
#[derive(Debug)]
pub(crate) struct Element {
    pub(crate) name: String,
    pub(crate) attrs: BTreeMap<String, String>,
    pub(crate) text: String,
}

/// Undoes the character references a DOM serialiser writes.
fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

/// Every start tag of a serialised DOM. In serialised HTML a `<` in text or
/// in an attribute value is always escaped, so each `<` starts a tag; the
/// text of `<style>` is raw and skipped.
pub(crate) fn elements(dom: &str) -> Vec<Element> {
    let mut out = Vec::new();
    let mut rest = dom;
    while let Some(open) = rest.find('<') {
        rest = &rest[open + 1..];
        if rest.starts_with('/') || rest.starts_with('!') {
            rest = &rest[rest.find('>').unwrap() + 1..];
            continue;
        }
        let name_end = rest
            .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
            .unwrap();
        let name = rest[..name_end].to_ascii_lowercase();
        rest = &rest[name_end..];
        let mut attrs = BTreeMap::new();
        loop {
            rest = rest.trim_start();
            if let Some(r) = rest.strip_prefix('>') {
                rest = r;
                break;
            }
            if let Some(r) = rest.strip_prefix("/>") {
                rest = r;
                break;
            }
            let end = rest
                .find(|c: char| c == '=' || c == '>' || c.is_whitespace() || c == '/')
                .unwrap();
            let attr = rest[..end].to_ascii_lowercase();
            rest = &rest[end..];
            let value = if let Some(r) = rest.strip_prefix("=\"") {
                let close = r.find('"').unwrap();
                rest = &r[close + 1..];
                unescape(&r[..close])
            } else {
                if rest.starts_with('/') && !rest.starts_with("/>") {
                    rest = &rest[1..];
                }
                String::new()
            };
            attrs.insert(attr, value);
        }
        if name == "style" {
            rest = &rest[rest.find("</style>").unwrap()..];
        }
        let text_end = rest.find('<').unwrap_or(rest.len());
        let text = unescape(rest[..text_end].trim());
        out.push(Element { name, attrs, text });
    }
    out
}

/// The figures a page shows, by `data-metric` and `data-key`.
pub(crate) struct Metrics {
    values: HashMap<(String, String), Vec<String>>,
}

impl Metrics {
    pub(crate) fn of(elements: &[Element]) -> Metrics {
        let mut values: HashMap<(String, String), Vec<String>> = HashMap::new();
        for e in elements {
            if let Some(metric) = e.attrs.get("data-metric") {
                let key = e.attrs.get("data-key").cloned().unwrap_or_default();
                let value = e.attrs.get("data-value").unwrap_or(&e.text).clone();
                values.entry((metric.clone(), key)).or_default().push(value);
            }
        }
        Metrics { values }
    }

    /// The one value of `metric` (with `key`, `""` for none).
    pub(crate) fn get(&self, metric: &str, key: &str) -> &str {
        match self.values.get(&(metric.to_owned(), key.to_owned())) {
            Some(v) if v.len() == 1 => &v[0],
            other => panic!("{metric}[{key}]: expected one value, found {other:?}"),
        }
    }

    /// The value as a count (`1,234` -> 1234).
    pub(crate) fn count(&self, metric: &str, key: &str) -> u64 {
        let text = self.get(metric, key);
        text.replace(',', "")
            .parse()
            .unwrap_or_else(|_| panic!("{metric}[{key}] = {text:?} is not a count"))
    }

    /// Every key of `metric` with its values, in key order.
    pub(crate) fn all(&self, metric: &str) -> BTreeMap<String, &Vec<String>> {
        self.values
            .iter()
            .filter(|((m, _), _)| m == metric)
            .map(|((_, k), v)| (k.clone(), v))
            .collect()
    }

    /// Every key of `metric` with its count.
    pub(crate) fn counts(&self, metric: &str) -> BTreeMap<String, u64> {
        self.all(metric)
            .into_keys()
            .map(|k| {
                let n = self.count(metric, &k);
                (k, n)
            })
            .collect()
    }
}
