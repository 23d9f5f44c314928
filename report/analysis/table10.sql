-- Table 10 of `qcam report`: mean deletion and insertion AUC (SPEC §5) per model and variant.
-- `perturbation` is a view of RUN_DIR/perturbation/*.parquet.
SELECT
    model,
    variant,
    count(*) AS images,
    avg(deletion_auc::DOUBLE) AS deletion_auc,
    avg(insertion_auc::DOUBLE) AS insertion_auc
FROM perturbation
GROUP BY model, variant
ORDER BY model, variant;
