//! `#[lymph::test]`: turns `async fn name(world: World)` into a `#[test]` that runs the body in
//! the simulator through `lymph::__private::Runner`.

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};
use syn::{Attribute, FnArg, Ident, ItemFn, Path, ReturnType};

use crate::attr::{self, Arg, Errors};

/// Expands `#[lymph::test(args)]` on `item`.
pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let function = match syn::parse2::<ItemFn>(item.clone()) {
        Ok(function) => function,
        Err(error) => return with_error(item, error),
    };
    match Config::new(args, &function) {
        Ok(config) => config.generate(function),
        Err(error) => with_error(item, error),
    }
}

/// The item followed by the error, as tokio-macros does: other diagnostics stay sane.
fn with_error(mut tokens: TokenStream, error: syn::Error) -> TokenStream {
    tokens.extend(error.into_compile_error());
    tokens
}

/// The checked options of `#[lymph::test]`.
struct Config {
    krate: Path,
    seed: Option<u64>,
    seeds: Option<u32>,
    check_determinism: Option<bool>,
}

impl Config {
    fn new(args: TokenStream, function: &ItemFn) -> syn::Result<Self> {
        let mut errors = Errors::default();
        let (mut krate, mut seed, mut seeds, mut check_determinism) = (None, None, None, None);
        // The first of `seed` / `seeds`, to report the second.
        let mut seeding: Option<Ident> = None;
        for arg in errors.ok(attr::parse_args(args)).unwrap_or_default() {
            let (name, value) = match arg {
                Arg::Flag(name) => (name, None),
                Arg::Value { name, value } => (name, Some(value)),
                Arg::Str(lit) => {
                    errors.spanned(&lit, "unexpected string; #[lymph::test] takes `name = value` options");
                    continue;
                }
            };
            if name == "seed" || name == "seeds" {
                if let Some(first) = &seeding
                    && *first != name
                {
                    errors.spanned(
                        &name,
                        format!(
                            "`seed` and `seeds` cannot be combined: `seed = N` runs one given seed, \
                             `seeds = N` runs N seeds (`{first}` is already given)"
                        ),
                    );
                    continue;
                }
                seeding = Some(name.clone());
            }
            match (name.to_string().as_str(), &value) {
                ("check_determinism", value) => {
                    let on = match value {
                        None => Some(true),
                        Some(value) => errors.ok(attr::expect_bool(&name, value)),
                    };
                    attr::set_once(&mut errors, &mut check_determinism, &name, on);
                }
                ("seed", Some(value)) => {
                    let value = errors.ok(attr::expect_int::<u64>(&name, value));
                    attr::set_once(&mut errors, &mut seed, &name, value);
                }
                ("seeds", Some(value)) => {
                    let value = errors.ok(attr::expect_int::<u32>(&name, value)).and_then(|n| {
                        if n == 0 {
                            errors.spanned(value, "`seeds` must be at least 1");
                            None
                        } else {
                            Some(n)
                        }
                    });
                    attr::set_once(&mut errors, &mut seeds, &name, value);
                }
                ("crate", Some(value)) => {
                    let value = errors.ok(attr::expect_crate_path(&name, value));
                    attr::set_once(&mut errors, &mut krate, &name, value);
                }
                ("seed" | "seeds" | "crate", None) => {
                    errors.spanned(&name, format!("`{name}` needs a value: `{name} = ...`"))
                }
                _ => errors.spanned(
                    &name,
                    format!(
                        "unknown #[lymph::test] option `{name}`; expected `seed = N`, `seeds = N`, \
                         `check_determinism` or `crate = \"...\"`"
                    ),
                ),
            }
        }

        check_function(function, &mut errors);
        errors.finish()?;
        Ok(Self { krate: krate.unwrap_or_else(attr::default_crate_path), seed, seeds, check_determinism })
    }

    fn generate(self, function: ItemFn) -> TokenStream {
        let Self { krate, seed, seeds, check_determinism } = self;
        let ItemFn { attrs, vis, sig, block } = function;
        let ident = &sig.ident;
        let name = ident.to_string();
        let Some(FnArg::Typed(world)) = sig.inputs.first() else { unreachable!("checked: one typed parameter") };
        let (pat, ty) = (&world.pat, &world.ty);
        let output = match &sig.output {
            ReturnType::Default => quote!(()),
            ReturnType::Type(_, ty) => ty.to_token_stream(),
        };
        let seed = seed.map(|seed| quote!(.seed(#seed)));
        let seeds = seeds.map(|seeds| quote!(.seeds(#seeds)));
        let check_determinism = check_determinism.map(|on| quote!(.check_determinism(#on)));
        quote! {
            #[::core::prelude::v1::test]
            #(#attrs)*
            #vis fn #ident() {
                #krate::__private::Runner::new(
                    ::core::concat!(::core::module_path!(), "::", #name),
                    ::core::env!("CARGO_PKG_NAME"),
                    ::core::env!("CARGO_CRATE_NAME"),
                )
                #seed
                #seeds
                #check_determinism
                .run(|#pat: #ty| async move {
                    let __lymph_body = async move #block;
                    let __lymph_body = ::core::pin::pin!(__lymph_body);
                    // Pins the body's output type, so that `?` in the body needs no annotation.
                    let __lymph_body: ::core::pin::Pin<&mut dyn ::core::future::Future<Output = #output>> =
                        __lymph_body;
                    __lymph_body.await
                })
            }
        }
    }
}

/// Checks the shape `async fn name(world: World) [-> R]`.
fn check_function(function: &ItemFn, errors: &mut Errors) {
    let sig = &function.sig;
    if let Some(attr) = function.attrs.iter().find(|attr| is_test_attribute(attr)) {
        errors.spanned(attr, "second test attribute is supplied; #[lymph::test] already makes the function a test");
    }
    if sig.asyncness.is_none() {
        errors.spanned(sig.fn_token, "the `async` keyword is missing from the function declaration");
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        errors.spanned(&sig.generics, "a #[lymph::test] function cannot be generic");
    }
    let usage = "a #[lymph::test] function takes one parameter, the simulated world: `async fn name(world: World)`";
    match sig.inputs.len() {
        0 => errors.error(sig.paren_token.span.join(), usage),
        1 => {}
        _ => {
            let extra: TokenStream = sig.inputs.iter().skip(1).map(|input| input.to_token_stream()).collect();
            errors.spanned(extra, usage);
        }
    }
    if let Some(FnArg::Receiver(receiver)) = sig.inputs.first() {
        errors.spanned(receiver, usage);
    }
    if let Some(variadic) = &sig.variadic {
        errors.spanned(variadic, "a #[lymph::test] function cannot be variadic");
    }
}

/// Whether `attr` is `#[test]` or `#[::core::prelude::v1::test]` (and the like).
fn is_test_attribute(attr: &Attribute) -> bool {
    let syn::Meta::Path(path) = &attr.meta else { return false };
    match path.segments.len() {
        1 => path.leading_colon.is_none() && path.segments[0].ident == "test",
        4 => {
            let s: Vec<String> = path.segments.iter().map(|segment| segment.ident.to_string()).collect();
            (s[0] == "core" || s[0] == "std") && s[1] == "prelude" && s[3] == "test"
        }
        _ => false,
    }
}
