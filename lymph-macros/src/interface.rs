//! `#[lymph::interface]`: checks an inherent `impl` block, then generates its `Interface` impl
//! and its typed client.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{
    Attribute, Expr, ExprLit, FnArg, GenericArgument, Ident, ImplItem, ImplItemFn, Item, ItemImpl, Lit, LitStr, Pat,
    Path, PathArguments, ReturnType, Signature, Type, TypePath,
};

use crate::attr::{self, Arg, Errors};

/// Expands `#[lymph::interface(args)]` on `item`.
pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut item_impl = match syn::parse2::<Item>(item.clone()) {
        Ok(Item::Impl(item_impl)) => item_impl,
        Ok(_) => {
            let message = "#[lymph::interface] goes on an inherent `impl Type { ... }` block that holds the \
                           service's #[rpc] methods and #[event] handlers";
            return with_error(item, syn::Error::new(Span::call_site(), message));
        }
        Err(error) => return with_error(item, error),
    };
    // Strip `#[rpc]` and `#[event]` first, so that the impl block is emitted without them even
    // when there are errors (rustc would otherwise also complain about unknown attributes).
    let markers = take_markers(&mut item_impl);
    match Model::new(args, &item_impl, markers) {
        Ok(model) => {
            let generated = model.generate();
            quote! {
                #item_impl
                #generated
            }
        }
        Err(error) => with_error(item_impl.into_token_stream(), error),
    }
}

/// The item followed by the error, as tokio-macros does: other diagnostics stay sane.
fn with_error(mut tokens: TokenStream, error: syn::Error) -> TokenStream {
    tokens.extend(error.into_compile_error());
    tokens
}

/// The `#[rpc]` / `#[event]` attributes found on an item of the impl block.
struct Markers {
    /// The index of the item in `ItemImpl::items`.
    index: usize,
    attrs: Vec<Attribute>,
}

fn is_marker(attr: &Attribute) -> bool {
    ["rpc", "event", "task", "serial_event"].iter().any(|name| attr.path().is_ident(name))
}

fn take_markers(item_impl: &mut ItemImpl) -> Vec<Markers> {
    let mut found = Vec::new();
    for (index, item) in item_impl.items.iter_mut().enumerate() {
        let attrs = match item {
            ImplItem::Fn(f) => &mut f.attrs,
            ImplItem::Const(c) => &mut c.attrs,
            ImplItem::Type(t) => &mut t.attrs,
            ImplItem::Macro(m) => &mut m.attrs,
            _ => continue,
        };
        let (markers, rest): (Vec<_>, Vec<_>) = attrs.drain(..).partition(is_marker);
        *attrs = rest;
        if !markers.is_empty() {
            found.push(Markers { index, attrs: markers });
        }
    }
    found
}

/// Everything the generated code needs, checked.
struct Model {
    krate: Path,
    self_ty: Type,
    /// The type's name, `Echo` for `impl Echo`.
    type_ident: Ident,
    name: String,
    version: Option<String>,
    doc: String,
    rpcs: Vec<Rpc>,
    handlers: Vec<Handler>,
    /// `#[task]` methods: parameters as an RPC's, run from an event.
    tasks: Vec<Rpc>,
}

/// An `#[rpc]` method, or a `#[task]` (which has `task` set).
struct Rpc {
    ident: Ident,
    name: String,
    inputs: Vec<Input>,
    params: Vec<Param>,
    /// `T` of the method's `Result<T>`.
    output: Type,
    /// The whole return type, for spans.
    return_span: Span,
    raises: Vec<String>,
    help: String,
    docs: Vec<Attribute>,
    /// For a `#[task]`: its options.
    task: Option<TaskOptions>,
}

/// The options of `#[task(...)]`.
struct TaskOptions {
    sequential: bool,
}

/// A typed parameter of an `#[rpc]` method.
struct Param {
    ident: Ident,
    name: String,
    ty: Type,
}

/// A non-receiver parameter, in order.
enum Input {
    Ctx,
    Param(usize),
    Event { by_ref: bool, span: Span },
}

/// An `#[event]` handler.
struct Handler {
    ident: Ident,
    name: String,
    inputs: Vec<Input>,
    return_span: Span,
    patterns: Vec<String>,
    queue_name: Option<String>,
    sequential: bool,
    broadcast: bool,
    once: bool,
    retry: u32,
    /// For a `#[serial_event]`: the key field and the partition count.
    serial: Option<(String, u32)>,
}

impl Model {
    fn new(args: TokenStream, item_impl: &ItemImpl, markers: Vec<Markers>) -> syn::Result<Self> {
        let mut errors = Errors::default();

        let (mut name, mut version, mut krate) = (None, None, None);
        for arg in errors.ok(attr::parse_args(args)).unwrap_or_default() {
            match arg {
                Arg::Value { name: option, value } if option == "name" => {
                    let value = errors.ok(attr::expect_str(&option, &value)).and_then(|lit| {
                        if lit.value().is_empty() {
                            errors.spanned(&lit, "the interface name cannot be empty");
                            None
                        } else {
                            Some(lit.value())
                        }
                    });
                    attr::set_once(&mut errors, &mut name, &option, value);
                }
                Arg::Value { name: option, value } if option == "version" => {
                    let value = errors.ok(attr::expect_str(&option, &value).and_then(check_version));
                    attr::set_once(&mut errors, &mut version, &option, value);
                }
                Arg::Value { name: option, value } if option == "crate" => {
                    let value = errors.ok(attr::expect_crate_path(&option, &value));
                    attr::set_once(&mut errors, &mut krate, &option, value);
                }
                Arg::Value { name: option, .. } | Arg::Flag(option) => errors.spanned(
                    &option,
                    format!(
                        "unknown #[lymph::interface] option `{option}`; expected `name = \"...\"`, \
                         `version = \"X.Y.Z\"` or `crate = \"...\"`"
                    ),
                ),
                Arg::Str(lit) => {
                    errors.spanned(&lit, "unexpected string; write the interface name as `name = \"...\"`")
                }
            }
        }

        if let Some((_, trait_path, _)) = &item_impl.trait_ {
            errors.spanned(
                trait_path,
                "#[lymph::interface] goes on an inherent impl block (`impl Echo { ... }`), not on a \
                 trait impl: it generates the `Interface` impl itself",
            );
        }
        if !item_impl.generics.params.is_empty() || item_impl.generics.where_clause.is_some() {
            errors.spanned(
                &item_impl.generics,
                "generic impl blocks are not supported by #[lymph::interface] yet; implement the \
                 interface on a concrete type",
            );
        }
        let type_ident = errors.ok(type_ident(&item_impl.self_ty));

        let mut rpcs = Vec::new();
        let mut handlers = Vec::new();
        let mut tasks = Vec::new();
        for Markers { index, attrs } in markers {
            let ImplItem::Fn(function) = &item_impl.items[index] else {
                errors
                    .spanned(&attrs[0], "#[rpc], #[event] and #[task] go on the `async fn` methods of the impl block");
                continue;
            };
            if let Some(extra) = attrs.get(1) {
                errors.spanned(extra, "a method can have only one #[rpc], #[event] or #[task] attribute");
            }
            let marker = &attrs[0];
            if marker.path().is_ident("rpc") {
                if let Some(rpc) = errors.ok(Rpc::new(marker, function)) {
                    rpcs.push(rpc);
                }
            } else if marker.path().is_ident("task") {
                if let Some(task) = errors.ok(Rpc::new_task(marker, function)) {
                    tasks.push(task);
                }
            } else if let Some(handler) = errors.ok(Handler::new(marker, function)) {
                handlers.push(handler);
            }
        }

        errors.finish()?;
        let type_ident = type_ident.expect("no error, so the type name was found");
        Ok(Self {
            krate: krate.unwrap_or_else(attr::default_crate_path),
            self_ty: (*item_impl.self_ty).clone(),
            // lymph names an interface after its config key, else its class name; services are
            // conventionally lowercase (`echo`), so the default is the type name lowercased.
            name: name.unwrap_or_else(|| type_ident.unraw().to_string().to_lowercase()),
            type_ident,
            version,
            doc: attr::doc_string(&item_impl.attrs),
            rpcs,
            handlers,
            tasks,
        })
    }

    fn generate(&self) -> TokenStream {
        let interface = self.generate_interface();
        let client = self.generate_client();
        quote! {
            #interface
            #client
        }
    }

    fn generate_interface(&self) -> TokenStream {
        let Self { krate, self_ty, name, version, doc, .. } = self;
        let p = quote!(#krate::__private);
        let version = match version {
            Some(version) => quote!(::core::option::Option::Some(#version)),
            None => quote!(::core::option::Option::None),
        };
        let methods = self.rpcs.iter().map(|rpc| {
            let Rpc { name, help, raises, .. } = rpc;
            let params = rpc.params.iter().map(|param| &param.name);
            quote! {
                #p::MethodSpec {
                    name: #name,
                    params: &[#(#params),*],
                    help: #help,
                    raises: &[#(#raises),*],
                }
            }
        });
        let handlers = self.handlers.iter().map(|handler| {
            let Handler { name, patterns, sequential, broadcast, once, retry, .. } = handler;
            let serial = match &handler.serial {
                Some((key, partitions)) => {
                    quote!(::core::option::Option::Some(#p::SerialSpec { key: #key, partitions: #partitions }))
                }
                None => quote!(::core::option::Option::None),
            };
            let queue_name = match &handler.queue_name {
                Some(queue_name) => quote!(::core::option::Option::Some(#queue_name)),
                None => quote!(::core::option::Option::None),
            };
            quote! {
                #p::EventHandlerSpec {
                    name: #name,
                    patterns: &[#(#patterns),*],
                    queue_name: #queue_name,
                    sequential: #sequential,
                    broadcast: #broadcast,
                    once: #once,
                    retry: #retry,
                    task: false,
                    serial: #serial,
                }
            }
        });
        let task_specs = self.tasks.iter().map(|task| {
            let name = &task.name;
            let sequential = task.task.as_ref().is_some_and(|options| options.sequential);
            quote! {
                #p::EventHandlerSpec {
                    name: #name,
                    patterns: &[],
                    queue_name: ::core::option::Option::None,
                    sequential: #sequential,
                    broadcast: false,
                    once: false,
                    retry: 0,
                    task: true,
                    serial: ::core::option::Option::None,
                }
            }
        });
        let call_arms = self.rpcs.iter().map(|rpc| self.call_arm(rpc));
        let event_arms = self.handlers.iter().map(|handler| self.event_arm(handler));
        let task_arms = self.tasks.iter().map(|task| self.task_arm(task));

        quote! {
            // A method returning `lymph::Result` needs no conversion of its error; others do.
            #[allow(clippy::useless_conversion)]
            impl #p::Interface for #self_ty {
                fn spec(&self) -> &'static #p::InterfaceSpec {
                    static SPEC: #p::InterfaceSpec = #p::InterfaceSpec {
                        name: #name,
                        version: #version,
                        doc: #doc,
                        methods: &[#(#methods),*],
                        event_handlers: &[#(#handlers,)* #(#task_specs),*],
                    };
                    &SPEC
                }

                fn call<'__lymph>(
                    &'__lymph self,
                    __lymph_ctx: &'__lymph #krate::Context,
                    __lymph_method: &'__lymph str,
                    __lymph_body: &'__lymph [u8],
                ) -> #p::BoxFuture<'__lymph, ::core::result::Result<::std::vec::Vec<u8>, #p::CallError>> {
                    ::std::boxed::Box::pin(async move {
                        match __lymph_method {
                            #(#call_arms)*
                            _ => ::core::result::Result::Err(#p::CallError::UnknownMethod),
                        }
                    })
                }

                fn handle_event<'__lymph>(
                    &'__lymph self,
                    __lymph_ctx: &'__lymph #krate::Context,
                    __lymph_handler: &'__lymph str,
                    __lymph_event: &'__lymph #krate::Event,
                ) -> #p::BoxFuture<'__lymph, ::core::result::Result<(), #krate::Error>> {
                    ::std::boxed::Box::pin(async move {
                        match __lymph_handler {
                            #(#event_arms)*
                            #(#task_arms)*
                            _ => ::core::result::Result::Err(#krate::Error::Config(::std::format!(
                                "interface `{}` has no event handler `{}`",
                                #name,
                                __lymph_handler,
                            ))),
                        }
                    })
                }
            }
        }
    }

    /// The items that decode a method's keyword arguments (`__LymphArgs` and one decoder per
    /// argument, so that a mistyped argument is named in the error), and the call of the method.
    fn decode_and_call(&self, rpc: &Rpc) -> (TokenStream, TokenStream) {
        let krate = &self.krate;
        let p = quote!(#krate::__private);
        let serde_crate = serde_crate(krate);
        let self_ty = self.self_ty.to_token_stream();
        let fields = rpc.params.iter().enumerate().map(|(i, param)| {
            let Param { ident, ty, .. } = param;
            let ty = attr::replace_self(ty.to_token_stream(), &self_ty);
            let with = LitStr::new(&format!("__lymph_arg_{i}"), Span::call_site());
            // `Option` arguments may be left out, as Python's `def f(x=None)`.
            let default = is_option(&param.ty).then(|| quote!(default,));
            quote_spanned! {param.ty.span()=>
                #[serde(#default deserialize_with = #with)]
                #ident: #ty,
            }
        });
        let decoders = rpc.params.iter().enumerate().map(|(i, param)| {
            let ty = attr::replace_self(param.ty.to_token_stream(), &self_ty);
            let function = format_ident!("__lymph_arg_{}", i);
            let message = format!("argument `{}: {}`: {{}}", param.name, type_name(&param.ty));
            quote_spanned! {param.ty.span()=>
                fn #function<'de, D>(deserializer: D) -> ::core::result::Result<#ty, D::Error>
                where
                    D: #p::serde::Deserializer<'de>,
                {
                    <#ty as #p::serde::Deserialize<'de>>::deserialize(deserializer)
                        .map_err(|e| <D::Error as #p::serde::de::Error>::custom(::core::format_args!(#message, e)))
                }
            }
        });
        let items = quote! {
            #[derive(#p::serde::Deserialize)]
            #[serde(crate = #serde_crate, deny_unknown_fields, expecting = "a map of keyword arguments")]
            struct __LymphArgs {
                #(#fields)*
            }
            #(#decoders)*
        };
        let ident = &rpc.ident;
        let args = rpc.inputs.iter().map(|input| match input {
            Input::Ctx => quote!(__lymph_ctx),
            Input::Param(i) => {
                let field = &rpc.params[*i].ident;
                quote!(__lymph_args.#field)
            }
            Input::Event { .. } => unreachable!("rpc methods and tasks take no event"),
        });
        let call = quote_spanned!(rpc.return_span=> self.#ident(#(#args),*).await);
        (items, call)
    }

    /// The `match` arm of `Interface::call` for one method: decode the keyword arguments, call,
    /// encode the result.
    fn call_arm(&self, rpc: &Rpc) -> TokenStream {
        let krate = &self.krate;
        let p = quote!(#krate::__private);
        let name = &rpc.name;
        let (items, call) = self.decode_and_call(rpc);
        let encode = quote_spanned! {rpc.output.span()=>
            #p::codec::to_msgpack(&__lymph_value)
                .map_err(|e| #p::CallError::Failed(::core::convert::From::from(e)))
        };
        quote! {
            #name => {
                #items
                let __lymph_args: __LymphArgs = #p::codec::from_msgpack(__lymph_body)
                    .map_err(|e| #p::CallError::BadArguments(match e {
                        #p::codec::DecodeError::Serde(reason) => ::std::format!("{}: {}", #name, reason),
                        other => ::std::format!("{}: {}", #name, other),
                    }))?;
                let __lymph_value = ::core::result::Result::map_err(#call, |e| {
                    #p::CallError::Failed(::core::convert::Into::<#krate::Error>::into(e))
                })?;
                #encode
            }
        }
    }

    /// The `match` arm of `Interface::handle_event` for one task: the event's body holds the
    /// keyword arguments.
    fn task_arm(&self, task: &Rpc) -> TokenStream {
        let krate = &self.krate;
        let p = quote!(#krate::__private);
        let name = &task.name;
        let (items, call) = self.decode_and_call(task);
        quote! {
            #name => {
                #items
                let __lymph_body = #krate::Value::to_msgpack(&__lymph_event.body);
                let __lymph_args: __LymphArgs = #p::codec::from_msgpack(&__lymph_body)
                    .map_err(::core::convert::Into::<#krate::Error>::into)?;
                ::core::result::Result::map_err(#call, ::core::convert::Into::<#krate::Error>::into)
            }
        }
    }

    /// The `match` arm of `Interface::handle_event` for one handler.
    fn event_arm(&self, handler: &Handler) -> TokenStream {
        let krate = &self.krate;
        let Handler { ident, name, .. } = handler;
        let args = handler.inputs.iter().map(|input| match input {
            Input::Ctx => quote!(__lymph_ctx),
            Input::Event { by_ref: true, span } => quote_spanned!(*span=> __lymph_event),
            Input::Event { by_ref: false, span } => {
                quote_spanned!(*span=> ::core::clone::Clone::clone(__lymph_event))
            }
            Input::Param(_) => unreachable!("event handlers take no parameters"),
        });
        // The call carries the return type's span (a wrong return type is reported there); the
        // conversion does not, so that lints see it as generated code.
        let call = quote_spanned!(handler.return_span=> self.#ident(#(#args),*).await);
        quote! {
            #name => ::core::result::Result::map_err(#call, ::core::convert::Into::<#krate::Error>::into),
        }
    }

    fn generate_client(&self) -> TokenStream {
        let Self { krate, name, type_ident, .. } = self;
        let p = quote!(#krate::__private);
        let client = format_ident!("{}Client", type_ident.unraw());
        let client_doc = format!(
            "A typed client of the `{name}` service, generated by `#[lymph::interface]` on `{type_ident}`.\n\n\
             Create it with `Container::client` or from a proxy with [`{client}::new`]; each method \
             calls the service's RPC method of the same name, and `apply_<task>` applies a task."
        );
        let methods = self.rpcs.iter().chain(&self.tasks).map(|rpc| self.client_method(rpc));
        quote! {
            #[doc = #client_doc]
            #[derive(::core::clone::Clone, ::core::fmt::Debug)]
            pub struct #client {
                proxy: #krate::Proxy,
            }

            impl #client {
                /// Wraps a proxy to the service.
                pub fn new(proxy: #krate::Proxy) -> Self {
                    Self { proxy }
                }

                /// The proxy the client calls through.
                pub fn proxy(&self) -> &#krate::Proxy {
                    &self.proxy
                }

                #(#methods)*
            }

            impl #p::Client for #client {
                const SERVICE: &'static str = #name;

                fn from_proxy(proxy: #krate::Proxy) -> Self {
                    Self::new(proxy)
                }
            }
        }
    }

    /// The typed client's method for an RPC method (same name, calls it) or a task
    /// (`apply_<name>`, applies it).
    fn client_method(&self, rpc: &Rpc) -> TokenStream {
        let Self { krate, name, .. } = self;
        let p = quote!(#krate::__private);
        let self_ty = self.self_ty.to_token_stream();
        let Rpc { ident, name: method, .. } = rpc;
        let output = attr::replace_self(rpc.output.to_token_stream(), &self_ty);
        let idents: Vec<_> = rpc.params.iter().map(|param| &param.ident).collect();
        let types: Vec<_> =
            rpc.params.iter().map(|param| attr::replace_self(param.ty.to_token_stream(), &self_ty)).collect();
        let docs: Vec<_> = attr::doc_attrs(&rpc.docs).collect();
        let docs = match (&rpc.task, docs.is_empty()) {
            (None, true) => {
                let doc = format!("Calls the `{method}` method of the `{name}` service.");
                quote!(#[doc = #doc])
            }
            (None, false) => quote!(#(#docs)*),
            (Some(_), _) => {
                let doc = format!(
                    "Applies the `{method}` task of the `{name}` service: emits \
                     `lymph.tasks.{name}.{method}` for one of its workers to run.",
                );
                quote!(#[doc = #doc] #[doc = ""] #(#docs)*)
            }
        };
        let (ident, call) = match &rpc.task {
            None => (
                ident.clone(),
                quote_spanned! {rpc.output.span()=>
                    self.proxy.call(#method, &__LymphArgs { #(#idents: &#idents),* }).await
                },
            ),
            Some(_) => (
                format_ident!("apply_{}", ident.unraw()),
                quote! {
                    self.proxy.apply(#method, &__LymphArgs { #(#idents: &#idents),* }).await
                },
            ),
        };
        let (lifetime, reference, anonymous) = if idents.is_empty() {
            (quote!(), quote!(), quote!())
        } else {
            (quote!(<'__lymph>), quote!(&'__lymph), quote!(<'_>))
        };
        let fields = rpc.params.iter().zip(&types).map(|(param, ty)| {
            let ident = &param.ident;
            quote_spanned!(param.ty.span()=> #ident: #reference #ty,)
        });
        // Serialized by hand (not derived) so that a type error points at the parameter type.
        let count = rpc.params.len();
        let serialize_fields = rpc.params.iter().map(|param| {
            let Param { ident, name, .. } = param;
            quote_spanned! {param.ty.span()=>
                #p::serde::ser::SerializeStruct::serialize_field(&mut __lymph_state, #name, self.#ident)?;
            }
        });
        quote! {
            #docs
            pub async fn #ident(&self, #(#idents: #types),*) -> #krate::Result<#output> {
                struct __LymphArgs #lifetime {
                    #(#fields)*
                }
                impl #p::serde::Serialize for __LymphArgs #anonymous {
                    fn serialize<S>(&self, serializer: S) -> ::core::result::Result<S::Ok, S::Error>
                    where
                        S: #p::serde::Serializer,
                    {
                        let mut __lymph_state = #p::serde::Serializer::serialize_struct(serializer, #method, #count)?;
                        #(#serialize_fields)*
                        #p::serde::ser::SerializeStruct::end(__lymph_state)
                    }
                }
                #call
            }
        }
    }
}

impl Rpc {
    fn new(marker: &Attribute, function: &ImplItemFn) -> syn::Result<Self> {
        let mut errors = Errors::default();
        let mut raises = Vec::new();
        for arg in errors.ok(marker_args(marker)).unwrap_or_default() {
            match arg {
                Arg::Value { name, value } if name == "raises" => raises.extend(errors.ok(parse_raises(&value))),
                Arg::Value { name, .. } | Arg::Flag(name) => errors
                    .spanned(&name, format!("unknown #[rpc] option `{name}`; expected `raises = [ErrorType, ...]`")),
                Arg::Str(lit) => errors.spanned(&lit, "unexpected string; #[rpc] takes `raises = [ErrorType, ...]`"),
            }
        }
        let raises = raises.into_iter().flatten().collect();
        Self::build(function, raises, None, errors)
    }

    /// A `#[task]` or `#[task(sequential)]` method: parameters as an RPC method's, returns
    /// `lymph::Result<()>`.
    fn new_task(marker: &Attribute, function: &ImplItemFn) -> syn::Result<Self> {
        let mut errors = Errors::default();
        let mut sequential = false;
        for arg in errors.ok(marker_args(marker)).unwrap_or_default() {
            match arg {
                Arg::Flag(name) if name == "sequential" => sequential = true,
                Arg::Value { name, .. } | Arg::Flag(name) => {
                    errors.spanned(&name, format!("unknown #[task] option `{name}`; expected `sequential`"))
                }
                Arg::Str(lit) => errors.spanned(&lit, "unexpected string; #[task] takes `sequential`"),
            }
        }
        let task = Self::build(function, Vec::new(), Some(TaskOptions { sequential }), errors)?;
        if !matches!(&task.output, Type::Tuple(unit) if unit.elems.is_empty()) {
            return Err(syn::Error::new(task.return_span, "a #[task] must return `lymph::Result<()>`"));
        }
        Ok(task)
    }

    fn build(
        function: &ImplItemFn,
        raises: Vec<String>,
        task: Option<TaskOptions>,
        mut errors: Errors,
    ) -> syn::Result<Self> {
        let sig = &function.sig;
        let what = if task.is_some() { "a #[task]" } else { "an #[rpc] method" };
        check_signature(what, sig, &mut errors);
        let name = sig.ident.unraw().to_string();
        if task.is_none() && (name == "new" || name == "proxy") {
            errors.spanned(
                &sig.ident,
                format!("an #[rpc] method cannot be named `{name}`: the generated client has a method of that name"),
            );
        }

        let mut inputs = Vec::new();
        let mut params = Vec::new();
        for input in sig.inputs.iter().skip_while(|input| matches!(input, FnArg::Receiver(_))) {
            let FnArg::Typed(typed) = input else { continue };
            if take_context(typed, &mut inputs, &mut errors) {
                continue;
            }
            match &*typed.pat {
                Pat::Ident(pat) if pat.by_ref.is_none() && pat.subpat.is_none() => {
                    inputs.push(Input::Param(params.len()));
                    params.push(Param {
                        ident: pat.ident.clone(),
                        name: pat.ident.unraw().to_string(),
                        ty: (*typed.ty).clone(),
                    });
                }
                pat => errors.spanned(
                    pat,
                    format!(
                        "{} must be a plain name such as `text: String`: callers pass arguments by name",
                        if task.is_some() { "a #[task] parameter" } else { "an #[rpc] parameter" }
                    ),
                ),
            }
        }

        let output = match &sig.output {
            ReturnType::Type(_, ty) => match result_ok_type(ty) {
                Some(output) => Some(output.clone()),
                None => {
                    errors.spanned(ty, format!("{what} must return `lymph::Result<T>`"));
                    None
                }
            },
            ReturnType::Default => {
                errors.error(
                    sig.paren_token.span.close(),
                    format!("{what} must return `lymph::Result<T>` (`lymph::Result<()>` for no value)"),
                );
                None
            }
        };

        errors.finish()?;
        Ok(Self {
            ident: sig.ident.clone(),
            name,
            inputs,
            params,
            output: output.expect("no error, so the return type was found"),
            return_span: sig.output.span(),
            raises,
            help: attr::doc_string(&function.attrs),
            docs: attr::doc_attrs(&function.attrs).cloned().collect(),
            task,
        })
    }
}

impl Handler {
    fn new(marker: &Attribute, function: &ImplItemFn) -> syn::Result<Self> {
        let mut errors = Errors::default();
        let sig = &function.sig;
        let mut patterns = Vec::new();
        let (mut queue_name, mut retry) = (None, None);
        let (mut sequential, mut broadcast, mut once) = (None, None, None);
        let serial = marker.path().is_ident("serial_event");
        let attribute = if serial { "#[serial_event]" } else { "#[event]" };
        let (mut key, mut partition_count) = (None, None);
        let args = errors.ok(marker_args(marker));
        let parsed = args.is_some();
        for arg in args.unwrap_or_default() {
            let (name, value) = match arg {
                Arg::Str(lit) => {
                    if lit.value().is_empty() || lit.value().split('.').any(str::is_empty) {
                        errors.spanned(
                            &lit,
                            "an event type pattern is dot-separated words, such as `order.created` or `order.#`",
                        );
                    }
                    patterns.push(lit.value());
                    continue;
                }
                Arg::Flag(name) => (name, None),
                Arg::Value { name, value } => (name, Some(value)),
            };
            let flag = |errors: &mut Errors| match &value {
                None => Some(true),
                Some(value) => errors.ok(attr::expect_bool(&name, value)),
            };
            let needs_value = |errors: &mut Errors| {
                if value.is_none() {
                    errors.spanned(&name, format!("`{name}` needs a value: `{name} = ...`"));
                }
                value.as_ref()
            };
            if serial && name == "key" {
                let value = needs_value(&mut errors)
                    .and_then(|value| errors.ok(attr::expect_str(&name, value)))
                    .map(|lit| lit.value());
                attr::set_once(&mut errors, &mut key, &name, value);
            } else if serial && name == "partition_count" {
                let value = needs_value(&mut errors).and_then(|value| errors.ok(attr::expect_int::<u32>(&name, value)));
                if value == Some(0) {
                    errors.spanned(&name, "`partition_count` must be at least 1");
                }
                attr::set_once(&mut errors, &mut partition_count, &name, value);
            } else if serial && ["sequential", "broadcast", "once"].contains(&name.to_string().as_str()) {
                errors.spanned(
                    &name,
                    format!("a #[serial_event] handler cannot be `{name}`: each partition is consumed in order by one instance"),
                );
            } else if name == "sequential" {
                let value = flag(&mut errors).map(|on| (on, name.clone()));
                attr::set_once(&mut errors, &mut sequential, &name, value);
            } else if name == "broadcast" {
                let value = flag(&mut errors).map(|on| (on, name.clone()));
                attr::set_once(&mut errors, &mut broadcast, &name, value);
            } else if name == "once" {
                let value = flag(&mut errors).map(|on| (on, name.clone()));
                attr::set_once(&mut errors, &mut once, &name, value);
            } else if name == "retry" {
                let value = needs_value(&mut errors).and_then(|value| errors.ok(attr::expect_int::<u32>(&name, value)));
                attr::set_once(&mut errors, &mut retry, &name, value);
            } else if name == "queue_name" {
                let value = needs_value(&mut errors)
                    .and_then(|value| errors.ok(attr::expect_str(&name, value)))
                    .map(|lit| lit.value());
                attr::set_once(&mut errors, &mut queue_name, &name, value);
            } else if serial {
                errors.spanned(
                    &name,
                    format!(
                        "unknown #[serial_event] option `{name}`; expected event type patterns, \
                         `key = \"body field\"`, `partition_count = N`, `retry = N` or `queue_name = \"...\"`"
                    ),
                );
            } else {
                errors.spanned(
                    &name,
                    format!(
                        "unknown #[event] option `{name}`; expected event type patterns (\"a.b\", \"a.*\", \
                         \"a.#\"), `sequential`, `broadcast`, `once`, `retry = N` or `queue_name = \"...\"`"
                    ),
                );
            }
        }
        if patterns.is_empty() && parsed {
            errors.spanned(
                marker,
                format!("{attribute} needs at least one event type pattern, e.g. {attribute}(\"order.created\")"),
            );
        }
        if serial && key.is_none() && parsed {
            errors.spanned(marker, "#[serial_event] needs the body field that orders events: `key = \"order_id\"`");
        }
        if let (Some((true, _)), Some((true, once))) = (&broadcast, &once) {
            errors.spanned(once, "`once` and `broadcast` cannot be combined (as in lymph)");
        }

        check_signature("an #[event] handler", sig, &mut errors);

        let mut inputs = Vec::new();
        for input in sig.inputs.iter().skip_while(|input| matches!(input, FnArg::Receiver(_))) {
            let FnArg::Typed(typed) = input else { continue };
            if take_context(typed, &mut inputs, &mut errors) {
                continue;
            }
            if inputs.iter().any(|input| matches!(input, Input::Event { .. })) {
                errors.spanned(
                    typed,
                    "an #[event] handler takes one event: `async fn name(&self, [ctx: &Context,] event: Event)`",
                );
            } else {
                let by_ref = matches!(&*typed.ty, Type::Reference(_));
                inputs.push(Input::Event { by_ref, span: typed.ty.span() });
            }
        }
        if !inputs.iter().any(|input| matches!(input, Input::Event { .. })) {
            errors.error(
                sig.paren_token.span.join(),
                "an #[event] handler takes the event: `async fn name(&self, [ctx: &Context,] event: Event)`",
            );
        }
        if let ReturnType::Default = sig.output {
            errors.error(sig.paren_token.span.close(), "an #[event] handler must return `lymph::Result<()>`");
        }

        errors.finish()?;
        Ok(Self {
            ident: sig.ident.clone(),
            name: sig.ident.unraw().to_string(),
            inputs,
            return_span: sig.output.span(),
            patterns,
            queue_name,
            sequential: sequential.is_some_and(|(on, _)| on),
            broadcast: broadcast.is_some_and(|(on, _)| on),
            once: once.is_some_and(|(on, _)| on),
            retry: retry.unwrap_or(0),
            // lymph's default partition count.
            serial: key.map(|key| (key, partition_count.unwrap_or(12))),
        })
    }
}

/// The arguments of `#[rpc(...)]` / `#[event(...)]` (none for a bare `#[rpc]`).
fn marker_args(marker: &Attribute) -> syn::Result<Vec<Arg>> {
    match &marker.meta {
        syn::Meta::Path(_) => Ok(Vec::new()),
        syn::Meta::List(list) => attr::parse_args(list.tokens.clone()),
        syn::Meta::NameValue(nv) => Err(syn::Error::new_spanned(
            nv,
            format!("write #[{}(...)], not #[{} = ...]", nv.path.to_token_stream(), nv.path.to_token_stream()),
        )),
    }
}

/// `raises = [ValueError, "KeyError"]` (or a single type): the error type names.
fn parse_raises(value: &Expr) -> syn::Result<Vec<String>> {
    let one = |expr: &Expr| match expr {
        Expr::Lit(ExprLit { lit: Lit::Str(lit), .. }) if !lit.value().is_empty() => Ok(lit.value()),
        Expr::Path(path) if path.qself.is_none() => {
            Ok(path.path.segments.last().expect("a path has a segment").ident.unraw().to_string())
        }
        _ => Err(syn::Error::new_spanned(
            expr,
            "`raises` lists error type names, e.g. `raises = [ValueError, \"KeyError\"]`",
        )),
    };
    match value {
        Expr::Array(array) => array.elems.iter().map(one).collect(),
        other => one(other).map(|name| vec![name]),
    }
}

/// Checks what `#[rpc]` methods and `#[event]` handlers have in common: `async fn(&self, ...)`,
/// not generic.
fn check_signature(what: &str, sig: &Signature, errors: &mut Errors) {
    if sig.asyncness.is_none() {
        errors.spanned(sig.fn_token, format!("{what} must be an `async fn`"));
    }
    if let Some(constness) = &sig.constness {
        errors.spanned(constness, format!("{what} cannot be `const`"));
    }
    if let Some(unsafety) = &sig.unsafety {
        errors.spanned(unsafety, format!("{what} cannot be `unsafe`"));
    }
    if let Some(abi) = &sig.abi {
        errors.spanned(abi, format!("{what} cannot have an ABI"));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        errors.spanned(&sig.generics, format!("{what} cannot be generic"));
    }
    if let Some(variadic) = &sig.variadic {
        errors.spanned(variadic, format!("{what} cannot be variadic"));
    }
    match sig.inputs.first() {
        Some(FnArg::Receiver(receiver)) => {
            let by_shared_ref = match (&receiver.reference, &receiver.colon_token) {
                (Some(_), None) => receiver.mutability.is_none(),
                // `self: &Self`
                (None, Some(_)) => matches!(&*receiver.ty, Type::Reference(r) if r.mutability.is_none()
                    && matches!(&*r.elem, Type::Path(p) if p.path.is_ident("Self"))),
                _ => false,
            };
            if !by_shared_ref {
                let reason = if receiver.reference.is_some() {
                    "calls run concurrently on one shared instance; use interior mutability (e.g. a Mutex) for state"
                } else {
                    "the container keeps the instance and shares it between concurrent calls"
                };
                let written = match (&receiver.reference, &receiver.mutability) {
                    (Some(_), Some(_)) => "&mut self".to_owned(),
                    (None, None) if receiver.colon_token.is_none() => "self".to_owned(),
                    _ => receiver.to_token_stream().to_string(),
                };
                errors.spanned(receiver, format!("{what} must take `&self`, not `{written}`: {reason}"));
            }
        }
        _ => errors.error(sig.paren_token.span.join(), format!("{what} must take `&self` as its first parameter")),
    }
}

/// Notes a `&Context` parameter (once only); true when `typed` is one.
fn take_context(typed: &syn::PatType, inputs: &mut Vec<Input>, errors: &mut Errors) -> bool {
    if !is_context(&typed.ty) {
        return false;
    }
    if inputs.iter().any(|input| matches!(input, Input::Ctx)) {
        errors.spanned(typed, "the context can be taken only once");
    }
    inputs.push(Input::Ctx);
    true
}

/// Whether `ty` is `&Context` (any path whose last segment is `Context`).
fn is_context(ty: &Type) -> bool {
    match ty {
        Type::Reference(reference) => matches!(
            &*reference.elem,
            Type::Path(TypePath { qself: None, path }) if path.segments.last().is_some_and(|s| s.ident == "Context")
        ),
        _ => false,
    }
}

/// Whether `ty` is written `Option<..>` (or `std::option::Option<..>`, ...).
fn is_option(ty: &Type) -> bool {
    matches!(ty, Type::Path(TypePath { qself: None, path }) if path.segments.last().is_some_and(|s| s.ident == "Option"))
}

/// `T` of `Result<T>` / `Result<T, E>` / `lymph::Result<T>`.
fn result_ok_type(ty: &Type) -> Option<&Type> {
    let Type::Path(TypePath { qself: None, path }) = ty else { return None };
    let last = path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else { return None };
    match args.args.first()? {
        GenericArgument::Type(ty) => Some(ty),
        _ => None,
    }
}

/// The name of the implementing type, `Echo` for `impl Echo`.
fn type_ident(ty: &Type) -> syn::Result<Ident> {
    match ty {
        Type::Path(TypePath { qself: None, path }) => {
            let last = path.segments.last().expect("a path has a segment");
            if !last.arguments.is_none() {
                return Err(syn::Error::new_spanned(
                    &last.arguments,
                    "generic types are not supported by #[lymph::interface] yet; implement the \
                     interface on a concrete, non-generic type",
                ));
            }
            Ok(last.ident.clone())
        }
        _ => Err(syn::Error::new_spanned(ty, "#[lymph::interface] needs a named type, as in `impl Echo { ... }`")),
    }
}

/// Checks that a version is `X.Y.Z`.
fn check_version(lit: LitStr) -> syn::Result<String> {
    let version = lit.value();
    let parts: Vec<&str> = version.split('.').collect();
    let valid = parts.len() == 3
        && parts
            .iter()
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) && part.parse::<u64>().is_ok());
    if valid {
        Ok(version)
    } else {
        Err(syn::Error::new_spanned(
            &lit,
            format!("invalid interface version `{version}`: expected `X.Y.Z` with numbers, e.g. `1.2.0`"),
        ))
    }
}

/// The string for `#[serde(crate = "...")]`: serde as the lymph crate re-exports it.
fn serde_crate(krate: &Path) -> LitStr {
    let mut path = String::new();
    if krate.leading_colon.is_some() {
        path.push_str("::");
    }
    let segments: Vec<String> = krate.segments.iter().map(|segment| segment.ident.to_string()).collect();
    path.push_str(&segments.join("::"));
    path.push_str("::__private::serde");
    LitStr::new(&path, Span::call_site())
}

/// `ty` as written, for messages: `Option<Vec<u8>>`, not `Option < Vec < u8 > >`.
fn type_name(ty: &Type) -> String {
    let mut name = ty.to_token_stream().to_string();
    for (spaced, tight) in
        [(" < ", "<"), ("< ", "<"), (" <", "<"), (" >", ">"), (" :: ", "::"), (":: ", "::"), (" ,", ","), ("& ", "&")]
    {
        name = name.replace(spaced, tight);
    }
    name
}
