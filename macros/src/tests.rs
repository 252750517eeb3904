//! The expansion of the trait the crate's docs show, against a committed snapshot
//! (`snapshots/calculator.expanded.rs`), and the docs' outline against that expansion.
//!
//! After changing what the macros generate, rewrite the snapshot and review its diff:
//!
//! ```text
//! UPDATE_SNAPSHOTS=1 cargo test -p amqp-rpc-macros
//! git diff macros/snapshots
//! ```
#![allow(clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::PathBuf;

use proc_macro2::TokenStream;
use syn::{ImplItem, Item, TraitItem};

use crate::ast::{CLIENT_METHODS, Role};

/// The crate's documentation, as its source holds it.
const LIB_RS: &str = include_str!("lib.rs");

/// The first ```` ```text ```` block of the crate-level docs after the line containing
/// `after`.
fn doc_block(after: &str) -> String {
    let docs: Vec<&str> = LIB_RS
        .lines()
        .filter_map(|line| line.strip_prefix("//!"))
        .map(|line| line.strip_prefix(' ').unwrap_or(line))
        .collect();
    let start = docs
        .iter()
        .position(|line| line.contains(after))
        .unwrap_or_else(|| panic!("no line containing {after:?} in the crate docs"));
    let open = start
        + docs[start..]
            .iter()
            .position(|line| *line == "```text")
            .unwrap_or_else(|| panic!("no text block after {after:?}"));
    docs[open + 1..]
        .iter()
        .take_while(|line| **line != "```")
        .map(|line| format!("{line}\n"))
        .collect()
}

/// Expands an item carrying `#[rpc_endpoint(...)]` or `#[rpc_client(...)]` (as its first
/// attribute) as the compiler would call the macro.
fn expand(source: &str) -> syn::File {
    let mut item: syn::ItemTrait = syn::parse_str(source).expect("the example is a trait");
    let attr = item.attrs.remove(0);
    let role = match attr.path().segments.last().map(|s| s.ident.to_string()) {
        Some(name) if name == "rpc_endpoint" => Role::Endpoint,
        Some(name) if name == "rpc_client" => Role::Client,
        other => panic!("not an RPC macro: {other:?}"),
    };
    let args = match &attr.meta {
        syn::Meta::List(list) => list.tokens.clone(),
        _ => TokenStream::new(),
    };
    let output = crate::expand::run(role, args, quote::quote!(#item));
    let text = output.to_string();
    assert!(
        !text.contains("compile_error"),
        "the example does not expand cleanly: {text}"
    );
    syn::parse2(output).expect("the expansion parses as a file")
}

#[test]
fn expansion_of_the_documented_trait_matches_the_snapshot() {
    let expanded = prettyplease::unparse(&expand(&doc_block("For this trait:")));
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("snapshots/calculator.expanded.rs");
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, &expanded).expect("the snapshot is written");
        return;
    }
    let snapshot = std::fs::read_to_string(&path).unwrap_or_default();
    if snapshot != expanded {
        let line = snapshot
            .lines()
            .zip(expanded.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| snapshot.lines().count().min(expanded.lines().count()));
        panic!(
            "the expansion differs from {} from line {} on:\n  snapshot: {:?}\n  expansion: {:?}\n\
             If the change is meant, run UPDATE_SNAPSHOTS=1 cargo test -p amqp-rpc-macros and \
             review the snapshot's diff.",
            path.display(),
            line + 1,
            snapshot.lines().nth(line),
            expanded.lines().nth(line),
        );
    }
}

/// What an item of the outline or the expansion is called: `trait Calculator::add`,
/// `struct CalculatorCast`, `impl Endpoint for CalculatorEndpoint::dispatch`,
/// `impl Endpoint for CalculatorEndpoint #[async_trait]`, `struct CalculatorClient derive Clone`.
type Names = BTreeSet<String>;

/// The last segment of a path, as text.
fn last(path: &syn::Path) -> String {
    path.segments
        .last()
        .map(|s| s.ident.to_string())
        .unwrap_or_default()
}

/// The names of the attributes and derives that the outline shows.
fn attr_names(attrs: &[syn::Attribute], names: &mut Vec<String>) {
    for attr in attrs {
        let name = last(attr.path());
        match name.as_str() {
            "doc" | "allow" => {}
            "derive" => {
                let derived = attr
                    .parse_args_with(
                        syn::punctuated::Punctuated::<syn::Path, syn::Token![,]>::parse_terminated,
                    )
                    .expect("a derive lists paths");
                names.extend(derived.iter().map(|p| format!("derive {}", last(p))));
            }
            _ => names.push(format!("#[{name}]")),
        }
    }
}

/// The items of the expansion: traits, structs and impls (also in `const _` blocks), with
/// their associated items. Functions and imports are the expansion's private helpers.
fn expansion_names(items: &[Item], names: &mut Names) {
    for item in items {
        match item {
            Item::Trait(t) => {
                let name = format!("trait {}", t.ident);
                for inner in &t.items {
                    if let TraitItem::Fn(f) = inner {
                        names.insert(format!("{name}::{}", f.sig.ident));
                    }
                }
                names.insert(name);
            }
            Item::Struct(s) => {
                let name = format!("struct {}", s.ident);
                let mut attrs = Vec::new();
                attr_names(&s.attrs, &mut attrs);
                names.extend(attrs.iter().map(|a| format!("{name} {a}")));
                names.insert(name);
            }
            Item::Impl(i) => {
                let syn::Type::Path(ty) = i.self_ty.as_ref() else {
                    panic!("an impl of a type that is not a path");
                };
                let name = match &i.trait_ {
                    Some((path, _)) => format!("impl {} for {}", last(path), last(&ty.path)),
                    None => format!("impl {}", last(&ty.path)),
                };
                let mut attrs = Vec::new();
                attr_names(&i.attrs, &mut attrs);
                names.extend(attrs.iter().map(|a| format!("{name} {a}")));
                for inner in &i.items {
                    match inner {
                        ImplItem::Fn(f) => names.insert(format!("{name}::{}", f.sig.ident)),
                        ImplItem::Const(c) => names.insert(format!("{name}::{}", c.ident)),
                        _ => panic!("an impl item the outline cannot show"),
                    };
                }
                names.insert(name);
            }
            Item::Const(c) => {
                if let syn::Expr::Block(block) = c.expr.as_ref() {
                    let inner: Vec<Item> = block
                        .block
                        .stmts
                        .iter()
                        .filter_map(|stmt| match stmt {
                            syn::Stmt::Item(item) => Some(item.clone()),
                            _ => None,
                        })
                        .collect();
                    expansion_names(&inner, names);
                }
            }
            _ => {}
        }
    }
}

/// The identifier at the start of `text`.
fn ident_at(text: &str) -> String {
    text.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// The items the outline names, read line by line: items start at column 0 and end with a
/// `}` there; their associated items (`fn`, `async fn`, `const`, `pub` or not) are at column 4.
fn outline_names(outline: &str) -> Names {
    let mut names = Names::new();
    let mut container: Option<String> = None;
    let mut attrs: Vec<String> = Vec::new();
    for line in outline.lines() {
        if let Some(body) = line.strip_prefix("    ")
            && !body.starts_with(' ')
        {
            let body = body.strip_prefix("pub ").unwrap_or(body);
            let body = body.strip_prefix("async ").unwrap_or(body);
            let ident = match (body.strip_prefix("fn "), body.strip_prefix("const ")) {
                (Some(rest), _) | (_, Some(rest)) => ident_at(rest),
                _ => continue,
            };
            let container = container
                .as_ref()
                .expect("an associated item outside an item");
            names.insert(format!("{container}::{ident}"));
            continue;
        }
        if line.starts_with('}') {
            container = None;
        } else if let Some(attr) = line.strip_prefix("#[") {
            let attr = attr.trim_end_matches(']');
            match attr.strip_prefix("derive(") {
                Some(derived) => attrs.extend(
                    derived
                        .trim_end_matches(')')
                        .split(", ")
                        .map(|d| format!("derive {d}")),
                ),
                None => attrs.push(format!("#[{attr}]")),
            }
        } else if let Some(rest) = line.strip_prefix("pub trait ") {
            let name = format!("trait {}", ident_at(rest));
            names.insert(name.clone());
            container = Some(name);
            attrs.clear();
        } else if let Some(rest) = line.strip_prefix("pub struct ") {
            let name = format!("struct {}", ident_at(rest));
            names.extend(attrs.drain(..).map(|a| format!("{name} {a}")));
            names.insert(name);
        } else if let Some(rest) = line.strip_prefix("impl") {
            // Skip the impl's generics, `<...>`, nested or not.
            let mut depth = 0;
            let start = rest
                .char_indices()
                .find(|&(_, c)| {
                    match c {
                        '<' => depth += 1,
                        '>' => depth -= 1,
                        _ => {}
                    }
                    depth == 0 && c == ' '
                })
                .map_or(rest.len(), |(i, _)| i + 1);
            let rest = &rest[start..];
            let name = match rest.split_once(" for ") {
                Some((tr, ty)) => format!("impl {} for {}", ident_at(tr), ident_at(ty)),
                None => format!("impl {}", ident_at(rest)),
            };
            names.extend(attrs.drain(..).map(|a| format!("{name} {a}")));
            names.insert(name.clone());
            container = Some(name);
        }
    }
    names
}

#[test]
fn outline_in_the_crate_docs_names_the_items_of_the_expansion() {
    let mut expanded = Names::new();
    expansion_names(&expand(&doc_block("For this trait:")).items, &mut expanded);
    let outline = outline_names(&doc_block("the expansion is, in outline"));
    let missing: Vec<&String> = expanded.difference(&outline).collect();
    let extra: Vec<&String> = outline.difference(&expanded).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "the outline in lib.rs lacks {missing:#?}\nand names what is not generated: {extra:#?}"
    );
}

#[test]
fn client_methods_list_the_generated_clients_inherent_items() {
    let file = expand("#[amqp_rpc::rpc_client] pub trait Empty {}");
    let mut names = Names::new();
    expansion_names(&file.items, &mut names);
    let generated: BTreeSet<&str> = names
        .iter()
        .filter_map(|name| name.strip_prefix("impl EmptyClient::"))
        .collect();
    let listed: BTreeSet<&str> = CLIENT_METHODS.iter().copied().collect();
    assert_eq!(generated, listed, "ast::CLIENT_METHODS is out of date");
}
