//! What made a saliency map: EigenCAM, or one of the no-model baselines the report sets beside it
//! so a reader can tell what an EigenCAM number is worth.

use crate::names::names;

names! {
    /// Written to the `wsol` and `perturbation` tables as the `method` column.
    pub enum Method as "method" {
        /// The variant's own EigenCAM (SPEC §3): the paper's numbers.
        EigenCam = "eigencam",
        /// A centred isotropic Gaussian, the same for every image (the "centre bias" baseline of WSOL
        /// evaluations): WSOL and deletion/insertion.
        Gaussian = "gaussian",
        /// The whole crop as the box, at every threshold: WSOL only.
        Full = "full",
        /// A seeded uniformly random pixel order per image: deletion/insertion only.
        Random = "random",
    }
}

impl Method {
    /// The baselines that have a WSOL box, in table order.
    pub const WSOL_BASELINES: [Method; 2] = [Method::Gaussian, Method::Full];
    /// The baselines that have a pixel order (deletion/insertion can run them).
    pub const ORDER_BASELINES: [Method; 2] = [Method::Gaussian, Method::Random];
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
        assert_eq!(
            "EigenCAM".parse::<Method>().unwrap_err().to_string(),
            "`EigenCAM` is not a method (eigencam, gaussian, full or random)"
        );
    }
}
