//! Checks a request's text before anything recursive reads it: the GraphQL
//! parser, input coercion and the services all recurse over nesting, and a
//! few kilobytes of `[[[[…` are enough to overflow a worker thread's stack.

use serde_json::Value as Json;

/// The deepest nesting of brackets a document or its variables may have.
/// Real queries stay far below (the selection depth limit is lower still);
/// thousands of levels are an attack.
pub const MAX_NESTING: usize = 64;

/// How deeply `(`, `[` and `{` nest in a GraphQL document, outside string
/// literals and comments. Iterative: it cannot itself overflow.
pub fn document_depth(text: &str) -> usize {
    let bytes = text.as_bytes();
    let (mut depth, mut max, mut i) = (0usize, 0usize, 0usize);
    while i < bytes.len() {
        match bytes[i] {
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' && bytes[i] != b'\r' {
                    i += 1;
                }
            }
            b'"' if bytes[i..].starts_with(b"\"\"\"") => {
                // A block string ends at the next unescaped `"""`.
                i += 3;
                while i < bytes.len() && !bytes[i..].starts_with(b"\"\"\"") {
                    i += if bytes[i..].starts_with(b"\\\"\"\"") {
                        4
                    } else {
                        1
                    };
                }
                i += 2;
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'(' | b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    max
}

/// How deeply arrays and objects nest in a JSON value. Iterative.
pub fn json_depth(value: &Json) -> usize {
    let mut max = 0;
    let mut stack = vec![(value, 0usize)];
    while let Some((v, d)) = stack.pop() {
        match v {
            Json::Array(items) => {
                max = max.max(d + 1);
                stack.extend(items.iter().map(|x| (x, d + 1)));
            }
            Json::Object(map) => {
                max = max.max(d + 1);
                stack.extend(map.values().map(|x| (x, d + 1)));
            }
            _ => {}
        }
    }
    max
}

/// Why a request is refused before it is parsed, if it is.
pub fn refuse(query: &str, variables: Option<&serde_json::Map<String, Json>>) -> Option<String> {
    if document_depth(query) > MAX_NESTING {
        return Some(format!(
            "the document nests deeper than {MAX_NESTING} levels"
        ));
    }
    if let Some(vars) = variables {
        for (name, value) in vars {
            if json_depth(value) > MAX_NESTING {
                return Some(format!(
                    "variable `{name}` nests deeper than {MAX_NESTING} levels"
                ));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_nesting_outside_strings_and_comments() {
        assert_eq!(document_depth("{ a { b(x: [1, [2]]) } }"), 5);
        assert_eq!(document_depth(r#"{ a(s: "((((((") }"#), 2);
        assert_eq!(document_depth("{ a } # [[[[[[[[\n"), 1);
        assert_eq!(document_depth(r#"{ a(s: """ [[[ \""" [[ """) }"#), 2);
        let deep = format!(
            "{{ leads(filter: {{id: {}1{}}}) {{ totalCount }} }}",
            "[".repeat(1600),
            "]".repeat(1600)
        );
        assert!(document_depth(&deep) > 1600);
        assert!(refuse(&deep, None).is_some());
    }

    #[test]
    fn measures_json_nesting() {
        let mut v = Json::from(1);
        for _ in 0..100 {
            v = Json::Array(vec![v]);
        }
        assert_eq!(json_depth(&v), 100);
        let vars = serde_json::Map::from_iter([("f".to_owned(), v)]);
        assert!(refuse("{ a }", Some(&vars)).is_some());
        assert!(refuse("{ a }", None).is_none());
    }
}
