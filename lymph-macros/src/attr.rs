//! Parsing of attribute arguments shared by both macros: `name = value` options, flags, string
//! literals, the `crate = "..."` override, doc comments, and error accumulation.

use proc_macro2::{Span, TokenStream, TokenTree};
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::{Attribute, Expr, ExprLit, Ident, Lit, LitStr, Path, Token};

/// One comma-separated argument of an attribute: `"literal"`, `flag`, or `name = value`.
pub(crate) enum Arg {
    /// A string literal (an event type pattern).
    Str(LitStr),
    /// A bare identifier (`sequential`, `check_determinism`).
    Flag(Ident),
    /// `name = value`.
    Value { name: Ident, value: Expr },
}

impl Parse for Arg {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        if input.peek(LitStr) {
            return Ok(Self::Str(input.parse()?));
        }
        if !input.peek(Ident::peek_any) {
            return Err(input.error("expected an option: `name = value` or a flag"));
        }
        // `parse_any` so that the keyword `crate` is accepted as an option name.
        let name = Ident::parse_any(input)?;
        if input.peek(Token![=]) {
            input.parse::<Token![=]>()?;
            let value = input.parse()?;
            Ok(Self::Value { name, value })
        } else {
            Ok(Self::Flag(name))
        }
    }
}

/// Parses the comma-separated arguments of an attribute.
pub(crate) fn parse_args(tokens: TokenStream) -> syn::Result<Vec<Arg>> {
    let args = Punctuated::<Arg, Token![,]>::parse_terminated.parse2(tokens)?;
    Ok(args.into_iter().collect())
}

/// Errors collected while checking a whole item, so that all of them are reported at once.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(errors) => errors.combine(error),
            None => self.0 = Some(error),
        }
    }

    pub(crate) fn error(&mut self, span: Span, message: impl std::fmt::Display) {
        self.push(syn::Error::new(span, message));
    }

    pub(crate) fn spanned(&mut self, tokens: impl quote::ToTokens, message: impl std::fmt::Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    /// Keeps the value of `result`, or records its error.
    pub(crate) fn ok<T>(&mut self, result: syn::Result<T>) -> Option<T> {
        result.map_err(|e| self.push(e)).ok()
    }

    pub(crate) fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}

/// The string literal `value`.
pub(crate) fn expect_str(name: &Ident, value: &Expr) -> syn::Result<LitStr> {
    match value {
        Expr::Lit(ExprLit { lit: Lit::Str(lit), .. }) => Ok(lit.clone()),
        _ => Err(syn::Error::new_spanned(value, format!("`{name}` takes a string literal, e.g. `{name} = \"...\"`"))),
    }
}

/// The integer literal `value`, which must fit `T`.
pub(crate) fn expect_int<T>(name: &Ident, value: &Expr) -> syn::Result<T>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    match value {
        Expr::Lit(ExprLit { lit: Lit::Int(lit), .. }) => lit.base10_parse(),
        _ => Err(syn::Error::new_spanned(value, format!("`{name}` takes an integer literal, e.g. `{name} = 3`"))),
    }
}

/// A flag's value: `true` when written bare, else the boolean literal after `=`.
pub(crate) fn expect_bool(name: &Ident, value: &Expr) -> syn::Result<bool> {
    match value {
        Expr::Lit(ExprLit { lit: Lit::Bool(lit), .. }) => Ok(lit.value),
        _ => Err(syn::Error::new_spanned(value, format!("`{name}` is a flag: write `{name}` or `{name} = true`"))),
    }
}

/// The path of `crate = "..."`, the lymph crate's path in the generated code.
pub(crate) fn expect_crate_path(name: &Ident, value: &Expr) -> syn::Result<Path> {
    let lit = expect_str(name, value)?;
    lit.parse::<Path>().map_err(|_| {
        syn::Error::new_spanned(
            &lit,
            format!(
                "`crate` takes the path of the lymph crate, e.g. `crate = \"::lymph\"`; `{}` is not a path",
                lit.value()
            ),
        )
    })
}

/// Records `value` into `slot`, or an error if the option was already given.
pub(crate) fn set_once<T>(errors: &mut Errors, slot: &mut Option<T>, name: &Ident, value: Option<T>) {
    if slot.is_some() {
        errors.spanned(name, format!("`{name}` is given more than once"));
    } else if let Some(value) = value {
        *slot = Some(value);
    }
}

/// The default path of the lymph crate in generated code.
pub(crate) fn default_crate_path() -> Path {
    syn::parse_quote!(::lymph)
}

/// The documentation of an item: its `#[doc = "..."]` attributes (`///` comments), each line
/// trimmed, joined with `\n`, without leading or trailing blank lines.
pub(crate) fn doc_string(attrs: &[Attribute]) -> String {
    let mut lines = Vec::new();
    for attr in doc_attrs(attrs) {
        if let syn::Meta::NameValue(nv) = &attr.meta
            && let Expr::Lit(ExprLit { lit: Lit::Str(lit), .. }) = &nv.value
        {
            lines.extend(lit.value().split('\n').map(|line| line.trim().to_owned()));
        }
    }
    lines.join("\n").trim_matches('\n').to_owned()
}

/// The `#[doc]` attributes of an item.
pub(crate) fn doc_attrs(attrs: &[Attribute]) -> impl Iterator<Item = &Attribute> {
    attrs.iter().filter(|attr| attr.path().is_ident("doc"))
}

/// `tokens` with every `Self` replaced by `self_ty`, for code generated outside the `impl`
/// block (where `Self` means something else or nothing).
pub(crate) fn replace_self(tokens: TokenStream, self_ty: &TokenStream) -> TokenStream {
    tokens
        .into_iter()
        .flat_map(|tree| match tree {
            TokenTree::Ident(ident) if ident == "Self" => respan(self_ty.clone(), ident.span()),
            TokenTree::Group(group) => {
                let mut new = proc_macro2::Group::new(group.delimiter(), replace_self(group.stream(), self_ty));
                new.set_span(group.span());
                TokenTree::Group(new).into()
            }
            other => other.into(),
        })
        .collect()
}

/// `tokens` with every token (not inside groups) given `span`.
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut tree| {
            tree.set_span(span);
            tree
        })
        .collect()
}
