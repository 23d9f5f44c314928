//! The two sides of a model pair, and values held once per side.

use serde::{Deserialize, Serialize};

use crate::names::names;

names! {
    /// Which side of a model pair. Written to every table as `float` or `quantized`.
    pub enum Variant as "variant" {
        Float = "float",
        Quantized = "quantized",
    }
}

impl Variant {
    /// Both sides, float first: [`Variant::ALL`] under the name that reads well at call sites.
    pub const BOTH: [Variant; 2] = Variant::ALL;
}

/// One value per variant of a pair: `pair[Variant::Float]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ByVariant<T> {
    pub float: T,
    pub quantized: T,
}

impl<T> ByVariant<T> {
    pub fn new(float: T, quantized: T) -> Self {
        ByVariant { float, quantized }
    }

    /// Builds both sides from one function of the variant.
    pub fn from_fn(mut f: impl FnMut(Variant) -> T) -> Self {
        ByVariant { float: f(Variant::Float), quantized: f(Variant::Quantized) }
    }

    pub fn get(&self, variant: Variant) -> &T {
        match variant {
            Variant::Float => &self.float,
            Variant::Quantized => &self.quantized,
        }
    }

    pub fn map<U>(self, mut f: impl FnMut(T) -> U) -> ByVariant<U> {
        ByVariant { float: f(self.float), quantized: f(self.quantized) }
    }

    pub fn as_ref(&self) -> ByVariant<&T> {
        ByVariant { float: &self.float, quantized: &self.quantized }
    }

    /// Both sides with their variant, float first.
    pub fn iter(&self) -> impl Iterator<Item = (Variant, &T)> {
        [(Variant::Float, &self.float), (Variant::Quantized, &self.quantized)].into_iter()
    }

    /// Both sides, or the first error.
    pub fn try_from_fn<E>(mut f: impl FnMut(Variant) -> Result<T, E>) -> Result<Self, E> {
        Ok(ByVariant { float: f(Variant::Float)?, quantized: f(Variant::Quantized)? })
    }
}

impl<T> std::ops::Index<Variant> for ByVariant<T> {
    type Output = T;

    fn index(&self, variant: Variant) -> &T {
        self.get(variant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_nothing_else_parses() {
        for v in Variant::BOTH {
            assert_eq!(v.to_string().parse::<Variant>(), Ok(v));
            assert_eq!(serde_json::to_string(&v).unwrap(), format!("\"{v}\""));
        }
        assert_eq!("int8".parse::<Variant>().unwrap_err().to_string(), "`int8` is not a variant (float or quantized)");
        assert!("Float".parse::<Variant>().is_err());
    }

    #[test]
    fn by_variant_indexes_each_side() {
        let p = ByVariant::from_fn(|v| v.as_str().len());
        assert_eq!((p[Variant::Float], p[Variant::Quantized]), (5, 9));
        assert_eq!(p.iter().map(|(v, _)| v).collect::<Vec<_>>(), Variant::BOTH);
        let r: Result<ByVariant<u8>, &str> = ByVariant::try_from_fn(|v| if v == Variant::Float { Ok(1) } else { Err("q") });
        assert_eq!(r, Err("q"));
    }
}
