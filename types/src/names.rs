//! Enums written to the tables by name. Each is declared once, with its names, through [`names!`]:
//! the serde form, `as_str`, `Display`, `FromStr` and `ALL` cannot drift apart.

use std::fmt;

/// A name that is none of an enum's: `` `int8` is not a variant (float or quantized) ``.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct UnknownName {
    /// What the enum names, in words: "variant", "method".
    pub what: &'static str,
    pub name: String,
    pub known: &'static [&'static str],
}

impl fmt::Display for UnknownName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` is not a {} (", self.name, self.what)?;
        for (i, k) in self.known.iter().enumerate() {
            let sep = match i {
                0 => "",
                _ if i + 1 == self.known.len() => " or ",
                _ => ", ",
            };
            write!(f, "{sep}{k}")?;
        }
        f.write_str(")")
    }
}

/// `names! { /// doc
/// pub enum Variant as "variant" { Float = "float", Quantized = "quantized" } }` declares the enum
/// (Copy, ordered, hashable, serde by those names) with `ALL` in declaration order, `as_str`,
/// `Display` and a `FromStr` whose error is [`UnknownName`].
macro_rules! names {
    ($(#[$meta:meta])* pub enum $ty:ident as $what:literal {
        $($(#[$vmeta:meta])* $variant:ident = $name:literal),+ $(,)?
    }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        pub enum $ty {
            $($(#[$vmeta])* #[serde(rename = $name)] $variant),+
        }

        impl $ty {
            /// Every value, in declaration order.
            pub const ALL: [$ty; [$($name),+].len()] = [$($ty::$variant),+];
            const NAMES: &'static [&'static str] = &[$($name),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $name),+
                }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $ty {
            type Err = $crate::names::UnknownName;

            fn from_str(s: &str) -> Result<$ty, $crate::names::UnknownName> {
                $ty::ALL.into_iter().find(|v| v.as_str() == s).ok_or_else(|| $crate::names::UnknownName {
                    what: $what,
                    name: s.to_string(),
                    known: $ty::NAMES,
                })
            }
        }
    };
}

pub(crate) use names;

#[cfg(test)]
mod tests {
    use super::*;

    names! {
        /// A test enum.
        pub enum Fruit as "fruit" { Apple = "apple", BloodOrange = "blood-orange", Fig = "fig" }
    }

    #[test]
    fn one_declaration_gives_names_both_ways_and_serde_agrees() {
        assert_eq!(Fruit::ALL, [Fruit::Apple, Fruit::BloodOrange, Fruit::Fig]);
        for f in Fruit::ALL {
            assert_eq!(f.to_string().parse::<Fruit>(), Ok(f));
            assert_eq!(serde_json::to_string(&f).unwrap(), format!("\"{}\"", f.as_str()));
            assert_eq!(serde_json::from_str::<Fruit>(&format!("\"{f}\"")).unwrap(), f);
        }
        assert_eq!(Fruit::BloodOrange.as_str(), "blood-orange");
        let err = "pear".parse::<Fruit>().unwrap_err();
        assert_eq!(err.to_string(), "`pear` is not a fruit (apple, blood-orange or fig)");
        assert!("Apple".parse::<Fruit>().is_err(), "names are exact");
    }

    #[test]
    fn the_list_of_known_names_reads_as_english() {
        let e = |known| UnknownName { what: "x", name: "y".into(), known };
        assert_eq!(e(&["a"]).to_string(), "`y` is not a x (a)");
        assert_eq!(e(&["a", "b"]).to_string(), "`y` is not a x (a or b)");
    }
}
