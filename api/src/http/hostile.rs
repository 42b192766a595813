//! Checks a request's text before anything recursive reads it: the GraphQL
//! parser, input coercion and the services all recurse over nesting, and a
//! few kilobytes of `[[[[…` are enough to overflow a worker thread's stack.

use async_graphql::parser::types as parser;
use serde_json::Value as Json;
use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

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

/// Where the schema expects enum values: each field's argument types and
/// output type, and each input object's field types (named types only; list
/// wrappers do not matter for this check). Built once from the SDL.
#[derive(Default)]
struct EnumPositions {
    /// (type, field) → (output type, argument → type)
    fields: HashMap<(String, String), (String, HashMap<String, String>)>,
    inputs: HashMap<String, HashMap<String, String>>,
    enums: HashSet<String>,
    roots: [String; 3],
}

fn named(ty: &parser::Type) -> String {
    match &ty.base {
        parser::BaseType::Named(n) => n.to_string(),
        parser::BaseType::List(inner) => named(inner),
    }
}

impl EnumPositions {
    fn from_sdl(sdl: &str) -> EnumPositions {
        use parser::{TypeKind, TypeSystemDefinition};
        let mut out = EnumPositions {
            roots: ["Query".into(), "Mutation".into(), "Subscription".into()],
            ..EnumPositions::default()
        };
        let Ok(doc) = async_graphql::parser::parse_schema(sdl) else {
            return out;
        };
        for def in doc.definitions {
            match def {
                TypeSystemDefinition::Schema(s) => {
                    let s = s.node;
                    for (slot, root) in [s.query, s.mutation, s.subscription]
                        .into_iter()
                        .enumerate()
                    {
                        if let Some(r) = root {
                            out.roots[slot] = r.node.to_string();
                        }
                    }
                }
                TypeSystemDefinition::Type(t) => {
                    let t = t.node;
                    let name = t.name.node.to_string();
                    let fields = match t.kind {
                        TypeKind::Object(o) => o.fields,
                        TypeKind::Interface(i) => i.fields,
                        TypeKind::Enum(_) => {
                            out.enums.insert(name);
                            continue;
                        }
                        TypeKind::InputObject(i) => {
                            let map = i
                                .fields
                                .into_iter()
                                .map(|f| (f.node.name.node.to_string(), named(&f.node.ty.node)))
                                .collect();
                            out.inputs.insert(name, map);
                            continue;
                        }
                        _ => continue,
                    };
                    for f in fields {
                        let f = f.node;
                        let args = f
                            .arguments
                            .into_iter()
                            .map(|a| (a.node.name.node.to_string(), named(&a.node.ty.node)))
                            .collect();
                        out.fields.insert(
                            (name.clone(), f.name.node.to_string()),
                            (named(&f.ty.node), args),
                        );
                    }
                }
                TypeSystemDefinition::Directive(_) => {}
            }
        }
        out
    }

    fn check_value(
        &self,
        value: &async_graphql_value::Value,
        ty: &str,
        at: &str,
    ) -> Result<(), String> {
        match value {
            async_graphql_value::Value::String(s) if self.enums.contains(ty) => Err(format!(
                "`{at}` takes a {ty} value: write {s} without quotes (strings are for variables)"
            )),
            async_graphql_value::Value::List(items) => {
                items.iter().try_for_each(|v| self.check_value(v, ty, at))
            }
            async_graphql_value::Value::Object(map) => {
                let Some(fields) = self.inputs.get(ty) else {
                    return Ok(());
                };
                map.iter()
                    .try_for_each(|(k, v)| match fields.get(k.as_str()) {
                        Some(t) => self.check_value(v, t, &format!("{at}.{k}")),
                        None => Ok(()),
                    })
            }
            _ => Ok(()),
        }
    }

    fn check_selection(
        &self,
        doc: &parser::ExecutableDocument,
        set: &parser::SelectionSet,
        parent: &str,
        seen: &mut HashSet<String>,
    ) -> Result<(), String> {
        for item in &set.items {
            match &item.node {
                parser::Selection::Field(f) => {
                    let f = &f.node;
                    let key = (parent.to_owned(), f.name.node.to_string());
                    let Some((output, args)) = self.fields.get(&key) else {
                        continue;
                    };
                    for (name, value) in &f.arguments {
                        if let Some(ty) = args.get(name.node.as_str()) {
                            self.check_value(&value.node, ty, name.node.as_str())?;
                        }
                    }
                    self.check_selection(doc, &f.selection_set.node, output, seen)?;
                }
                parser::Selection::InlineFragment(frag) => {
                    let frag = &frag.node;
                    let on = frag
                        .type_condition
                        .as_ref()
                        .map(|t| t.node.on.node.to_string())
                        .unwrap_or_else(|| parent.to_owned());
                    self.check_selection(doc, &frag.selection_set.node, &on, seen)?;
                }
                parser::Selection::FragmentSpread(spread) => {
                    let name = spread.node.fragment_name.node.to_string();
                    if !seen.insert(name.clone()) {
                        continue;
                    }
                    if let Some(def) = doc.fragments.get(spread.node.fragment_name.node.as_str()) {
                        let on = def.node.type_condition.node.on.node.to_string();
                        self.check_selection(doc, &def.node.selection_set.node, &on, seen)?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// An enum written as a string literal in the document (`stage: "MQL"`) is
/// a validation error, as the GraphQL specification says; in variables a
/// string is how an enum is written, and stays right.
pub fn enum_as_string(doc: &parser::ExecutableDocument) -> Option<String> {
    static POSITIONS: OnceLock<EnumPositions> = OnceLock::new();
    let positions = POSITIONS.get_or_init(|| EnumPositions::from_sdl(&crate::graphql::sdl()));
    for (_, op) in doc.operations.iter() {
        let root = match op.node.ty {
            parser::OperationType::Query => &positions.roots[0],
            parser::OperationType::Mutation => &positions.roots[1],
            parser::OperationType::Subscription => &positions.roots[2],
        };
        let mut seen = HashSet::new();
        if let Err(e) = positions.check_selection(doc, &op.node.selection_set.node, root, &mut seen)
        {
            return Some(e);
        }
    }
    None
}
