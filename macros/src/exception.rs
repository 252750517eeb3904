//! `#[derive(RemoteException)]`: the type as a model of its cases (the struct, or each variant)
//! with their Python module, class and fields, every check made while building it, and the
//! impl of the runtime's `RemoteException` trait. Invalid input expands to a stub impl next to
//! the errors, so that the type's uses in RPC traits add no errors of their own.

use std::collections::HashMap;

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Attribute, Data, DeriveInput, Fields, Ident, LitStr, Meta, Type};

use crate::attr;
use crate::errors::Errors;

/// Python's module of built-in exceptions, whose classes take no keyword arguments.
const BUILTINS: &str = "builtins";

pub(crate) fn derive(input: TokenStream) -> TokenStream {
    let input: DeriveInput = match syn::parse2(input) {
        Ok(input) => input,
        Err(e) => return e.to_compile_error(),
    };
    let mut errors = Errors::default();
    let exception = Exception::parse(&input, &mut errors);
    match errors.into_error() {
        None => exception.expand(),
        Some(error) => {
            let mut out = exception.stub();
            out.extend(error.to_compile_error());
            out
        }
    }
}

struct Exception<'a> {
    input: &'a DeriveInput,
    krate: syn::Path,
    cases: Vec<Case<'a>>,
    /// A struct: its one case is `Self`, not a variant.
    is_struct: bool,
}

/// The struct, or one variant.
struct Case<'a> {
    ident: &'a Ident,
    module: String,
    class: String,
    fields: CaseFields<'a>,
}

enum CaseFields<'a> {
    Unit,
    /// Keyword arguments, by name.
    Named(Vec<(String, &'a Ident, &'a Type)>),
    /// Positional arguments, in order.
    Tuple(Vec<&'a Type>),
}

/// The `#[remote(...)]` arguments of the type or of a variant.
#[derive(Default)]
struct RemoteArgs {
    module: Option<LitStr>,
    /// A `module` was given, valid or not (an invalid one has been reported).
    module_given: bool,
    class: Option<LitStr>,
    krate: Option<syn::Path>,
}

/// Where a `#[remote(...)]` is.
#[derive(Clone, Copy, PartialEq)]
enum Place {
    Struct,
    Enum,
    Variant,
}

impl Place {
    fn keys(self) -> &'static str {
        match self {
            Place::Struct => "`module`, `class`, `crate`",
            Place::Enum => "`module`, `crate`",
            Place::Variant => "`module`, `class`",
        }
    }
}

impl<'a> Exception<'a> {
    fn parse(input: &'a DeriveInput, errors: &mut Errors) -> Self {
        let place = match &input.data {
            Data::Enum(_) => Place::Enum,
            _ => Place::Struct,
        };
        let own = parse_args(&input.attrs, place, errors);
        let krate = own
            .krate
            .clone()
            .unwrap_or_else(|| syn::parse_quote!(::amqp_rpc));
        let mut cases = Vec::new();
        match &input.data {
            Data::Struct(data) => {
                cases.push(Case::parse(&input.ident, &data.fields, &own, &own, errors));
            }
            Data::Enum(data) => {
                for variant in &data.variants {
                    let args = parse_args(&variant.attrs, Place::Variant, errors);
                    cases.push(Case::parse(
                        &variant.ident,
                        &variant.fields,
                        &own,
                        &args,
                        errors,
                    ));
                }
            }
            Data::Union(data) => errors.at(
                data.union_token,
                "#[derive(RemoteException)] applies to a struct or an enum",
            ),
        }
        check_distinct(&cases, errors);
        Exception {
            input,
            krate,
            cases,
            is_struct: place == Place::Struct,
        }
    }

    fn expand(&self) -> TokenStream {
        let krate = &self.krate;
        let private = quote!(#krate::__private_v1);
        let arms = self
            .cases
            .iter()
            .map(|case| self.encode_arm(case, &private));
        let decoders = self.cases.iter().map(|case| self.decoder(case, &private));
        let mut generics = self.input.generics.clone();
        if !generics.params.is_empty() {
            // Each field of a generic type must cross the wire, whatever the parameters.
            let predicates = &mut generics.make_where_clause().predicates;
            for ty in self.cases.iter().flat_map(Case::types) {
                predicates.push(syn::parse_quote_spanned! {ty.span()=>
                    #ty: #private::serde::Serialize + #private::serde::de::DeserializeOwned
                });
            }
        }
        let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
        let ident = &self.input.ident;
        quote! {
            impl #impl_generics #krate::RemoteException for #ident #ty_generics #where_clause {
                fn to_remote(
                    &self,
                ) -> ::core::result::Result<#krate::RemoteError, #krate::RpcError> {
                    match self {
                        #(#arms)*
                    }
                }

                fn from_remote(
                    __remote: &#krate::RemoteError,
                ) -> ::core::option::Option<::core::result::Result<Self, #krate::RpcError>> {
                    #(#decoders)*
                    ::core::option::Option::None
                }
            }
        }
    }

    /// The impl when the input is invalid: the errors explain it.
    fn stub(&self) -> TokenStream {
        if matches!(self.input.data, Data::Union(_)) {
            return TokenStream::new();
        }
        let krate = &self.krate;
        let ident = &self.input.ident;
        let (impl_generics, ty_generics, where_clause) = self.input.generics.split_for_impl();
        quote! {
            impl #impl_generics #krate::RemoteException for #ident #ty_generics #where_clause {
                fn to_remote(
                    &self,
                ) -> ::core::result::Result<#krate::RemoteError, #krate::RpcError> {
                    ::core::unimplemented!()
                }

                fn from_remote(
                    _: &#krate::RemoteError,
                ) -> ::core::option::Option<::core::result::Result<Self, #krate::RpcError>> {
                    ::core::unimplemented!()
                }
            }
        }
    }

    /// `Self::Variant` (or `Self` for a struct).
    fn path(&self, case: &Case<'_>) -> TokenStream {
        let ident = case.ident;
        match self.is_struct {
            true => quote!(Self),
            false => quote!(Self::#ident),
        }
    }

    /// What the error is called in encoding errors: `Type::Variant` (or `Type`).
    fn rust_name(&self, case: &Case<'_>) -> String {
        match self.is_struct {
            true => case.ident.unraw().to_string(),
            false => format!("{}::{}", self.input.ident.unraw(), case.ident.unraw()),
        }
    }

    /// The `match self` arm building the case's failure.
    fn encode_arm(&self, case: &Case<'_>, private: &TokenStream) -> TokenStream {
        let path = self.path(case);
        let (module, class) = (&case.module, &case.class);
        let support = quote!(#private::exception);
        let encode = |binding: &Ident, ty: &Type, what: String| quote_spanned!(ty.span()=> #support::encode::<#ty>(#binding, #what)?);
        let rust = self.rust_name(case);
        let (pattern, failure) = match &case.fields {
            CaseFields::Unit => (
                quote!(#path { .. }),
                quote!(#support::with_kwargs(self, #module, #class, [])),
            ),
            CaseFields::Named(fields) => {
                let idents = fields.iter().map(|(_, ident, _)| ident);
                let bindings: Vec<Ident> = (0..fields.len()).map(binding).collect();
                let kwargs = fields.iter().zip(&bindings).map(|((key, _, ty), b)| {
                    let value = encode(b, ty, format!("field `{key}` of {rust}"));
                    quote!((#key, #value))
                });
                (
                    quote!(#path { #(#idents: #bindings),* }),
                    quote!(#support::with_kwargs(self, #module, #class, [#(#kwargs),*])),
                )
            }
            CaseFields::Tuple(types) => {
                let bindings: Vec<Ident> = (0..types.len()).map(binding).collect();
                let args = types
                    .iter()
                    .zip(&bindings)
                    .enumerate()
                    .map(|(i, (ty, b))| encode(b, ty, format!("field {i} of {rust}")));
                (
                    quote!(#path(#(#bindings),*)),
                    quote!(#support::with_args(self, #module, #class, [#(#args),*])),
                )
            }
        };
        quote! {
            #pattern => ::core::result::Result::Ok(#failure),
        }
    }

    /// Returns the case decoded from `__remote` if `__remote` is of its class.
    fn decoder(&self, case: &Case<'_>, private: &TokenStream) -> TokenStream {
        let path = self.path(case);
        let (module, class) = (&case.module, &case.class);
        let support = quote!(#private::exception);
        let value = match &case.fields {
            CaseFields::Unit => quote!(#path {}),
            CaseFields::Named(fields) => {
                let fields = fields.iter().map(|(key, ident, ty)| {
                    let what = format!("keyword argument `{key}` of {module}.{class}");
                    let take =
                        quote_spanned!(ty.span()=> #support::kwarg::<#ty>(__remote, #key, #what)?);
                    quote!(#ident: #take)
                });
                quote!(#path { #(#fields),* })
            }
            CaseFields::Tuple(types) => {
                let fields = types.iter().enumerate().map(|(i, ty)| {
                    let what = format!("argument {i} of {module}.{class}");
                    quote_spanned!(ty.span()=> #support::arg::<#ty>(__remote, #i, #what)?)
                });
                quote!(#path(#(#fields),*))
            }
        };
        quote! {
            if #support::is(__remote, #module, #class) {
                return #support::decode(__remote, |__remote| ::core::result::Result::Ok(#value));
            }
        }
    }
}

fn binding(index: usize) -> Ident {
    format_ident!("__field{index}")
}

impl<'a> Case<'a> {
    /// The case `ident` with `fields`; its module and class from `own` (a variant's arguments,
    /// or the struct's), the module else from `outer` (the enum's).
    fn parse(
        ident: &'a Ident,
        fields: &'a Fields,
        outer: &RemoteArgs,
        own: &RemoteArgs,
        errors: &mut Errors,
    ) -> Self {
        let module = match own.module.as_ref().or(outer.module.as_ref()) {
            Some(lit) => lit.value(),
            None if own.module_given || outer.module_given => String::new(),
            None => {
                errors.at(
                    ident,
                    format!(
                        "missing Python module of `{ident}`: add `#[remote(module = \"...\")]` \
                         to it or to the type"
                    ),
                );
                String::new()
            }
        };
        let class = own
            .class
            .as_ref()
            .map_or_else(|| ident.unraw().to_string(), LitStr::value);
        for field in fields {
            if let Some(attr) = field.attrs.iter().find(|a| a.path().is_ident("remote")) {
                errors.at(
                    attr,
                    "`#[remote]` does not apply to a field: named fields are the exception's \
                     keyword arguments, tuple fields its positional arguments",
                );
            }
        }
        let fields = match fields {
            Fields::Named(named) if !named.named.is_empty() => {
                if module == BUILTINS {
                    errors.at(
                        named,
                        format!(
                            "Python's built-in exceptions take no keyword arguments, so \
                             `builtins.{class}` cannot have named fields: make them tuple \
                             fields, which are its positional arguments"
                        ),
                    );
                }
                CaseFields::Named(
                    named
                        .named
                        .iter()
                        .filter_map(|f| {
                            let ident = f.ident.as_ref()?;
                            Some((ident.unraw().to_string(), ident, &f.ty))
                        })
                        .collect(),
                )
            }
            Fields::Unnamed(tuple) if !tuple.unnamed.is_empty() => {
                CaseFields::Tuple(tuple.unnamed.iter().map(|f| &f.ty).collect())
            }
            _ => CaseFields::Unit,
        };
        Case {
            ident,
            module,
            class,
            fields,
        }
    }

    fn types(&self) -> Vec<&'a Type> {
        match &self.fields {
            CaseFields::Unit => Vec::new(),
            CaseFields::Named(fields) => fields.iter().map(|(_, _, ty)| *ty).collect(),
            CaseFields::Tuple(types) => types.clone(),
        }
    }
}

/// A caller tells the cases apart by module and class only.
fn check_distinct(cases: &[Case<'_>], errors: &mut Errors) {
    let mut seen: HashMap<(&str, &str), &Ident> = HashMap::new();
    for case in cases.iter().filter(|c| !c.module.is_empty()) {
        if let Some(first) = seen.insert((&case.module, &case.class), case.ident) {
            errors.at(
                case.ident,
                format!(
                    "`{first}` and `{}` are both `{}.{}`: a caller could not tell them apart; \
                     give one another `class`",
                    case.ident, case.module, case.class
                ),
            );
        }
    }
}

/// The `#[remote(...)]` arguments among `attrs`.
fn parse_args(attrs: &[Attribute], place: Place, errors: &mut Errors) -> RemoteArgs {
    let mut args = RemoteArgs::default();
    for attr in attrs.iter().filter(|a| a.path().is_ident("remote")) {
        let tokens = match &attr.meta {
            Meta::List(list) => list.tokens.clone(),
            other => {
                errors.at(
                    other,
                    format!("expected `#[remote(...)]` with one of: {}", place.keys()),
                );
                continue;
            }
        };
        for meta in attr::metas(tokens, errors) {
            match (attr::key_of(&meta).as_str(), place) {
                ("module", _) => {
                    args.module_given = true;
                    let value = attr::string_value(&meta, errors);
                    if let Some(lit) = &value {
                        check_python_name(lit, true, errors);
                    }
                    attr::once(&mut args.module, value, &meta, errors);
                }
                ("class", Place::Enum) => errors.at(
                    meta.path(),
                    "`class` names one exception: give it on each variant, \
                     `#[remote(class = \"...\")]`",
                ),
                ("class", _) => {
                    let value = attr::string_value(&meta, errors);
                    if let Some(lit) = &value {
                        check_python_name(lit, false, errors);
                    }
                    attr::once(&mut args.class, value, &meta, errors);
                }
                ("crate", Place::Struct | Place::Enum) => {
                    let value = attr::string_value(&meta, errors)
                        .and_then(|lit| attr::crate_path(&lit, errors));
                    attr::once(&mut args.krate, value, &meta, errors);
                }
                (key, _) => errors.at(
                    meta.path(),
                    format!(
                        "unknown argument `{key}`, expected one of: {}",
                        place.keys()
                    ),
                ),
            }
        }
    }
    args
}

/// Reports `lit` unless it is a Python identifier (a dotted path of them if `dotted`).
fn check_python_name(lit: &LitStr, dotted: bool, errors: &mut Errors) {
    let text = lit.value();
    let identifier = |part: &str| {
        let mut chars = part.chars();
        chars.next().is_some_and(|c| c == '_' || c.is_alphabetic())
            && chars.all(|c| c == '_' || c.is_alphanumeric())
    };
    let valid = match dotted {
        true => text.split('.').all(identifier),
        false => identifier(&text),
    };
    if !valid {
        let expected = match dotted {
            true => "a Python module, such as \"nova.exception\" or \"builtins\"",
            false => "a Python class name, such as \"InstanceNotFound\"",
        };
        errors.push(syn::Error::new(
            lit.span(),
            format!("\"{text}\" is not {expected}"),
        ));
    }
}
