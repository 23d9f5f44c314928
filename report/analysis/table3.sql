-- Table 3 of `qcam report`: RMSE between the float and int8 CAMs (SPEC §4) per pair, over all
-- images and over the subset (pairs joined with subset on model, image_id), plus the sign audit:
-- mean rmse_flipped and the share of pairs whose sign-flipped int8 CAM would have been closer.
-- `pairs` and `subset` are views of RUN_DIR/pairs/*.parquet and RUN_DIR/subset/*.parquet.
SELECT
    p.model,
    count(*) AS images,
    avg(p.rmse::DOUBLE) AS mean_rmse,
    avg(p.rmse_flipped::DOUBLE) AS mean_rmse_flipped,
    100 * avg((p.rmse_flipped < p.rmse)::INTEGER) AS flipped_closer_pct,
    count(s.image_id) AS subset_images,
    avg(p.rmse::DOUBLE) FILTER (WHERE s.image_id IS NOT NULL) AS subset_mean_rmse,
    avg(p.rmse_flipped::DOUBLE) FILTER (WHERE s.image_id IS NOT NULL) AS subset_mean_rmse_flipped,
    100 * avg((p.rmse_flipped < p.rmse)::INTEGER) FILTER (WHERE s.image_id IS NOT NULL) AS subset_flipped_closer_pct
FROM pairs AS p
LEFT JOIN subset AS s ON s.model = p.model AND s.image_id = p.image_id
GROUP BY p.model
ORDER BY p.model;
