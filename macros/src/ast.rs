//! The RPC trait as a model: its arguments, its methods with their wire names, parameters and
//! outputs. Building it performs every semantic check, recording errors and carrying on, so that
//! one expansion reports all problems and still generates code for what is valid.

use std::collections::HashMap;

use proc_macro2::{Span, TokenStream};
use quote::format_ident;
use syn::{
    Attribute, FnArg, GenericArgument, Ident, ItemTrait, LitStr, Pat, PathArguments, ReturnType,
    TraitItem, TraitItemFn, Type,
};

use crate::attr::{self, TraitArgs, VersionLit};
use crate::errors::Errors;

/// Which macro is being expanded.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Endpoint,
    Client,
}

impl Role {
    pub(crate) fn attr_name(self) -> &'static str {
        match self {
            Role::Endpoint => "rpc_endpoint",
            Role::Client => "rpc_client",
        }
    }

    fn other(self) -> Role {
        match self {
            Role::Endpoint => Role::Client,
            Role::Client => Role::Endpoint,
        }
    }
}

pub(crate) struct Service {
    /// The trait with the macros' attributes removed.
    pub(crate) item: ItemTrait,
    pub(crate) krate: syn::Path,
    pub(crate) namespace: Option<LitStr>,
    pub(crate) version: VersionLit,
    pub(crate) endpoint: bool,
    pub(crate) client: bool,
    /// A generic trait cannot be served or called: only stubs are generated for it.
    pub(crate) generic: bool,
    pub(crate) methods: Vec<Method>,
}

pub(crate) struct Method {
    pub(crate) ident: Ident,
    pub(crate) wire_name: String,
    pub(crate) wire_span: Span,
    pub(crate) docs: Vec<Attribute>,
    /// The name of the `&Context` parameter, if the method takes one (`__ctx` if it has a
    /// pattern instead), at the trait's parameter.
    pub(crate) ctx: Option<Ident>,
    pub(crate) params: Vec<Param>,
    pub(crate) output: Output,
    pub(crate) cast: bool,
    pub(crate) since: VersionLit,
    /// Valid methods are served and get client methods; invalid ones only stay in the trait.
    pub(crate) valid: bool,
}

pub(crate) struct Param {
    pub(crate) ident: Ident,
    pub(crate) ty: Type,
}

pub(crate) enum Output {
    Unit,
    Value(Box<Type>),
    /// `Result<T, E>`: `E` is the method's own error.
    Fallible {
        ok: Box<Type>,
        err: Box<Type>,
    },
}

/// The method `#[rpc_endpoint]` provides in the trait: `fn into_rpc(self) -> <Trait>Endpoint<Self>`.
pub(crate) const INTO_RPC: &str = "into_rpc";

/// Inherent items of the generated clients; an RPC method of the same name would clash. (The
/// macros crate's tests check this list against the expansion.)
pub(crate) const CLIENT_METHODS: &[&str] = &[
    "NAMESPACE",
    "VERSION",
    "new",
    "from_rpc_client",
    "rpc_client",
    "with_context",
    "with_server",
    "with_timeout",
    "with_retry",
    "with_call_monitor_timeout",
    "with_version_cap",
    "with_version",
    "with_namespace",
    "without_namespace",
    "can_send_version",
    "cast",
    "fanout",
];

impl Service {
    pub(crate) fn parse(
        role: Role,
        args: TokenStream,
        mut item: ItemTrait,
        errors: &mut Errors,
    ) -> Service {
        let own = attr::parse_trait_args(args, errors);
        let sibling = take_sibling(role, &mut item, errors);
        let args = merge(role, own, sibling.as_ref(), errors);
        let sibling_role = sibling.map(|(other, _)| other);
        let generic = check_trait_shape(&item, errors);

        let version = args
            .version
            .unwrap_or_else(|| VersionLit::new(1, 0, Span::call_site()));
        let mut methods = Vec::new();
        for trait_item in &mut item.items {
            match trait_item {
                // `since` is not checked against a version that is itself reported.
                TraitItem::Fn(f) => {
                    methods.push(Method::parse(f, &version, !args.version_invalid, errors))
                }
                TraitItem::Type(t) => errors.at(
                    t,
                    "associated types are not supported in an RPC trait: use concrete types",
                ),
                TraitItem::Const(c) => {
                    errors.at(c, "associated constants are not supported in an RPC trait")
                }
                other => errors.at(
                    other,
                    "only `async fn` methods are supported in an RPC trait",
                ),
            }
        }
        let mut service = Service {
            item,
            krate: args.krate.unwrap_or_else(|| syn::parse_quote!(::amqp_rpc)),
            namespace: args.namespace,
            version,
            endpoint: role == Role::Endpoint || sibling_role == Some(Role::Endpoint),
            client: role == Role::Client || sibling_role == Some(Role::Client),
            generic,
            methods,
        };
        if generic {
            // Its methods' types may name its parameters, which the generated items lack.
            service.methods.iter_mut().for_each(|m| m.valid = false);
        }
        service.check_names(errors);
        service
    }

    /// Two methods may not share a wire name, and methods may not clash with the generated
    /// ones: the client's inherent items and the trait's `into_rpc`.
    fn check_names(&mut self, errors: &mut Errors) {
        let mut seen: HashMap<String, Ident> = HashMap::new();
        for method in &mut self.methods {
            if let Some(first) = seen.get(&method.wire_name) {
                errors.push(syn::Error::new(
                    method.wire_span,
                    format!(
                        "two methods have the wire name \"{}\": `{}` and `{}`",
                        method.wire_name, first, method.ident
                    ),
                ));
                method.valid = false;
            } else {
                seen.insert(method.wire_name.clone(), method.ident.clone());
            }
            let name = syn::ext::IdentExt::unraw(&method.ident).to_string();
            if self.endpoint && name == INTO_RPC {
                errors.at(
                    &method.ident,
                    format!(
                        "method `{name}` clashes with the `{trait_ident}::{name}` that \
                         #[rpc_endpoint] provides (it makes an implementation a \
                         `{trait_ident}Endpoint`); rename it and keep its wire name with \
                         `#[rpc(name = \"{name}\")]`",
                        trait_ident = self.item.ident
                    ),
                );
                method.valid = false;
            }
            if self.client && CLIENT_METHODS.contains(&name.as_str()) {
                errors.at(
                    &method.ident,
                    format!(
                        "method `{name}` clashes with the generated `{}Client::{name}`; rename it \
                         and keep its wire name with `#[rpc(name = \"{name}\")]`",
                        self.item.ident
                    ),
                );
                method.valid = false;
            }
        }
    }

    pub(crate) fn ident(&self, suffix: &str) -> Ident {
        format_ident!("{}{}", self.item.ident, suffix)
    }
}

/// The argument with which one macro marks the other's attribute once it has expanded both.
pub(crate) const EXPANDED_MARKER: &str = "__amqp_rpc_expanded";

/// The arguments of the other macro's attribute, if it is on the trait too: one expansion
/// generates both halves, so that each error is reported once.
fn take_sibling(
    role: Role,
    item: &mut ItemTrait,
    errors: &mut Errors,
) -> Option<(Role, TraitArgs)> {
    let other = role.other();
    let index = item.attrs.iter().position(|a| {
        a.path()
            .segments
            .last()
            .is_some_and(|s| s.ident == other.attr_name())
    })?;
    let attr = &mut item.attrs[index];
    let tokens = match &attr.meta {
        syn::Meta::Path(_) => TokenStream::new(),
        syn::Meta::List(list) => list.tokens.clone(),
        syn::Meta::NameValue(nv) => {
            errors.at(nv, format!("expected `#[{}(...)]`", other.attr_name()));
            TokenStream::new()
        }
    };
    // The attribute stays, marked as done, so that the other macro still runs (and the
    // user's import of it counts as used) but passes the trait through unchanged.
    let path = attr.path().clone();
    let marker = quote::format_ident!("{EXPANDED_MARKER}");
    attr.meta = syn::parse_quote!(#path(#marker));
    Some((other, attr::parse_trait_args(tokens, errors)))
}

/// Namespace, version and crate are written once, on either attribute.
fn merge(
    role: Role,
    own: TraitArgs,
    sibling: Option<&(Role, TraitArgs)>,
    errors: &mut Errors,
) -> TraitArgs {
    let Some((other, theirs)) = sibling else {
        return own;
    };
    let twice = |key: &str| {
        format!(
            "`{key}` is given on both #[{}] and #[{}]; give it once",
            role.attr_name(),
            other.attr_name()
        )
    };
    fn pick<T: Clone>(a: Option<T>, b: &Option<T>) -> Option<T> {
        a.or_else(|| b.clone())
    }
    if let (Some(_), Some(b)) = (&own.namespace, &theirs.namespace) {
        errors.at(b, twice("namespace"));
    }
    if let (Some(_), Some(b)) = (&own.version, &theirs.version) {
        errors.push(syn::Error::new(b.span, twice("version")));
    }
    if let (Some(_), Some(b)) = (&own.krate, &theirs.krate) {
        errors.at(b, twice("crate"));
    }
    TraitArgs {
        namespace: pick(own.namespace, &theirs.namespace),
        version: pick(own.version, &theirs.version),
        version_invalid: own.version_invalid || theirs.version_invalid,
        krate: pick(own.krate, &theirs.krate),
    }
}

/// Reports what no RPC trait may be; returns whether the trait is generic.
fn check_trait_shape(item: &ItemTrait, errors: &mut Errors) -> bool {
    let generic = !item.generics.params.is_empty() || item.generics.where_clause.is_some();
    if generic {
        errors.at(
            &item.generics,
            "an RPC trait cannot be generic: its methods' types are its wire contract",
        );
    }
    if let Some(unsafety) = &item.unsafety {
        errors.at(unsafety, "an RPC trait cannot be `unsafe`");
    }
    if let Some(auto) = &item.modifiers.auto_token {
        errors.at(auto, "an RPC trait cannot be an auto trait");
    }
    generic
}

impl Method {
    fn parse(
        f: &mut TraitItemFn,
        trait_version: &VersionLit,
        check_since: bool,
        errors: &mut Errors,
    ) -> Method {
        let mut local = Errors::default();
        let args = take_rpc_args(&mut f.attrs, &mut local);
        let sig = &f.sig;
        if sig.asyncness.is_none() {
            local.at(sig.fn_token, "RPC methods must be `async fn`");
        }
        if let Some(constness) = &sig.constness {
            local.at(constness, "RPC methods cannot be `const`");
        }
        if let syn::Safety::Unsafe(unsafety) = &sig.safety {
            local.at(unsafety, "RPC methods cannot be `unsafe`");
        }
        if let Some(abi) = &sig.abi {
            local.at(abi, "RPC methods cannot have an ABI");
        }
        if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
            local.at(
                &sig.generics,
                "RPC methods cannot be generic: their types are the wire contract",
            );
        }
        if let Some(variadic) = &sig.variadic {
            local.at(variadic, "RPC methods cannot be variadic");
        }
        check_receiver(sig, &mut local);
        let (ctx, params) = parse_params(sig, &mut local);
        let output = parse_output(&sig.output, &mut local);

        let cast = args.cast.is_some();
        if cast && !matches!(output, Output::Unit) {
            local.at(
                &sig.output,
                "a cast gets no reply, so a `#[rpc(cast)]` method cannot return a value: remove the return type",
            );
        }
        let since = args
            .since
            .unwrap_or_else(|| VersionLit::new(trait_version.major, 0, Span::call_site()));
        if check_since && !trait_version.serves(&since) {
            local.push(syn::Error::new(
                since.span,
                format!(
                    "`since = \"{since}\"` is not served by the trait's version {trait_version}: \
                     it must have major {} and be no newer than {trait_version}",
                    trait_version.major
                ),
            ));
        }
        let (wire_name, wire_span) = match &args.name {
            Some(lit) => (lit.value(), lit.span()),
            None => (sig.ident.to_string(), sig.ident.span()),
        };
        if wire_name.is_empty() {
            local.push(syn::Error::new(wire_span, "the wire name cannot be empty"));
        } else if wire_name.starts_with('_') {
            local.push(syn::Error::new(
                wire_span,
                format!("servers never dispatch names starting with `_`, so \"{wire_name}\" could not be called"),
            ));
        }
        let valid = local.is_empty();
        if let Some(e) = local.into_error() {
            errors.push(e);
        }
        Method {
            ident: sig.ident.clone(),
            wire_name,
            wire_span,
            docs: f
                .attrs
                .iter()
                .filter(|a| a.path().is_ident("doc"))
                .cloned()
                .collect(),
            ctx,
            params,
            output,
            cast,
            since,
            valid,
        }
    }
}

/// Removes the method's `#[rpc(...)]` attributes and parses them.
fn take_rpc_args(attrs: &mut Vec<Attribute>, errors: &mut Errors) -> attr::MethodArgs {
    let mut tokens = TokenStream::new();
    let mut found = false;
    attrs.retain(|a| {
        if !a.path().is_ident("rpc") {
            return true;
        }
        match &a.meta {
            syn::Meta::List(list) => {
                if found {
                    tokens.extend(quote::quote!(,));
                }
                tokens.extend(list.tokens.clone());
                found = true;
            }
            other => errors.at(
                other,
                "expected `#[rpc(...)]` with one of: `cast`, `since`, `name`",
            ),
        }
        false
    });
    attr::parse_method_args(tokens, errors)
}

fn check_receiver(sig: &syn::Signature, errors: &mut Errors) {
    use syn::ReceiverKind;
    let Some(FnArg::Receiver(r)) = sig.inputs.first() else {
        errors.at(
            &sig.ident,
            "RPC methods take `&self` as their first parameter: this one has no receiver",
        );
        return;
    };
    match &r.kind {
        ReceiverKind::Reference(_, _, None) => {}
        ReceiverKind::Reference(_, _, Some(_)) => errors.at(
            r,
            "RPC methods take `&self`, not `&mut self`: a server runs calls concurrently",
        ),
        ReceiverKind::Value => errors.at(
            r,
            "RPC methods take `&self`, not `self`: one implementation serves every call",
        ),
        _ => errors.at(
            r,
            "RPC methods take `&self`, not a typed receiver: one implementation serves every call",
        ),
    }
}

/// How a type names the request context (a path ending in `Context`).
#[derive(PartialEq)]
enum ContextUse {
    /// `&Context`: the context parameter.
    Shared,
    /// `Context` or `&mut Context`: a mistake, which would otherwise become an argument
    /// named after the parameter.
    Other,
}

fn context_use(ty: &Type) -> Option<ContextUse> {
    let (shared, inner) = match ty {
        Type::Reference(reference) => (reference.mutability.is_none(), reference.elem.as_ref()),
        other => (false, other),
    };
    let Type::Path(path) = inner else {
        return None;
    };
    let is_context = path.qself.is_none()
        && path
            .path
            .segments
            .last()
            .is_some_and(|s| s.ident == "Context" && s.arguments.is_none());
    match (is_context, shared) {
        (false, _) => None,
        (true, true) => Some(ContextUse::Shared),
        (true, false) => Some(ContextUse::Other),
    }
}

fn contains_impl_trait(ty: &Type) -> bool {
    struct Finder(bool);
    impl<'ast> syn::visit::Visit<'ast> for Finder {
        fn visit_type_impl_trait(&mut self, _: &'ast syn::TypeImplTrait) {
            self.0 = true;
        }
    }
    let mut finder = Finder(false);
    syn::visit::visit_type(&mut finder, ty);
    finder.0
}

fn parse_params(sig: &syn::Signature, errors: &mut Errors) -> (Option<Ident>, Vec<Param>) {
    let mut ctx = None;
    let mut params = Vec::new();
    let typed = sig.inputs.iter().filter_map(|arg| match arg {
        FnArg::Typed(t) => Some(t),
        FnArg::Receiver(_) => None,
    });
    for (position, arg) in typed.enumerate() {
        if context_use(&arg.ty) == Some(ContextUse::Other) {
            errors.at(&arg.ty, "take the request context as `&Context`");
            continue;
        }
        if context_use(&arg.ty).is_some() {
            match position {
                0 => {
                    ctx = Some(match arg.pat.as_ref() {
                        Pat::Ident(p) => p.ident.clone(),
                        other => Ident::new("__ctx", syn::spanned::Spanned::span(other)),
                    })
                }
                _ => errors.at(
                    arg,
                    "the context parameter must come first, right after `&self`",
                ),
            }
            continue;
        }
        if contains_impl_trait(&arg.ty) {
            errors.at(&arg.ty, "`impl Trait` arguments are not supported: give a concrete type that implements Serialize and Deserialize");
            continue;
        }
        match arg.pat.as_ref() {
            Pat::Ident(p) if p.by_ref.is_none() && p.subpat.is_none() => params.push(Param {
                ident: p.ident.clone(),
                ty: (*arg.ty).clone(),
            }),
            other => errors.at(
                other,
                "RPC arguments must be plain names: the name is the keyword argument's key on the wire",
            ),
        }
    }
    (ctx, params)
}

fn parse_output(output: &ReturnType, errors: &mut Errors) -> Output {
    let ty = match output {
        ReturnType::Default => return Output::Unit,
        ReturnType::Type(_, ty) => ty.as_ref(),
    };
    if matches!(ty, Type::Tuple(t) if t.elems.is_empty()) {
        return Output::Unit;
    }
    if contains_impl_trait(ty) {
        errors.at(
            ty,
            "`impl Trait` return types are not supported: give a concrete type",
        );
        return Output::Unit;
    }
    // A fallible method's `Err` is sent as a failure (a Python exception), so the macro must
    // see its error type. It goes by syntax: any path whose last segment is `Result` with
    // exactly two type arguments is `core::result::Result<T, E>`; one it cannot see through
    // (`io::Result<T>`, an alias `Result<T>`) is refused rather than sent as a successful
    // `{"Err": ...}` value. (An alias under another name is refused by a type check in the
    // generated code: see `Generator::render_assertions`.)
    if let Type::Path(path) = ty
        && let Some(last) = path.path.segments.last().filter(|s| s.ident == "Result")
    {
        let types: Vec<&Type> = match &last.arguments {
            PathArguments::AngleBracketed(generic) => generic
                .args
                .iter()
                .filter_map(|a| match a {
                    GenericArgument::Type(t) => Some(t),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        if let [ok, err] = types.as_slice() {
            return Output::Fallible {
                ok: Box::new((*ok).clone()),
                err: Box::new((*err).clone()),
            };
        }
        errors.at(
            ty,
            "the macro cannot see this `Result`'s error type: write both its parameters, \
             `Result<T, E>` (spelled `std::result::Result<T, E>` where `Result` is an alias), so \
             that an `Err` is sent as a failure, not as a successful value",
        );
        return Output::Unit;
    }
    Output::Value(Box::new(ty.clone()))
}
