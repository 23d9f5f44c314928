//! What made a saliency map: EigenCAM, or one of the no-model baselines the report sets beside it
//! so a reader can tell what an EigenCAM number is worth.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Written to the `wsol` and `perturbation` tables as the `method` column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// The variant's own EigenCAM (SPEC §3): the paper's numbers.
    EigenCam,
    /// A centred isotropic Gaussian, the same for every image (the "centre bias" baseline of WSOL
    /// evaluations): WSOL and deletion/insertion.
    Gaussian,
    /// The whole crop as the box, at every threshold: WSOL only.
    Full,
    /// A seeded uniformly random pixel order per image: deletion/insertion only.
    Random,
}

impl Method {
    pub const ALL: [Method; 4] = [Method::EigenCam, Method::Gaussian, Method::Full, Method::Random];
    /// The baselines that have a WSOL box, in table order.
    pub const WSOL_BASELINES: [Method; 2] = [Method::Gaussian, Method::Full];
    /// The baselines that have a pixel order (deletion/insertion can run them).
    pub const ORDER_BASELINES: [Method; 2] = [Method::Gaussian, Method::Random];

    pub fn as_str(self) -> &'static str {
        match self {
            Method::EigenCam => "eigencam",
            Method::Gaussian => "gaussian",
            Method::Full => "full",
            Method::Random => "random",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A method name that is none of [`Method::ALL`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a method (eigencam, gaussian, full or random)")]
pub struct UnknownMethod(pub String);

impl FromStr for Method {
    type Err = UnknownMethod;

    fn from_str(s: &str) -> Result<Method, UnknownMethod> {
        Method::ALL.into_iter().find(|m| m.as_str() == s).ok_or_else(|| UnknownMethod(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_back_and_match_serde() {
        for m in Method::ALL {
            assert_eq!(m.as_str().parse::<Method>(), Ok(m));
            assert_eq!(serde_json::to_string(&m).unwrap(), format!("\"{m}\""));
        }
        assert_eq!("EigenCAM".parse::<Method>(), Err(UnknownMethod("EigenCAM".into())));
    }
}
