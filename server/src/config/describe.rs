//! A configuration error as the operator reads it: one line per error,
//! the key as the TOML file spells it and where its value came from (the
//! file, an `AUDITLOG_*` variable or a flag), instead of figment's own text
//! (its provider's profile and source location, Rust type names).

use super::Overrides;

/// `error` as one line per figment error, joined with `; `: `configuration
/// key listen (from the --listen flag): ...`. Figment's own text ends with
/// the key as its provider spells it (`default.listen`, a profile the
/// server has no use for) and the provider's name (for a flag, the source
/// location where it was added and a Rust type name); here the key is the
/// TOML key and the source is what the operator wrote: the file's path, the
/// `AUDITLOG_*` variable or the flag.
pub(super) fn describe(error: &figment::Error) -> String {
    error
        .clone()
        .into_iter()
        .map(|e| describe_one(&e))
        .collect::<Vec<_>>()
        .join("; ")
}

/// One figment error, without the errors chained to it.
fn describe_one(e: &figment::Error) -> String {
    use figment::error::Kind;
    let mut path = e.path.clone();
    // An unknown or missing key is reported at the table holding it (or
    // that should): name it whole.
    let field = match &e.kind {
        Kind::UnknownField(field, _) => Some(field.as_str()),
        Kind::MissingField(field) => Some(&**field),
        _ => None,
    };
    if let Some(field) = field
        && path.last().map(String::as_str) != Some(field)
    {
        path.push(field.to_owned());
    }
    let what = one_line(&plain_kind(&e.kind));
    let source = e.metadata.as_ref().and_then(|md| source_of(md, &path));
    // As TOML spells it: `alerts.email.port`, `tokens[0]`.
    let key = path.iter().fold(String::new(), |key, part| {
        if part.bytes().all(|b| b.is_ascii_digit()) {
            format!("{key}[{part}]")
        } else if key.is_empty() {
            part.clone()
        } else {
            format!("{key}.{part}")
        }
    });
    match (key.is_empty(), source) {
        (false, Some(source)) => format!("configuration key {key} ({source}): {what}"),
        (false, None) => format!("configuration key {key}: {what}"),
        (true, Some(source)) => format!("configuration ({source}): {what}"),
        (true, None) => format!("configuration: {what}"),
    }
}

/// Where a value came from, as the operator gave it: `in FILE`, `from
/// AUDITLOG_KEY`, `from the --flag flag`; `None` for the defaults.
fn source_of(md: &figment::Metadata, path: &[String]) -> Option<String> {
    if let Some(figment::Source::File(file)) = &md.source {
        return Some(format!("in {}", file.display()));
    }
    if md.name.contains("environment variable") {
        let name = path.join("__").to_ascii_uppercase();
        return Some(if name.is_empty() {
            "from an AUDITLOG_* environment variable".to_owned()
        } else {
            format!("from AUDITLOG_{name}")
        });
    }
    if md.name == std::any::type_name::<Overrides>() {
        // Every flag is named after the last part of its key.
        return Some(match path.last() {
            Some(key) => format!("from the --{} flag", key.replace('_', "-")),
            None => "from a command-line flag".to_owned(),
        });
    }
    None
}

/// A figment error's kind as a sentence, its Rust type names said in the
/// configuration's words (`expected usize` is `expected a whole number`),
/// and the names a key or value may take listed once quoted (figment quotes
/// the list and each name in it).
fn plain_kind(kind: &figment::error::Kind) -> String {
    use figment::error::Kind;
    let plain = |expected: &str| -> String {
        match expected {
            "u8" => "a whole number from 0 to 255".to_owned(),
            "u16" => "a whole number from 0 to 65535".to_owned(),
            "u32" => "a whole number from 0 to 4294967295".to_owned(),
            "u64" | "usize" => "a whole number, 0 or more".to_owned(),
            "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number".to_owned(),
            "f32" | "f64" => "a number".to_owned(),
            "a sequence" => "a list".to_owned(),
            "a map" => "a table".to_owned(),
            other => match other.strip_prefix("struct ") {
                Some(_) => "a table".to_owned(),
                None => other.to_owned(),
            },
        }
    };
    let quoted = |names: &[&str]| {
        let names: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
        match names.as_slice() {
            [] => String::new(),
            [one] => one.clone(),
            [first @ .., last] => format!("{} or {last}", first.join(", ")),
        }
    };
    match kind {
        Kind::InvalidType(actual, expected) => {
            Kind::InvalidType(actual.clone(), plain(expected)).to_string()
        }
        Kind::InvalidValue(actual, expected) => {
            Kind::InvalidValue(actual.clone(), plain(expected)).to_string()
        }
        Kind::UnknownField(found, []) => format!("unknown key `{found}`"),
        Kind::UnknownField(found, expected) => {
            format!(
                "unknown key `{found}`; the keys here are {}",
                quoted(expected)
            )
        }
        Kind::MissingField(_) => "is missing; it is required".to_owned(),
        Kind::UnknownVariant(found, []) => format!("unknown value `{found}`"),
        Kind::UnknownVariant(found, expected) => {
            format!("unknown value `{found}`; use {}", quoted(expected))
        }
        other => other.to_string(),
    }
}

/// `text` on one line: a TOML syntax error quotes the line it stopped at
/// and points at the column under it; the position is in its first line,
/// so the quote is left out and the rest joined.
fn one_line(text: &str) -> String {
    let quoted = |line: &str| {
        let line = line.trim_start();
        line.starts_with('|')
            || line
                .split_once(" |")
                .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    let mut lines = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !quoted(l));
    let first = lines.next().unwrap_or_default().to_owned();
    let rest: Vec<&str> = lines.collect();
    if rest.is_empty() {
        first
    } else {
        format!("{first}: {}", rest.join("; "))
    }
}
