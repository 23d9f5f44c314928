-- Table 10 of `qcam report`: mean deletion and insertion AUC (SPEC §5) per model and variant,
-- EigenCAM's order (the baselines' rows are Table 13's).
-- `perturbation` is a view of RUN_DIR/perturbation/*.parquet.
SELECT
    model,
    variant,
    count(*) AS images,
    avg(deletion_auc::DOUBLE) AS deletion_auc,
    avg(insertion_auc::DOUBLE) AS insertion_auc
FROM perturbation
WHERE method = 'eigencam'
GROUP BY model, variant
ORDER BY model, variant;
