//! Fetching the standard datasets (feature `download`): HTTPS downloads checked against
//! SHA-256 constants, written atomically, and tar extraction that refuses to escape its folder.

use std::fs::File;
use std::io::{IsTerminal, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::{RemoteFile, StandardDataset};
use crate::error::{Error, Result};

/// Makes sure `dataset` is in `root/<dataset dir>` (see [`data_root`](super::data_root)),
/// downloading and unpacking what is missing, and returns that directory.
///
/// Offline, or when a checksum does not match, the error lists the files expected and where
/// to put them.
pub fn fetch(dataset: StandardDataset, root: &Path) -> Result<PathBuf> {
    fetch_from(dataset, root, &dataset.files())
}

/// Like [`fetch`], from other locations of the same files (a local mirror, say); `files`
/// replaces [`StandardDataset::files`].
pub fn fetch_from(dataset: StandardDataset, root: &Path, files: &[RemoteFile]) -> Result<PathBuf> {
    let dir = root.join(dataset.dir_name());
    if dataset.is_present(&dir) {
        return Ok(dir);
    }
    let result = fetch_files(files, &dir).and_then(|paths| {
        if dataset.archive_folder().is_some() {
            for p in &paths {
                extract_tar_gz(p, &dir)?;
            }
        }
        Ok(())
    });
    match result {
        Ok(()) if dataset.is_present(&dir) => Ok(dir),
        Ok(()) => Err(Error::Download {
            dataset: dataset.name().into(),
            reason: "the downloaded files do not hold the expected layout".into(),
            instructions: dataset.manual_instructions(&dir),
        }),
        Err(e) => Err(Error::Download {
            dataset: dataset.name().into(),
            reason: e.to_string(),
            instructions: dataset.manual_instructions(&dir),
        }),
    }
}

/// A remote file's name must be a plain file name, so that it lands inside `dir`.
fn check_name(file: &RemoteFile, dir: &Path) -> Result<()> {
    let mut parts = Path::new(&file.name).components();
    match (parts.next(), parts.next()) {
        (Some(Component::Normal(_)), None) => Ok(()),
        _ => Err(Error::malformed(
            dir.join(&file.name),
            format!("remote file name '{}' must be a plain file name", file.name),
        )),
    }
}

/// Downloads each of `files` into `dir` unless a file of that name with the right checksum is
/// already there. Returns the paths in order.
pub fn fetch_files(files: &[RemoteFile], dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    files
        .iter()
        .map(|f| {
            check_name(f, dir)?;
            let path = dir.join(&f.name);
            if path.is_file() && sha256_of(&path)? == f.sha256 {
                return Ok(path);
            }
            download_file(f, dir)
        })
        .collect()
}

fn sha256_of(path: &Path) -> Result<String> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Downloads `file` into `dir`, trying its mirrors in order. The bytes go to a temporary file
/// in `dir`, are hashed on the way, synced, and renamed to the final name only when the
/// SHA-256 matches; a failed download leaves nothing behind.
pub fn download_file(file: &RemoteFile, dir: &Path) -> Result<PathBuf> {
    check_name(file, dir)?;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let config = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(15)))
        .timeout_recv_body(Some(Duration::from_secs(60)))
        .build();
    let agent = ureq::Agent::new_with_config(config);
    let mut failures = Vec::new();
    for url in &file.urls {
        match download_from(&agent, url, file, dir) {
            Ok(path) => return Ok(path),
            Err(e) => failures.push(format!("{url}: {e}")),
        }
    }
    Err(Error::malformed(
        dir.join(&file.name),
        format!("could not be downloaded:\n  {}", failures.join("\n  ")),
    ))
}

/// One attempt from one mirror; the error is a sentence for the list of failed mirrors.
fn download_from(
    agent: &ureq::Agent,
    url: &str,
    file: &RemoteFile,
    dir: &Path,
) -> std::result::Result<PathBuf, String> {
    let target = dir.join(&file.name);
    let temp = dir.join(format!(".{}.part-{}", file.name, std::process::id()));
    let mut response = agent
        .get(url)
        .call()
        .map_err(|e| format!("request failed: {e}"))?;
    let total = response.body().content_length().or(file.size);
    let mut reader = response
        .body_mut()
        .with_config()
        .limit(total.map_or(u64::MAX, |t| t + 1))
        .reader();
    let result = (|| {
        let mut out = File::create(&temp).map_err(|e| format!("{}: {e}", temp.display()))?;
        let mut hasher = Sha256::new();
        let mut progress = Progress::new(&file.name, total);
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = reader
                .read(&mut buf)
                .map_err(|e| format!("download interrupted: {e}"))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n])
                .map_err(|e| format!("{}: {e}", temp.display()))?;
            progress.advance(n as u64);
        }
        progress.finish();
        out.sync_all()
            .map_err(|e| format!("{}: {e}", temp.display()))?;
        let found = hex(&hasher.finalize());
        if found != file.sha256 {
            return Err(format!(
                "checksum mismatch: expected sha256 {}, the downloaded file has {found}",
                file.sha256
            ));
        }
        std::fs::rename(&temp, &target).map_err(|e| format!("{}: {e}", target.display()))?;
        Ok(target.clone())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// Prints download progress on stderr for downloads that take more than a moment: a
/// rewritten line on a terminal, a line per quarter otherwise.
struct Progress<'a> {
    name: &'a str,
    total: Option<u64>,
    done: u64,
    start: Instant,
    shown: bool,
    last_quarter: u64,
    terminal: bool,
}

impl<'a> Progress<'a> {
    fn new(name: &'a str, total: Option<u64>) -> Self {
        Self {
            name,
            total,
            done: 0,
            start: Instant::now(),
            shown: false,
            last_quarter: 0,
            terminal: std::io::stderr().is_terminal(),
        }
    }

    fn advance(&mut self, n: u64) {
        self.done += n;
        if self.start.elapsed() < Duration::from_millis(500) {
            return;
        }
        let mib = self.done as f64 / (1 << 20) as f64;
        let rate = mib / self.start.elapsed().as_secs_f64().max(1e-9);
        match (self.total, self.terminal) {
            (Some(t), true) => {
                eprint!(
                    "\r{}: {:.1}/{:.1} MiB ({:.1} MiB/s)",
                    self.name,
                    mib,
                    t as f64 / (1 << 20) as f64,
                    rate
                );
                self.shown = true;
            }
            (Some(t), false) => {
                let quarter = self.done * 4 / t.max(1);
                if quarter > self.last_quarter {
                    self.last_quarter = quarter;
                    eprintln!("{}: {}% ({:.1} MiB/s)", self.name, quarter * 25, rate);
                }
            }
            (None, true) => {
                eprint!("\r{}: {:.1} MiB ({:.1} MiB/s)", self.name, mib, rate);
                self.shown = true;
            }
            (None, false) => {}
        }
    }

    fn finish(&self) {
        if self.shown {
            eprintln!();
        }
    }
}

/// Unpacks the gzip-compressed tar `archive` into `dest`. Every entry is checked first: one
/// whose path is absolute or climbs out with `..`, and links, are refused with an error
/// naming the entry; nothing is written outside `dest`. Entries are unpacked into a
/// temporary folder inside `dest` and moved into place at the end.
pub fn extract_tar_gz(archive: &Path, dest: &Path) -> Result<()> {
    let open = || -> Result<tar::Archive<flate2::read::GzDecoder<File>>> {
        let f = File::open(archive).map_err(|e| Error::io(archive, e))?;
        Ok(tar::Archive::new(flate2::read::GzDecoder::new(f)))
    };
    let bad = |problem: String| Error::malformed(archive, problem);
    // First pass: validate every entry before writing anything.
    let mut tops = Vec::new();
    let mut checker = open()?;
    for entry in checker
        .entries()
        .map_err(|e| bad(format!("not a tar.gz archive: {e}")))?
    {
        let entry = entry.map_err(|e| bad(format!("damaged archive: {e}")))?;
        let path = entry
            .path()
            .map_err(|e| bad(format!("bad entry name: {e}")))?
            .into_owned();
        let escapes = path
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir));
        if escapes {
            return Err(bad(format!(
                "entry '{}' would be written outside {}; refusing to extract",
                path.display(),
                dest.display()
            )));
        }
        let kind = entry.header().entry_type();
        if !(kind.is_file() || kind.is_dir()) {
            return Err(bad(format!(
                "entry '{}' is a {kind:?}, not a file or folder; refusing to extract",
                path.display()
            )));
        }
        if let Some(Component::Normal(top)) = path
            .components()
            .find(|c| matches!(c, Component::Normal(_)))
        {
            if !tops.contains(&top.to_os_string()) {
                tops.push(top.to_os_string());
            }
        }
    }
    let staging = dest.join(format!(".extracting-{}", std::process::id()));
    std::fs::create_dir_all(&staging).map_err(|e| Error::io(&staging, e))?;
    let result = (|| {
        let mut archive_reader = open()?;
        for entry in archive_reader.entries().map_err(|e| bad(e.to_string()))? {
            let mut entry = entry.map_err(|e| bad(format!("damaged archive: {e}")))?;
            let ok = entry
                .unpack_in(&staging)
                .map_err(|e| bad(format!("cannot unpack: {e}")))?;
            if !ok {
                return Err(bad("an entry would escape the destination".into()));
            }
        }
        for top in &tops {
            let from = staging.join(top);
            let to = dest.join(top);
            if to.exists() {
                std::fs::remove_dir_all(&to).map_err(|e| Error::io(&to, e))?;
            }
            std::fs::rename(&from, &to).map_err(|e| Error::io(&to, e))?;
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&staging);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lower_case() {
        assert_eq!(hex(&[0, 171, 255]), "00abff");
        let d = std::env::temp_dir().join(format!("candle-mtl-sha-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join("abc");
        std::fs::write(&p, b"abc").unwrap();
        // SHA-256("abc") from FIPS 180-2, appendix B.1.
        assert_eq!(
            sha256_of(&p).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
