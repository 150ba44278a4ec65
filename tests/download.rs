//! The download path against a local HTTP server: checksums, atomic writes, offline errors,
//! archive extraction that refuses to escape, and CIFAR-10 fetched and loaded end to end.

mod common;

use std::collections::HashMap;

use candle_mtl::data::{
    download_file, extract_tar_gz, fetch_files, fetch_from, load_cifar10, RemoteFile,
    StandardDataset,
};
use common::http::serve;
use common::temp_dir;
use sha2::{Digest, Sha256};

fn sha(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn remote(base: &str, name: &str, body: &[u8]) -> RemoteFile {
    RemoteFile {
        name: name.into(),
        urls: vec![format!("{base}/{name}")],
        sha256: sha(body),
        size: Some(body.len() as u64),
    }
}

fn leftovers(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect()
}

#[test]
fn verified_download_is_written_atomically() {
    let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let server = serve(HashMap::from([("/data.bin".to_string(), body.clone())]));
    let dir = temp_dir("dl-ok");
    let path = download_file(&remote(&server.base, "data.bin", &body), &dir).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), body);
    assert!(leftovers(&dir).is_empty());
    // Already there with the right checksum: not fetched again (the server is not asked).
    let offline = RemoteFile {
        urls: vec!["http://127.0.0.1:9/data.bin".into()],
        ..remote(&server.base, "data.bin", &body)
    };
    assert_eq!(fetch_files(&[offline], &dir).unwrap(), vec![path]);
}

#[test]
fn checksum_mismatch_leaves_nothing_and_says_both_sums() {
    let server = serve(HashMap::from([("/x.gz".to_string(), b"tampered".to_vec())]));
    let dir = temp_dir("dl-bad");
    let file = RemoteFile {
        sha256: sha(b"original"),
        ..remote(&server.base, "x.gz", b"tampered")
    };
    let msg = download_file(&file, &dir).unwrap_err().to_string();
    assert!(
        msg.contains("x.gz") && msg.contains(&sha(b"original")) && msg.contains(&sha(b"tampered")),
        "{msg}"
    );
    assert!(!dir.join("x.gz").exists());
    assert!(leftovers(&dir).is_empty());
}

#[test]
fn offline_error_lists_the_files_and_where_to_put_them() {
    let server = serve(HashMap::new());
    let root = temp_dir("dl-offline");
    let files: Vec<RemoteFile> = StandardDataset::Mnist
        .files()
        .into_iter()
        .map(|f| RemoteFile {
            urls: vec![
                format!("{}/{}", server.base, f.name),
                "http://127.0.0.1:9/x".into(),
            ],
            ..f
        })
        .collect();
    let msg = fetch_from(StandardDataset::Mnist, &root, &files)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("MNIST") && msg.contains("404"), "{msg}");
    for f in StandardDataset::Mnist.files() {
        assert!(msg.contains(&f.name) && msg.contains(&f.sha256), "{msg}");
    }
    assert!(
        msg.contains(&root.join("mnist").display().to_string()),
        "{msg}"
    );
}

fn tar_gz(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut builder = tar::Builder::new(gz);
    for (name, data) in entries {
        let mut header = tar::Header::new_gnu();
        let raw = &mut header.as_gnu_mut().unwrap().name;
        raw[..name.len()].copy_from_slice(name.as_bytes());
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        builder.append(&header, *data).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

#[test]
fn extraction_refuses_entries_that_escape() {
    let dir = temp_dir("tar-escape");
    let dest = dir.join("dest");
    std::fs::create_dir_all(&dest).unwrap();
    for evil in [
        "../evil.txt",
        "/tmp/candle-mtl-evil-abs.txt",
        "ok/../../evil2.txt",
    ] {
        let archive = dir.join("evil.tar.gz");
        std::fs::write(&archive, tar_gz(&[("ok/a.txt", b"a"), (evil, b"pwned")])).unwrap();
        let msg = extract_tar_gz(&archive, &dest).unwrap_err().to_string();
        assert!(
            msg.contains("evil.tar.gz") && msg.contains(evil) && msg.contains("outside"),
            "{msg}"
        );
        assert!(!dir.join("evil.txt").exists() && !dir.join("evil2.txt").exists());
        assert!(
            !dest.join("ok").exists(),
            "nothing is written when an entry is refused"
        );
    }
    let archive = dir.join("good.tar.gz");
    std::fs::write(
        &archive,
        tar_gz(&[("top/sub/a.txt", b"a"), ("top/b.txt", b"b")]),
    )
    .unwrap();
    extract_tar_gz(&archive, &dest).unwrap();
    assert_eq!(std::fs::read(dest.join("top/sub/a.txt")).unwrap(), b"a");
    assert!(leftovers(&dest).is_empty());
}

#[test]
fn cifar10_is_fetched_unpacked_and_loaded() {
    // A CIFAR-10-format archive laid out as the official one: cifar-10-batches-bin/*.bin.
    let staging = temp_dir("cifar-archive");
    let mut entries: Vec<(String, Vec<u8>)> = Vec::new();
    let names: Vec<&str> = candle_mtl::data::CIFAR10_TRAIN_FILES
        .iter()
        .copied()
        .chain([candle_mtl::data::CIFAR10_TEST_FILE])
        .collect();
    for (k, name) in names.iter().enumerate() {
        let pixels: Vec<u8> = (0..3 * 3072).map(|i| ((i + k) % 256) as u8).collect();
        let path = staging.join(name);
        candle_mtl::data::write_cifar(
            &path,
            candle_mtl::data::CifarKind::Cifar10,
            &pixels,
            &[1, 2, 3],
            &[],
        )
        .unwrap();
        entries.push((
            format!("cifar-10-batches-bin/{name}"),
            std::fs::read(&path).unwrap(),
        ));
    }
    let refs: Vec<(&str, &[u8])> = entries
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    let archive = tar_gz(&refs);
    let server = serve(HashMap::from([(
        "/cifar-10-binary.tar.gz".to_string(),
        archive.clone(),
    )]));
    let root = temp_dir("cifar-root");
    let files = [remote(&server.base, "cifar-10-binary.tar.gz", &archive)];
    let dir = fetch_from(StandardDataset::Cifar10, &root, &files).unwrap();
    assert_eq!(dir, root.join("cifar-10"));
    let cifar = load_cifar10(&dir).unwrap();
    assert_eq!((cifar.train.len(), cifar.test.len()), (15, 3));
    assert_eq!(cifar.test.labels(), &[1, 2, 3]);
    // Present now: a second fetch does not touch the network.
    let offline = [RemoteFile {
        urls: vec!["http://127.0.0.1:9/none".into()],
        ..files[0].clone()
    }];
    assert_eq!(
        fetch_from(StandardDataset::Cifar10, &root, &offline).unwrap(),
        dir
    );
}
