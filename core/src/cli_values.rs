//! Library enums as clap values, for both binaries' `cli.rs` (included by
//! path, so clap stays out of the libraries): the variants' names, with
//! their doc comments as help.

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use strum::{EnumMessage, VariantArray};

/// The enum's values, each with its doc comment (first line, no final
/// period, as clap's derive shows them) as help.
pub fn choice<T>() -> impl TypedValueParser<Value = T>
where
    T: VariantArray + EnumMessage + Copy + Into<&'static str> + std::str::FromStr + Send + Sync + 'static,
{
    let help = |v: &T| v.get_documentation().map(|d| d.trim().trim_end_matches('.').to_string());
    let values = T::VARIANTS.iter().map(move |v| match help(v) {
        Some(h) => PossibleValue::new((*v).into()).help(h),
        None => PossibleValue::new((*v).into()),
    });
    PossibleValuesParser::new(values).map(|s| s.parse().ok().expect("a listed value"))
}

/// The enum's values, names only.
#[allow(dead_code)] // only `train` lists names without help
pub fn names<T>() -> impl TypedValueParser<Value = T>
where
    T: VariantArray + Copy + Into<&'static str> + std::str::FromStr + Send + Sync + 'static,
{
    PossibleValuesParser::new(T::VARIANTS.iter().map(|v| (*v).into())).map(|s: String| s.parse().ok().expect("listed"))
}
