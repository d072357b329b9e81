//! unbound.conf's lexical structure: `keyword:` tokens followed by values,
//! quoted with `"` or `'` or bare, `#` comments, and `include:` directives
//! expanded in place (relative to the including file, or to `directory:`
//! when one was given, nested at most [`MAX_INCLUDE_DEPTH`] deep; `*` and
//! `?` wildcards in the file name).

use std::path::{Path, PathBuf};

use signpost_rules::Location;

use super::UnboundEnvironment;
use crate::error::ConfigError;

/// How deep `include:` may nest (which also stops include loops).
pub const MAX_INCLUDE_DEPTH: usize = 8;

/// One word or quoted string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Token {
    pub(crate) text: String,
    pub(crate) at: Location,
    pub(crate) quoted: bool,
}

/// A keyword and the values after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Statement {
    /// Without the colon: `server`, `local-zone`.
    pub(crate) keyword: String,
    pub(crate) values: Vec<Token>,
    pub(crate) at: Location,
}

impl Statement {
    /// The keyword as written, for messages: `local-zone:`.
    pub(crate) fn written(&self) -> String {
        format!("{}:", self.keyword)
    }
}

/// Split text into tokens.
pub(crate) fn tokenize(text: &str, file: &Path) -> Result<Vec<Token>, ConfigError> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    let (mut line, mut column) = (1usize, 1usize);
    let advance = |c: char, line: &mut usize, column: &mut usize| {
        if c == '\n' {
            *line += 1;
            *column = 1;
        } else {
            *column += 1;
        }
    };
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            advance(c, &mut line, &mut column);
            continue;
        }
        let at = Location::in_file(file, line, column);
        if c == '#' {
            while let Some(&c) = chars.peek() {
                if c == '\n' {
                    break;
                }
                chars.next();
                advance(c, &mut line, &mut column);
            }
            continue;
        }
        if c == '"' || c == '\'' {
            chars.next();
            advance(c, &mut line, &mut column);
            let mut value = String::new();
            let mut closed = false;
            for inner in chars.by_ref() {
                advance(inner, &mut line, &mut column);
                if inner == c {
                    closed = true;
                    break;
                }
                value.push(inner);
            }
            if !closed {
                return Err(ConfigError::UnterminatedQuote { at });
            }
            tokens.push(Token { text: value, at, quoted: true });
            continue;
        }
        let mut value = String::new();
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() || ((c == '"' || c == '\'') && value.ends_with(':')) {
                break;
            }
            value.push(c);
            chars.next();
            advance(c, &mut line, &mut column);
        }
        tokens.push(Token { text: value, at, quoted: false });
    }
    Ok(tokens)
}

/// Whether a token is a `keyword:`.
fn is_keyword(token: &Token) -> bool {
    if token.quoted {
        return false;
    }
    let Some(word) = token.text.strip_suffix(':') else { return false };
    let mut chars = word.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Read a file into statements, expanding `include:` and `include-toplevel:`.
/// An `include-toplevel:` leaves a statement of that keyword (no values)
/// before the included statements, so the caller can close the clause.
pub(crate) fn read_statements(
    environment: &dyn UnboundEnvironment,
    path: &Path,
) -> Result<Vec<Statement>, ConfigError> {
    let mut out = Vec::new();
    let mut directory = None;
    read_into(environment, path, &Location::default(), 0, &mut directory, &mut out)?;
    Ok(out)
}

fn read_into(
    environment: &dyn UnboundEnvironment,
    path: &Path,
    named_at: &Location,
    depth: usize,
    directory: &mut Option<PathBuf>,
    out: &mut Vec<Statement>,
) -> Result<(), ConfigError> {
    let text =
        environment.read_to_string(path).map_err(|source| signpost_rules::Error::io(named_at.clone(), path, source))?;
    let tokens = tokenize(&text, path)?;
    let mut index = 0;
    while let Some(token) = tokens.get(index) {
        if !is_keyword(token) {
            return Err(ConfigError::Malformed {
                at: token.at.clone(),
                keyword: format!("{:?}", token.text),
                problem: "is a value without a keyword before it",
            });
        }
        let keyword = token.text.trim_end_matches(':').to_owned();
        let mut values = Vec::new();
        index += 1;
        while let Some(value) = tokens.get(index).filter(|value| !is_keyword(value)) {
            values.push(value.clone());
            index += 1;
        }
        let statement = Statement { keyword, values, at: token.at.clone() };
        match statement.keyword.as_str() {
            "include" | "include-toplevel" => {
                let [file] = statement.values.as_slice() else {
                    return Err(ConfigError::Malformed {
                        keyword: statement.written(),
                        at: statement.at,
                        problem: "takes one file name",
                    });
                };
                if depth + 1 > MAX_INCLUDE_DEPTH {
                    return Err(ConfigError::IncludeTooDeep { at: statement.at, limit: MAX_INCLUDE_DEPTH });
                }
                let base = match directory {
                    Some(directory) => directory.clone(),
                    None => crate::build::base_dir_of(path),
                };
                let pattern = base.join(&file.text);
                if statement.keyword == "include-toplevel" {
                    out.push(Statement {
                        keyword: statement.keyword.clone(),
                        values: Vec::new(),
                        at: statement.at.clone(),
                    });
                }
                for included in expand(&pattern, &statement.at)? {
                    read_into(environment, &included, &statement.at, depth + 1, directory, out)?;
                }
            }
            "directory" => {
                if let Some(value) = statement.values.first() {
                    let dir = PathBuf::from(&value.text);
                    *directory = Some(if dir.is_absolute() { dir } else { crate::build::base_dir_of(path).join(dir) });
                }
                out.push(statement);
            }
            _ => out.push(statement),
        }
    }
    Ok(())
}

/// The files a pattern names: itself, or with `*`/`?` in its file name, the
/// matching files of its directory in name order (none is not an error, as
/// with glob(7)).
fn expand(pattern: &Path, at: &Location) -> Result<Vec<PathBuf>, ConfigError> {
    let Some(name) = pattern.file_name().and_then(|name| name.to_str()) else { return Ok(vec![pattern.into()]) };
    if !name.contains(['*', '?']) {
        return Ok(vec![pattern.to_path_buf()]);
    }
    let directory = pattern.parent().unwrap_or(Path::new("."));
    let entries = match std::fs::read_dir(directory) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(signpost_rules::Error::io(at.clone(), directory, source).into());
        }
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_str().is_some_and(|file| wildcard_match(name, file)))
        .map(|entry| entry.path())
        .collect();
    found.sort();
    Ok(found)
}

/// `*` any run of characters, `?` one character (no leading dots, as glob(7)).
fn wildcard_match(pattern: &str, name: &str) -> bool {
    if name.starts_with('.') && !pattern.starts_with('.') {
        return false;
    }
    let (pattern, name): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == '?' || Some(&c) == name.get(n) => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((star_p, star_n)) => {
                    p = star_p + 1;
                    n = star_n + 1;
                    star = Some((star_p, star_n + 1));
                }
                None => return false,
            },
        }
    }
    pattern.get(p..).is_some_and(|rest| rest.iter().all(|&c| c == '*'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<(String, usize, bool)> {
        tokenize(text, Path::new("u.conf"))
            .unwrap()
            .into_iter()
            .map(|token| (token.text, token.at.line.unwrap(), token.quoted))
            .collect()
    }

    #[test]
    fn tokens_quotes_and_comments() {
        let tokens = words(
            "server: # comment\n  local-data: 'x. TXT \"a b\"'\n  forward-addr: 192.0.2.1@853#dns.example # tls\nlocal-zone:\"a.\" static\n",
        );
        assert_eq!(
            tokens,
            [
                ("server:".into(), 1, false),
                ("local-data:".into(), 2, false),
                ("x. TXT \"a b\"".into(), 2, true),
                ("forward-addr:".into(), 3, false),
                ("192.0.2.1@853#dns.example".into(), 3, false),
                ("local-zone:".into(), 4, false),
                ("a.".into(), 4, true),
                ("static".into(), 4, false),
            ]
        );
        let error = tokenize("server:\n local-data: \"open\n", Path::new("u.conf")).unwrap_err();
        assert_eq!(error.location().and_then(|at| at.line), Some(2));
    }

    #[test]
    fn keywords_are_words_ending_in_a_colon() {
        let keyword = |text: &str| is_keyword(&Token { text: text.into(), at: Location::default(), quoted: false });
        assert!(keyword("forward-zone:"));
        assert!(!keyword("fe80::"));
        assert!(!keyword("::"));
        assert!(!keyword("server"));
    }

    #[test]
    fn wildcards_match_file_names() {
        assert!(wildcard_match("*.conf", "a.conf"));
        assert!(wildcard_match("a?c*", "abcdef"));
        assert!(!wildcard_match("*.conf", "a.conf.bak"));
        assert!(!wildcard_match("*.conf", ".hidden.conf"));
        assert!(wildcard_match("*", "x"));
    }
}
