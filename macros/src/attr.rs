//! Arguments of `#[rpc_endpoint(...)]`, `#[rpc_client(...)]` and `#[rpc(...)]`, checked against
//! an allow-list, and RPC version literals validated at compile time.

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::{Expr, ExprLit, Lit, LitStr, Meta, Token};

use crate::errors::Errors;

/// A `"MAJOR.MINOR[.REVISION]"` literal.
#[derive(Clone)]
pub(crate) struct VersionLit {
    pub(crate) major: u64,
    pub(crate) minor: u64,
    pub(crate) revision: Option<u64>,
    pub(crate) span: Span,
}

impl VersionLit {
    pub(crate) fn new(major: u64, minor: u64, span: Span) -> Self {
        VersionLit {
            major,
            minor,
            revision: None,
            span,
        }
    }

    fn parse(lit: &LitStr) -> syn::Result<Self> {
        let text = lit.value();
        let bad = || {
            syn::Error::new(
                lit.span(),
                format!(
                    "malformed version \"{text}\": expected \"MAJOR.MINOR\" or \"MAJOR.MINOR.REVISION\""
                ),
            )
        };
        let part = |p: &str| -> syn::Result<u64> {
            match !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) {
                true => p.parse().map_err(|_| bad()),
                false => Err(bad()),
            }
        };
        let parts: Vec<&str> = text.split('.').collect();
        let (major, minor, revision) = match parts.as_slice() {
            [a, b] => (part(a)?, part(b)?, None),
            [a, b, c] => (part(a)?, part(b)?, Some(part(c)?)),
            _ => return Err(bad()),
        };
        Ok(VersionLit {
            major,
            minor,
            revision,
            span: lit.span(),
        })
    }

    /// oslo's rule: an implementation of `self` serves a request for `requested`.
    pub(crate) fn serves(&self, requested: &VersionLit) -> bool {
        let rev = |v: &VersionLit| v.revision.unwrap_or(0);
        requested.major == self.major
            && (requested.minor < self.minor
                || (requested.minor == self.minor && rev(requested) <= rev(self)))
    }

    /// The runtime `Version` constant.
    pub(crate) fn to_tokens(&self, private: &TokenStream) -> TokenStream {
        let (major, minor) = (self.major, self.minor);
        match self.revision {
            None => quote!(#private::Version::new(#major, #minor)),
            Some(revision) => quote!(#private::Version::with_revision(#major, #minor, #revision)),
        }
    }
}

impl std::fmt::Display for VersionLit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)?;
        match self.revision {
            Some(revision) => write!(f, ".{revision}"),
            None => Ok(()),
        }
    }
}

/// Arguments of the trait attributes.
#[derive(Default)]
pub(crate) struct TraitArgs {
    pub(crate) namespace: Option<LitStr>,
    pub(crate) version: Option<VersionLit>,
    /// A `version` was given but is not valid (and has been reported).
    pub(crate) version_invalid: bool,
    pub(crate) krate: Option<syn::Path>,
}

/// Arguments of a method's `#[rpc(...)]`.
#[derive(Default)]
pub(crate) struct MethodArgs {
    pub(crate) cast: Option<Span>,
    pub(crate) since: Option<VersionLit>,
    pub(crate) name: Option<LitStr>,
}

const TRAIT_KEYS: &str = "`namespace`, `version`, `crate`";
const METHOD_KEYS: &str = "`cast`, `since`, `name`";

/// Parses `key = "value", flag, ...`, reporting every problem.
pub(crate) fn metas(tokens: TokenStream, errors: &mut Errors) -> Vec<Meta> {
    match Punctuated::<Meta, Token![,]>::parse_terminated.parse2(tokens) {
        Ok(list) => list.into_iter().collect(),
        Err(e) => {
            errors.push(e);
            Vec::new()
        }
    }
}

pub(crate) fn key_of(meta: &Meta) -> String {
    meta.path()
        .get_ident()
        .map(ToString::to_string)
        .unwrap_or_else(|| quote!(#meta).to_string())
}

pub(crate) fn string_value(meta: &Meta, errors: &mut Errors) -> Option<LitStr> {
    match meta {
        Meta::NameValue(nv) => match &nv.value {
            Expr::Lit(ExprLit {
                lit: Lit::Str(s), ..
            }) => Some(s.clone()),
            other => {
                errors.at(other, format!("`{}` takes a string literal", key_of(meta)));
                None
            }
        },
        _ => {
            errors.at(
                meta,
                format!(
                    "`{}` takes a value: `{} = \"...\"`",
                    key_of(meta),
                    key_of(meta)
                ),
            );
            None
        }
    }
}

/// Stores `value` in `slot` unless it is already set.
pub(crate) fn once<T>(slot: &mut Option<T>, value: Option<T>, meta: &Meta, errors: &mut Errors) {
    if slot.is_some() {
        errors.at(
            meta.path(),
            format!("duplicate argument `{}`", key_of(meta)),
        );
    } else {
        *slot = value;
    }
}

fn version(meta: &Meta, errors: &mut Errors) -> Option<VersionLit> {
    let lit = string_value(meta, errors)?;
    VersionLit::parse(&lit).map_err(|e| errors.push(e)).ok()
}

pub(crate) fn parse_trait_args(tokens: TokenStream, errors: &mut Errors) -> TraitArgs {
    let mut args = TraitArgs::default();
    for meta in metas(tokens, errors) {
        match key_of(&meta).as_str() {
            "namespace" => {
                let value = string_value(&meta, errors);
                once(&mut args.namespace, value, &meta, errors);
            }
            "version" => {
                let value = version(&meta, errors);
                args.version_invalid |= value.is_none();
                once(&mut args.version, value, &meta, errors);
            }
            "crate" => {
                let value = string_value(&meta, errors).and_then(|lit| crate_path(&lit, errors));
                once(&mut args.krate, value, &meta, errors);
            }
            key => errors.at(
                meta.path(),
                format!("unknown argument `{key}`, expected one of: {TRAIT_KEYS}"),
            ),
        }
    }
    args
}

pub(crate) fn crate_path(lit: &LitStr, errors: &mut Errors) -> Option<syn::Path> {
    match lit.parse::<syn::Path>() {
        Ok(path) => Some(path),
        Err(_) => {
            errors.at(
                lit,
                format!(
                    "`crate` takes the path by which this crate names amqp-rpc, such as \
                     \"amqp_rpc\" or \"::renamed_rpc\"; \"{}\" is not a path",
                    lit.value()
                ),
            );
            None
        }
    }
}

pub(crate) fn parse_method_args(tokens: TokenStream, errors: &mut Errors) -> MethodArgs {
    let mut args = MethodArgs::default();
    for meta in metas(tokens, errors) {
        match key_of(&meta).as_str() {
            "cast" => match &meta {
                Meta::Path(path) => once(&mut args.cast, Some(path.span_of_ident()), &meta, errors),
                _ => errors.at(&meta, "`cast` takes no value: `#[rpc(cast)]`"),
            },
            "since" => {
                let value = version(&meta, errors);
                once(&mut args.since, value, &meta, errors);
            }
            "name" => {
                let value = string_value(&meta, errors);
                once(&mut args.name, value, &meta, errors);
            }
            key => errors.at(
                meta.path(),
                format!("unknown argument `{key}`, expected one of: {METHOD_KEYS}"),
            ),
        }
    }
    args
}

trait SpanOfIdent {
    fn span_of_ident(&self) -> Span;
}

impl SpanOfIdent for syn::Path {
    fn span_of_ident(&self) -> Span {
        self.segments
            .last()
            .map_or_else(Span::call_site, |s| s.ident.span())
    }
}
