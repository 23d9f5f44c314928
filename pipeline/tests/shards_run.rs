//! A run over WebDataset tar shards (written by `qcam shard`) produces the same tables as a run over
//! the folder it was packed from, with shard names the only difference.

mod common;


fn job(dir: &std::path::Path, data: &std::path::Path, out: &std::path::Path) -> std::path::PathBuf {
    let models = common::fake_models(dir, 0);
    let spec = common::JobSpec { data: data.to_path_buf(), limit: 1000, shard_size: 10, out: out.to_path_buf(), ..common::default_spec(dir, &models) };
    spec.write(&dir.join(format!("{}.toml", out.file_name().unwrap().to_string_lossy())))
}

#[test]
fn shards_give_the_folder_results() {
    let tmp = tempfile::tempdir().unwrap();
    let shards = tmp.path().join("shards");
    // 30 images in shards of 10: the same split the folder run uses, so batches match too.
    common::ok(&["shard".as_ref(), common::sample_dir().as_os_str(), "--out".as_ref(), shards.as_os_str(), "--shard-size".as_ref(), "10".as_ref(), "--limit".as_ref(), "30".as_ref()]);
    let limited = |text: String| text.replace("limit = 1000", "limit = 30");
    let folder_out = tmp.path().join("folder");
    let folder_job = job(tmp.path(), &common::sample_dir(), &folder_out);
    std::fs::write(&folder_job, limited(std::fs::read_to_string(&folder_job).unwrap())).unwrap();
    let shard_out = tmp.path().join("tars");
    let shard_job = job(tmp.path(), &shards, &shard_out);
    common::ok(&["run".as_ref(), folder_job.as_os_str()]);
    common::ok(&["run".as_ref(), shard_job.as_os_str()]);

    // Shard names differ by design (val-00000 vs shard-00000); everything else is equal.
    let strip = |rows: Vec<String>| -> Vec<String> {
        rows.into_iter()
            .map(|r| r.split(" | ").filter(|c| !c.starts_with("shard=")).collect::<Vec<_>>().join(" | "))
            .collect()
    };
    for table in ["images", "pairs"] {
        let a = strip(common::canonical(&folder_out, table));
        let b = strip(common::canonical(&shard_out, table));
        assert_eq!(a.len(), if table == "images" { 120 } else { 60 });
        assert_eq!(a, b, "{table}");
    }
    let parts = std::fs::read_dir(shard_out.join("images")).unwrap().count();
    assert_eq!(parts, 3, "one part file per tar shard");
}
