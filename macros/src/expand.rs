//! Code generation: the rewritten trait, the endpoint, the clients, and type assertions that
//! point errors at the user's types. Every path is absolute and goes through the runtime's
//! private module, so the output compiles under `#![no_implicit_prelude]` and a renamed crate.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{ItemTrait, TraitItem};

use crate::ast::{Method, Output, Role, Service};
use crate::errors::Errors;

pub(crate) fn run(role: Role, args: TokenStream, item: TokenStream) -> TokenStream {
    if args.to_string() == crate::ast::EXPANDED_MARKER {
        return item;
    }
    let item: ItemTrait = match syn::parse2(item.clone()) {
        Ok(item) => item,
        Err(_) => {
            let message = format!("#[{}] applies to a trait", role.attr_name());
            let error = syn::Error::new_spanned(item_head(&item), message).to_compile_error();
            return quote!(#item #error);
        }
    };
    let mut errors = Errors::default();
    let service = Service::parse(role, args, item, &mut errors);
    let generated = Generator::new(&service);
    let mut out = generated.render_trait();
    out.extend(generated.render_assertions());
    if service.endpoint {
        out.extend(generated.render_endpoint());
    }
    if service.client {
        out.extend(generated.render_client());
    }
    out.extend(errors.to_compile_errors());
    out
}

/// The item's head, `pub struct Name` or `fn name(args) -> T`: its tokens after any attributes
/// and before its body, `;` or `=`, so that an error about its kind does not span its body.
fn item_head(item: &TokenStream) -> TokenStream {
    use proc_macro2::{Delimiter, TokenTree};
    let mut tokens = item.clone().into_iter().peekable();
    while let Some(TokenTree::Punct(p)) = tokens.peek() {
        if p.as_char() != '#' {
            break;
        }
        tokens.next();
        tokens.next(); // the attribute's `[...]`
    }
    tokens
        .take_while(|token| match token {
            TokenTree::Group(g) => g.delimiter() != Delimiter::Brace,
            TokenTree::Punct(p) => !matches!(p.as_char(), ';' | '='),
            _ => true,
        })
        .collect()
}

/// A local variable or parameter of the generated code. Its mixed-site span makes it hygienic
/// (as a `macro_rules!` local): a user's parameter of the same name, whose span is the user's,
/// is another variable, so a parameter named `__args` or `__kwargs` cannot capture it.
/// The text of `#[doc]` attributes (`///` lines), one line each.
fn doc_text(attrs: &[syn::Attribute]) -> String {
    let lines: Vec<String> = attrs
        .iter()
        .filter_map(|attr| match &attr.meta {
            syn::Meta::NameValue(nv) if nv.path.is_ident("doc") => match &nv.value {
                syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(text),
                    ..
                }) => Some(text.value().trim().to_owned()),
                _ => None,
            },
            _ => None,
        })
        .collect();
    lines.join("\n")
}

fn local(name: &str) -> syn::Ident {
    syn::Ident::new(name, proc_macro2::Span::mixed_site())
}

/// `self` in the dispatcher, hygienic as [`local`]s are.
fn self_token() -> syn::token::SelfValue {
    syn::token::SelfValue {
        span: proc_macro2::Span::mixed_site(),
    }
}

struct Generator<'a> {
    service: &'a Service,
    /// `<crate>::__private_v1`
    private: TokenStream,
    methods: Vec<&'a Method>,
}

impl<'a> Generator<'a> {
    fn new(service: &'a Service) -> Self {
        let krate = &service.krate;
        Generator {
            service,
            private: quote!(#krate::__private_v1),
            methods: service.methods.iter().filter(|m| m.valid).collect(),
        }
    }

    /// The trait, each `async fn` made `fn ... -> impl Future<Output = _> + Send` so that the
    /// generated code can rely on `Send` futures while implementors still write `async fn`.
    ///
    /// By hand, not by `#[async_trait]`: this is not its expansion but native `async fn` in
    /// traits with a `Send` bound (what `trait_variant::make(Send)` writes). `#[async_trait]`
    /// would box every method's future and change the signatures implementors and callers see.
    /// The `Endpoint` impl, whose trait is an `#[async_trait]` trait, does use it.
    fn render_trait(&self) -> TokenStream {
        let mut item = self.service.item.clone();
        for trait_item in &mut item.items {
            let TraitItem::Fn(f) = trait_item else {
                continue;
            };
            if f.default.is_none() {
                // The macro has reported any pattern that is not a plain name; rustc would
                // report it again, as not allowed in a function without a body.
                for input in &mut f.sig.inputs {
                    if let syn::FnArg::Typed(arg) = input
                        && !matches!(arg.pat.as_ref(), syn::Pat::Ident(_) | syn::Pat::Wild(_))
                    {
                        *arg.pat = syn::parse_quote!(_);
                    }
                }
            }
            let Some(asyncness) = f.sig.asyncness.take() else {
                continue;
            };
            let output = match &f.sig.output {
                syn::ReturnType::Default => quote!(()),
                syn::ReturnType::Type(_, ty) => quote!(#ty),
            };
            // At `async`, so that an implementation whose future is not `Send` is told that the
            // bound comes from the trait's `async fn`, not from the macro.
            f.sig.output = syn::parse_quote_spanned! {asyncness.span=>
                -> impl ::core::future::Future<Output = #output> + ::core::marker::Send
            };
            if let Some(body) = f.default.take() {
                f.default = Some(syn::parse_quote!({ async move #body }));
                // The body's future holds `&Self`; it is `Send` only if `Self` is `Sync`.
                f.sig
                    .generics
                    .make_where_clause()
                    .predicates
                    .push(syn::parse_quote!(Self: ::core::marker::Sync));
            }
        }
        if !self.service.endpoint {
            // A trait that only describes a remote service is never implemented here.
            item.attrs.push(syn::parse_quote!(#[allow(dead_code)]));
        }
        if let Some(into_rpc) = self.render_into_rpc() {
            item.items.push(into_rpc);
        }
        quote!(#item)
    }

    /// The trait's provided `into_rpc`, which makes an implementation servable in one step
    /// (jsonrpsee's `into_rpc()`): `server.endpoint(Calc.into_rpc())`. Not generated for a
    /// generic trait (reported, and stubbed) nor when the trait has its own method of that
    /// name (reported in `Service::check_names`, and a second definition would only add
    /// rustc's error to the macro's).
    fn render_into_rpc(&self) -> Option<TraitItem> {
        let service = self.service;
        let clash = service
            .methods
            .iter()
            .any(|m| m.ident.unraw() == crate::ast::INTO_RPC);
        if !service.endpoint || service.generic || clash {
            return None;
        }
        let endpoint = service.ident("Endpoint");
        let doc = format!(
            "Serves this implementation: wraps it in a [`{endpoint}`], an `Endpoint` to give \
             to a server. A type implementing several RPC traits names the one: \
             `{}::into_rpc(value)`.",
            service.item.ident
        );
        Some(syn::parse_quote! {
            #[doc = #doc]
            fn into_rpc(self) -> #endpoint<Self>
            where
                Self: ::core::marker::Sized
                    + ::core::marker::Send
                    + ::core::marker::Sync
                    + 'static,
            {
                #endpoint::new(self)
            }
        })
    }

    /// Checks that each parameter, result and error type can cross the wire both ways, with
    /// errors at the user's type. The endpoint and the client use each type with exactly the
    /// bounds their half needs, at the type's span, so only the bounds of a half that is not
    /// generated are asserted here: asserting the others as well would report every missing
    /// impl twice. The functions named are those the missing half would call.
    fn render_assertions(&self) -> TokenStream {
        let private = &self.private;
        let mut checks = TokenStream::new();
        let mut check = |ty: &syn::Type, function: &str| {
            let function = syn::Ident::new(function, proc_macro2::Span::call_site());
            checks.extend(quote_spanned!(ty.span()=> let _ = #private::#function::<#ty>;));
        };
        let mut error_checks = TokenStream::new();
        for method in &self.methods {
            let (ok, err) = match &method.output {
                Output::Unit => (None, None),
                Output::Value(ty) => (Some(ty), None),
                Output::Fallible { ok, err } => (Some(ok), Some(err)),
            };
            if let Output::Value(ty) = &method.output {
                // A `Result` under another name, which the macro took for a plain value.
                // The `use` is macro-spanned, so that the import left unused is not linted.
                let at_ty = self.private_at(ty.span());
                let probe = quote_spanned!(ty.span()=> (&#at_ty::ReturnProbe::<#ty>::NEW).check());
                error_checks.extend(quote! {{
                    use #private::{ReturnIsResult as _, ReturnIsValue as _};
                    #probe;
                }});
            }
            let params = method.params.iter().map(|p| &p.ty);
            if !self.service.endpoint {
                // An endpoint decodes the arguments and encodes the result and error.
                params.clone().for_each(|ty| check(ty, "take_arg"));
                ok.iter().for_each(|ty| check(ty, "encode_result"));
                if let Some(err) = err {
                    let encode = self.encode_error(err, &quote!(""), &quote!(__error));
                    error_checks.extend(quote!(let _ = |__error: &#err| #encode;));
                }
            }
            if !self.service.client {
                // A client encodes the arguments (`encode_result` bounds its type by
                // `Serialize` alone) and decodes the result and error.
                params.for_each(|ty| check(ty, "encode_result"));
                ok.iter().for_each(|ty| check(ty, "take_arg"));
                if let Some(err) = err {
                    let decode = self.decode_error(err, &quote!(__error));
                    error_checks.extend(quote!(let _ = |__error: #private::RpcError| #decode;));
                }
            }
        }
        checks.extend(error_checks);
        if checks.is_empty() {
            return TokenStream::new();
        }
        quote! {
            const _: () = {
                #[allow(dead_code)]
                fn __amqp_rpc_type_assertions() {
                    #checks
                }
            };
        }
    }

    /// The codec of error type `err` (see `ErrorCodec` in the runtime's private module): its
    /// `RemoteException` impl if it has one, else serde. Macro-spanned, so that lints do not
    /// take the borrow that selects it for a needless one.
    fn error_codec(&self, err: &syn::Type) -> TokenStream {
        let private = &self.private;
        quote! {{
            use #private::{ViaException as _, ViaSerde as _};
            (&#private::ErrorCodec::<#err>::NEW).codec()
        }}
    }

    /// The `RemoteError` of `error: &err`, a method's own error. The codec's method is at the
    /// error type, so that a type that can be sent neither way is reported there.
    fn encode_error(
        &self,
        err: &syn::Type,
        method: &TokenStream,
        error: &TokenStream,
    ) -> TokenStream {
        let codec = self.error_codec(err);
        quote_spanned!(err.span()=> #codec.application_error::<#err>(#method, #error))
    }

    /// The `CallError<err>` of `error: RpcError`.
    fn decode_error(&self, err: &syn::Type, error: &TokenStream) -> TokenStream {
        let codec = self.error_codec(err);
        quote_spanned!(err.span()=> #codec.from_rpc::<#err>(#error))
    }

    /// The private module's path with every token at `span`, so that an expression starting
    /// with it is reported at `span` (the user's type) rather than at the macro's attribute.
    fn private_at(&self, span: proc_macro2::Span) -> TokenStream {
        self.private
            .clone()
            .into_iter()
            .map(|mut token| {
                token.set_span(span);
                token
            })
            .collect()
    }

    fn namespace_const(&self) -> TokenStream {
        match &self.service.namespace {
            Some(ns) => quote!(::core::option::Option::Some(#ns)),
            None => quote!(::core::option::Option::None),
        }
    }

    fn render_endpoint(&self) -> TokenStream {
        let private = &self.private;
        let trait_ident = &self.service.item.ident;
        let vis = &self.service.item.vis;
        let endpoint = self.service.ident("Endpoint");
        let namespace = self.namespace_const();
        let version = self.service.version.to_tokens(private);
        let version_text = self.service.version.to_string();
        let namespace_text = self.service.namespace.as_ref().map_or_else(
            || "the default namespace".to_owned(),
            |ns| format!("namespace `{}`", ns.value()),
        );
        let doc = format!(
            "Serves any implementation of [`{trait_ident}`] as an RPC endpoint ({namespace_text}, \
             version {version_text}): made by `{trait_ident}::into_rpc` or `new`, an `Endpoint` \
             to give to a server."
        );
        let (ctx, method, args) = (local("__ctx"), local("__method"), local("__args"));
        // async-trait makes `self` a local, `__self`, at this token's span: mixed-site, so that
        // a parameter named `__self` is another variable.
        let self_ = self_token();
        let wire_names: Vec<&String> = self.methods.iter().map(|m| &m.wire_name).collect();
        let has_method = match wire_names.is_empty() {
            true => quote!(false),
            false => quote!(::core::matches!(#method, #(#wire_names)|*)),
        };
        let arms = self.methods.iter().map(|m| self.dispatch_arm(m));
        let description = self.description();
        // A generic trait has been reported; without its arguments `T: Trait` would only add
        // a confusing error, so the stub serves nothing for any `T`.
        let implements = (!self.service.generic).then(|| quote!(#trait_ident +));
        quote! {
            #[doc = #doc]
            #vis struct #endpoint<T> {
                inner: T,
            }

            impl<T> #endpoint<T> {
                /// The namespace served.
                pub const NAMESPACE: ::core::option::Option<&'static str> = #namespace;
                /// The version implemented: requests of the same major and an older or equal
                /// minor are served.
                pub const VERSION: #private::Version = #version;

                /// Wraps an implementation of the trait.
                pub fn new(inner: T) -> Self {
                    Self { inner }
                }

                /// The implementation.
                pub fn get_ref(&self) -> &T {
                    &self.inner
                }

                /// Unwraps the implementation.
                pub fn into_inner(self) -> T {
                    self.inner
                }
            }

            // In a block of its own for the `use`: async-trait's expansion names `Box` without
            // a path (`Pin<Box<dyn Future ...>>`, `Box::pin(...)`, as of async-trait 0.1), so in
            // the user's scope it would find the user's `Box`, or none under
            // `#![no_implicit_prelude]` (the hygiene test has both). This import is the `Box` it
            // finds; unused if async-trait ever writes the path.
            const _: () = {
                #[allow(unused_imports)]
                use ::std::boxed::Box;

                #[automatically_derived]
                #[#private::async_trait]
                impl<T> #private::Endpoint for #endpoint<T>
                where
                    T: #implements ::core::marker::Send + ::core::marker::Sync + 'static,
                {
                    fn namespace(&self) -> ::core::option::Option<&str> {
                        Self::NAMESPACE
                    }

                    fn version(&self) -> #private::Version {
                        Self::VERSION
                    }

                    fn has_method(&self, #method: &str) -> bool {
                        #has_method
                    }

                    fn description(&self) -> ::core::option::Option<#private::serde_json::Value> {
                        ::core::option::Option::Some(#description)
                    }

                    #[allow(unused_mut, unused_variables)]
                    async fn dispatch(
                        &#self_,
                        #ctx: #private::Context,
                        #method: &str,
                        #args: #private::Args,
                    ) -> ::core::result::Result<#private::Returned, #private::RemoteError> {
                        let mut #args = #args;
                        match #method {
                            #(#arms)*
                            _ => ::core::result::Result::Err(#private::no_such_method(#method)),
                        }
                    }
                }
            };
        }
    }

    /// The endpoint's description for servers that describe themselves: its trait's name and
    /// each method's name, `since`, docs, parameters and result, their types as JSON Schema.
    fn description(&self) -> TokenStream {
        let private = &self.private;
        let trait_name = self.service.item.ident.to_string();
        let schema = |ty: &syn::Type| {
            quote! {{
                #[allow(unused_imports)]
                use #private::{ViaTypeName as _, ViaTypeSchema as _};
                (&&#private::SchemaProbe::<#ty>::new()).schema()
            }}
        };
        let methods = self.methods.iter().map(|m| {
            let name = &m.wire_name;
            let since = m.since.to_string();
            let doc = doc_text(&m.docs);
            let params = m.params.iter().map(|p| {
                let key = p.ident.unraw().to_string();
                let ty = &p.ty;
                let schema = schema(ty);
                quote! {(
                    #key,
                    #schema,
                    {
                        #[allow(unused_imports)]
                        use #private::{ViaOption as _, ViaRequired as _};
                        (&&#private::SchemaProbe::<#ty>::new()).optional()
                    },
                )}
            });
            let returns = match (&m.output, m.cast) {
                (_, true) => quote!(::core::option::Option::None),
                (Output::Unit, false) => {
                    let unit: syn::Type = syn::parse_quote!(());
                    let schema = schema(&unit);
                    quote!(::core::option::Option::Some(#schema))
                }
                (Output::Value(ty) | Output::Fallible { ok: ty, .. }, false) => {
                    let schema = schema(ty);
                    quote!(::core::option::Option::Some(#schema))
                }
            };
            quote! {
                #private::describe_method(#name, #since, #doc, &[#(#params),*], #returns)
            }
        });
        quote! {
            #private::describe_endpoint(#trait_name, #private::std::vec![#(#methods),*])
        }
    }

    fn dispatch_arm(&self, method: &Method) -> TokenStream {
        let private = &self.private;
        let trait_ident = &self.service.item.ident;
        let ident = &method.ident;
        let wire = &method.wire_name;
        let (args, ok, err) = (local("__args"), local("__ok"), local("__err"));
        let takes = method.params.iter().map(|p| {
            let (name, ty) = (&p.ident, &p.ty);
            let key = name.unraw().to_string();
            quote!(let #name = #private::take_arg::<#ty>(&mut #args, #wire, #key)?;)
        });
        let keys = method.params.iter().map(|p| p.ident.unraw().to_string());
        let ctx = method.ctx.as_ref().map(|_| {
            let ctx = local("__ctx");
            quote!(&#ctx,)
        });
        let names = method.params.iter().map(|p| &p.ident);
        let self_ = self_token();
        let call = quote!(<T as #trait_ident>::#ident(&#self_.inner, #ctx #(#names),*).await);
        let finish = match &method.output {
            Output::Unit => quote! {
                #call;
                ::core::result::Result::Ok(#private::Returned::NONE)
            },
            Output::Value(ty) => quote!(#private::encode_result::<#ty>(#wire, &#call)),
            Output::Fallible {
                ok: ok_ty,
                err: err_ty,
            } => {
                let encode = self.encode_error(err_ty, &quote!(#wire), &quote!(&#err));
                quote! {
                    match #call {
                        ::core::result::Result::Ok(#ok) => #private::encode_result::<#ok_ty>(#wire, &#ok),
                        ::core::result::Result::Err(#err) => ::core::result::Result::Err(#encode),
                    }
                }
            }
        };
        quote! {
            #wire => {
                #private::only_args(&#args, #wire, &[#(#keys),*])?;
                #(#takes)*
                #finish
            }
        }
    }

    fn render_client(&self) -> TokenStream {
        let private = &self.private;
        let trait_ident = &self.service.item.ident;
        let vis = &self.service.item.vis;
        let client = self.service.ident("Client");
        let cast = self.service.ident("Cast");
        let namespace = self.namespace_const();
        let version = self.service.version.to_tokens(private);
        let string = quote!(impl ::core::convert::Into<::std::string::String>);
        let methods = self.methods.iter().map(|m| self.client_method(m, m.cast));
        let cast_methods = self.methods.iter().map(|m| self.client_method(m, true));
        let client_doc = format!(
            "Typed client of [`{trait_ident}`]: one method per RPC method, a call or, for a \
             `#[rpc(cast)]` method, a cast, each sent at the version that added it (its \
             `since`) unless [`with_version`]({client}::with_version) says otherwise.\n\n\
             Cheap to clone. The `with_*` methods are oslo's `prepare()`: each returns a \
             modified copy, leaving the original as it was, so \
             `client.with_server(\"s1\").with_timeout(d).method(...)` overrides for one call. \
             [`cast`]({client}::cast) and [`fanout`]({client}::fanout) send any method as a \
             cast (a call cannot be fanned out)."
        );
        let cast_doc = format!(
            "Every method of [`{trait_ident}`] sent as a cast, which gets no reply: made by \
             [`{client}::cast`] (to one server of the topic) and [`{client}::fanout`] (to every \
             server). Each returns once the message is sent."
        );
        let setters = self.client_setters();
        quote! {
            #[doc = #client_doc]
            #[derive(::core::clone::Clone, ::core::fmt::Debug)]
            #vis struct #client {
                client: #private::RpcClient,
                context: #private::Context,
            }

            impl #client {
                /// The namespace addressed.
                pub const NAMESPACE: ::core::option::Option<&'static str> = #namespace;
                /// The trait's version; each method sends the version that added it (its
                /// `since`), unless overridden by `with_version`.
                pub const VERSION: #private::Version = #version;

                /// A client of the servers of `topic` on `transport`.
                pub fn new(transport: &#private::Transport, topic: #string) -> Self {
                    Self::from_rpc_client(#private::RpcClient::new(transport, #private::Target::new(topic)))
                }

                /// Wraps an [`RpcClient`](#private::RpcClient), addressing the trait's
                /// namespace. The rest of its target (topic, server, exchange, and a version,
                /// taken as a `with_version` override), its timeout, retry and cap are kept.
                pub fn from_rpc_client(client: #private::RpcClient) -> Self {
                    Self {
                        client: #private::with_namespace(client, Self::NAMESPACE),
                        context: #private::Context::new(),
                    }
                }

                /// The underlying untyped client.
                pub fn rpc_client(&self) -> &#private::RpcClient {
                    &self.client
                }

                /// Sends `context` with the methods that take no context parameter (default:
                /// an empty context).
                pub fn with_context(&self, context: #private::Context) -> Self {
                    Self { client: self.client.prepare(), context }
                }

                #(#setters)*

                /// Whether the version cap lets a message of `version` be sent.
                pub fn can_send_version(&self, version: &#private::Version) -> bool {
                    self.client.can_send_version(version)
                }

                /// Every method as a cast, to one server of the topic (or the one
                /// `with_server` names): sent without waiting for a reply.
                pub fn cast(&self) -> #cast {
                    #cast {
                        client: self.client.prepare(),
                        context: ::core::clone::Clone::clone(&self.context),
                    }
                }

                /// Every method as a cast to every server of the topic (fanout; the server is
                /// ignored).
                pub fn fanout(&self) -> #cast {
                    #cast {
                        client: self.client.prepare().with_fanout(true),
                        context: ::core::clone::Clone::clone(&self.context),
                    }
                }

                #(#methods)*
            }

            #[doc = #cast_doc]
            #[derive(::core::clone::Clone, ::core::fmt::Debug)]
            #vis struct #cast {
                client: #private::RpcClient,
                context: #private::Context,
            }

            impl #cast {
                #(#cast_methods)*
            }
        }
    }

    /// The client's `with_*` methods that change its `RpcClient`: each returns a modified copy
    /// (oslo's `prepare()`).
    fn client_setters(&self) -> Vec<TokenStream> {
        let private = &self.private;
        let string = quote!(impl ::core::convert::Into<::std::string::String>);
        let duration = quote!(::core::time::Duration);
        let setters = [
            (
                "with_server",
                "Sends to one server of the topic.",
                quote!(server: #string),
                quote!(with_server(server)),
            ),
            (
                "with_timeout",
                "Lets calls take `timeout` in all, and casts try for as long (default 60 s).",
                quote!(timeout: #duration),
                quote!(with_timeout(timeout)),
            ),
            (
                "with_retry",
                "oslo's `retry` for sending: `None` keeps trying until the timeout, `Some(0)` \
                 tries once, `Some(n)` retries `n` times.",
                quote!(retry: ::core::option::Option<u32>),
                quote!(with_retry(retry)),
            ),
            (
                "with_call_monitor_timeout",
                "Asks servers for heartbeats and fails a call when none arrives for `timeout`.",
                quote!(timeout: #duration),
                quote!(with_call_monitor_timeout(timeout)),
            ),
            (
                "with_version_cap",
                "Refuses, before sending, methods whose `since` version `cap` does not cover.",
                quote!(cap: #private::Version),
                quote!(with_version_cap(cap)),
            ),
            (
                "with_version",
                "Sends every method at `version` instead of the version that added it (its \
                 `since`), as oslo's `prepare(version=...)`. A method is refused before sending, \
                 with `RpcError::VersionOutOfRange`, unless `version` is one at which it exists: \
                 of the trait's major, not older than its `since`, not newer than \
                 [`VERSION`](Self::VERSION). The version cap still applies.",
                quote!(version: #private::Version),
                quote!(with_version(version)),
            ),
            (
                "with_namespace",
                "Addresses `namespace` instead of the trait's.",
                quote!(namespace: #string),
                quote!(with_namespace(namespace)),
            ),
            (
                "without_namespace",
                "Addresses oslo's default namespace (`None`) instead of the trait's.",
                quote!(),
                quote!(without_namespace()),
            ),
        ];
        setters
            .into_iter()
            .map(|(name, doc, param, change)| {
                let name = syn::Ident::new(name, proc_macro2::Span::call_site());
                quote! {
                    #[doc = #doc]
                    pub fn #name(&self, #param) -> Self {
                        Self {
                            client: self.client.prepare().#change,
                            context: ::core::clone::Clone::clone(&self.context),
                        }
                    }
                }
            })
            .collect()
    }

    /// The client method of `method`: a call, or a cast if `cast`.
    fn client_method(&self, method: &Method, cast: bool) -> TokenStream {
        let private = &self.private;
        let latest = self.service.version.to_tokens(private);
        let ident = &method.ident;
        let wire = &method.wire_name;
        let docs = &method.docs;
        let since = method.since.to_tokens(private);
        let params: Vec<TokenStream> = method
            .params
            .iter()
            .map(|p| {
                let (name, ty) = (&p.ident, &p.ty);
                quote!(#name: #ty)
            })
            .collect();
        let (ctx_param, ctx) = match &method.ctx {
            // As the trait declares it, so that a call leaving it out is shown the declaration.
            Some(name) => {
                let at_ctx = self.private_at(name.span());
                (
                    quote_spanned!(name.span()=> #name: &#at_ctx::Context,),
                    quote!(#name),
                )
            }
            None => (TokenStream::new(), quote!(&self.context)),
        };
        let kwargs = self.kwargs(method);
        let kwargs_local = local("__kwargs");
        // Macro-spanned, as they name the method's locals; only the calls taking a user's type
        // are spanned at that type (their arguments keep the macro's span).
        let args = quote!(&self.client, #since, #latest, #ctx, #wire, #kwargs_local);
        let (ret, send) = match (&method.output, cast) {
            (_, true) => (
                quote!(::core::result::Result<(), #private::RpcError>),
                quote!(#private::cast(#args).await),
            ),
            (Output::Unit, false) => (
                quote!(::core::result::Result<(), #private::RpcError>),
                quote!(#private::call::<()>(#args).await),
            ),
            // `call` is an `async fn`: a result type that cannot be decoded fails its bound at
            // the turbofish, again at the call and again at the `.await`. With all three at the
            // type's span, rustc reports one error, at the type.
            (Output::Value(ty), false) => {
                let at_ty = self.private_at(ty.span());
                (
                    quote!(::core::result::Result<#ty, #private::RpcError>),
                    quote_spanned!(ty.span()=> #at_ty::call::<#ty>(#args).await),
                )
            }
            // `call_fallible` spelled out, so that the error type's bound is on a plain call,
            // at the error type, and the result type's is at the result type.
            (Output::Fallible { ok, err }, false) => {
                let at_ok = self.private_at(ok.span());
                let call = quote_spanned!(ok.span()=> #at_ok::call::<#ok>(#args).await);
                let (error, ok_local) = (local("__error"), local("__ok"));
                let from_rpc = self.decode_error(err, &quote!(#error));
                (
                    quote!(::core::result::Result<#ok, #private::CallError<#err>>),
                    quote! {
                        match #call {
                            ::core::result::Result::Ok(#ok_local) => ::core::result::Result::Ok(#ok_local),
                            ::core::result::Result::Err(#error) => {
                                ::core::result::Result::Err(#from_rpc)
                            }
                        }
                    },
                )
            }
        };
        quote! {
            #(#docs)*
            // The trait's signature, whatever its length.
            #[allow(clippy::too_many_arguments)]
            pub async fn #ident(&self, #ctx_param #(#params),*) -> #ret {
                #kwargs
                #send
            }
        }
    }

    /// A struct borrowing the arguments, serialized as the keyword-argument object. Its names
    /// are local to the client method's body, where they could only shadow a user's type of
    /// the same name: hence the reserved prefix.
    fn kwargs(&self, method: &Method) -> TokenStream {
        let private = &self.private;
        let serde = quote!(#private::serde);
        let names: Vec<&syn::Ident> = method.params.iter().map(|p| &p.ident).collect();
        let keys = names.iter().map(|n| n.unraw().to_string());
        let types: Vec<&syn::Type> = method.params.iter().map(|p| &p.ty).collect();
        let count = names.len();
        let (map, serializer, kwargs) = (local("__map"), local("__serializer"), local("__kwargs"));
        let (definition, generics, value) = match names.is_empty() {
            true => (
                quote!(
                    struct __AmqpRpcKwargs;
                ),
                quote!(),
                quote!(__AmqpRpcKwargs),
            ),
            false => (
                quote!(struct __AmqpRpcKwargs<'__amqp_rpc> { #(#names: &'__amqp_rpc #types),* }),
                quote!(<'_>),
                quote!(__AmqpRpcKwargs { #(#names: &#names),* }),
            ),
        };
        quote! {
            #definition
            #[automatically_derived]
            impl #serde::Serialize for __AmqpRpcKwargs #generics {
                fn serialize<__AmqpRpcS: #serde::Serializer>(
                    &self,
                    #serializer: __AmqpRpcS,
                ) -> ::core::result::Result<__AmqpRpcS::Ok, __AmqpRpcS::Error> {
                    let mut #map = #serde::Serializer::serialize_map(
                        #serializer,
                        ::core::option::Option::Some(#count),
                    )?;
                    #(#serde::ser::SerializeMap::serialize_entry::<str, #types>(
                        &mut #map, #keys, self.#names,
                    )?;)*
                    #serde::ser::SerializeMap::end(#map)
                }
            }
            let #kwargs = #value;
        }
    }
}
