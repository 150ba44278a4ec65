//! The IDX format of the MNIST family: a 4-byte magic number `00 00 <type> <rank>`, `rank`
//! big-endian u32 dimensions, then the values. Files may be gzip-compressed.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::Path;

use flate2::read::GzDecoder;

use crate::error::{Error, Result};

/// IDX type code of unsigned bytes, the only type the MNIST family uses.
const TYPE_U8: u8 = 0x08;
const MAX_RANK: usize = 8;

/// The content of an IDX file of unsigned bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    /// Dimensions from the header, outermost first (`[N, 28, 28]` for MNIST images).
    pub dims: Vec<usize>,
    /// The values, row-major.
    pub data: Vec<u8>,
}

/// Reads an IDX file of unsigned bytes, gzip-compressed or raw (detected from its first bytes).
///
/// Errors name the file and what is wrong: a wrong magic number (expected vs found), an
/// unsupported value type, or a length that disagrees with the header (declared vs actual).
/// The size a header declares is never allocated before the data is there.
pub fn read_idx(path: impl AsRef<Path>) -> Result<IdxArray> {
    let path = path.as_ref();
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    read_idx_from(BufReader::new(file), file_len, path)
}

/// Parses IDX content held in memory (gzip-compressed or raw); `source` names it in errors.
/// The same checks as [`read_idx`]; used by the fuzz targets.
pub fn parse_idx(bytes: &[u8], source: &Path) -> Result<IdxArray> {
    read_idx_from(bytes, bytes.len() as u64, source)
}

fn read_idx_from(mut reader: impl Read, total_len: u64, path: &Path) -> Result<IdxArray> {
    let mut magic = [0u8; 4];
    let got = read_up_to(&mut reader, &mut magic).map_err(|e| Error::io(path, e))?;
    if got >= 2 && magic[0] == 0x1f && magic[1] == 0x8b {
        let mut prefixed = GzDecoder::new(magic[..got].chain(reader));
        parse(path, &mut prefixed, None)
    } else {
        parse(path, &mut magic[..got].chain(reader), Some(total_len))
    }
}

fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

fn parse(path: &Path, reader: &mut impl Read, raw_len: Option<u64>) -> Result<IdxArray> {
    let what = if raw_len.is_some() {
        "file"
    } else {
        "decompressed stream"
    };
    let damaged = |e: std::io::Error| {
        Error::malformed(
            path,
            format!("cannot read {what}: {e} (damaged gzip data?)"),
        )
    };
    let mut magic = [0u8; 4];
    let got = read_up_to(reader, &mut magic).map_err(damaged)?;
    if got < 4 {
        return Err(Error::malformed(
            path,
            format!("truncated header: {what} has {got} bytes, an IDX header needs at least 4"),
        ));
    }
    if magic[0] != 0 || magic[1] != 0 {
        return Err(Error::malformed(
            path,
            format!(
                "wrong magic number: expected 0x0000TTRR (TT type, RR rank; 0x00000803 for images, \
                 0x00000801 for labels), found 0x{:02x}{:02x}{:02x}{:02x}",
                magic[0], magic[1], magic[2], magic[3]
            ),
        ));
    }
    if magic[2] != TYPE_U8 {
        return Err(Error::malformed(
            path,
            format!(
                "unsupported IDX value type 0x{:02x} at byte offset 2: only unsigned bytes (0x08) are read",
                magic[2]
            ),
        ));
    }
    let rank = usize::from(magic[3]);
    if rank == 0 || rank > MAX_RANK {
        return Err(Error::malformed(
            path,
            format!("rank {rank} at byte offset 3 is out of range 1..={MAX_RANK}"),
        ));
    }
    let mut dims_bytes = vec![0u8; 4 * rank];
    let got = read_up_to(reader, &mut dims_bytes).map_err(damaged)?;
    if got < dims_bytes.len() {
        return Err(Error::malformed(
            path,
            format!(
                "truncated header: {rank} dimensions need {} bytes after the magic number, {what} has {got}",
                4 * rank
            ),
        ));
    }
    let dims: Vec<usize> = dims_bytes
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let declared = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
        .ok_or_else(|| Error::malformed(path, format!("dimensions {dims:?} overflow")))?;
    let header_len = 4 + 4 * rank as u64;
    if let Some(len) = raw_len {
        let actual = len.saturating_sub(header_len);
        if actual != declared {
            return Err(Error::malformed(
                path,
                format!(
                    "{}: header declares dimensions {dims:?} = {declared} bytes of data from byte offset \
                     {header_len}, the file has {actual}",
                    if actual < declared { "truncated" } else { "trailing bytes" }
                ),
            ));
        }
    }
    // Grows only as data arrives, so a corrupt header cannot make us allocate its claim.
    let mut data = Vec::new();
    reader
        .take(declared.saturating_add(1))
        .read_to_end(&mut data)
        .map_err(damaged)?;
    let actual = data.len() as u64;
    if actual != declared {
        return Err(Error::malformed(
            path,
            format!(
                "{}: header declares dimensions {dims:?} = {declared} bytes of data from byte offset \
                 {header_len}, the {what} has {}",
                if actual < declared { "truncated" } else { "trailing bytes" },
                if actual > declared { "more".to_string() } else { actual.to_string() }
            ),
        ));
    }
    Ok(IdxArray { dims, data })
}

/// Writes `data` with dimensions `dims` as an IDX file of unsigned bytes, gzip-compressed when
/// `gzip` is true. Used to make small fixtures in the MNIST format.
pub fn write_idx(path: impl AsRef<Path>, dims: &[usize], data: &[u8], gzip: bool) -> Result<()> {
    let path = path.as_ref();
    let expected: usize = dims.iter().product();
    if dims.is_empty() || dims.len() > MAX_RANK || expected != data.len() {
        return Err(Error::config(
            "IDX dimensions",
            format!("{dims:?}"),
            format!(
                "must have rank 1..={MAX_RANK} and hold {} values",
                data.len()
            ),
        ));
    }
    let mut bytes = vec![0, 0, TYPE_U8, dims.len() as u8];
    for &d in dims {
        let d = u32::try_from(d)
            .map_err(|_| Error::config("IDX dimension", d, "must fit in 32 bits"))?;
        bytes.extend_from_slice(&d.to_be_bytes());
    }
    bytes.extend_from_slice(data);
    let io = |e| Error::io(path, e);
    let mut file = File::create(path).map_err(io)?;
    if gzip {
        let mut enc = flate2::write::GzEncoder::new(file, flate2::Compression::default());
        enc.write_all(&bytes).map_err(io)?;
        enc.finish().map_err(io)?;
    } else {
        file.write_all(&bytes).map_err(io)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("candle-mtl-idx-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    #[test]
    fn round_trip_raw_and_gzip() -> Result<()> {
        let data: Vec<u8> = (0..24).collect();
        for gzip in [false, true] {
            let p = tmp(&format!("rt-{gzip}.idx"));
            write_idx(&p, &[2, 3, 4], &data, gzip)?;
            let a = read_idx(&p)?;
            assert_eq!(a.dims, vec![2, 3, 4]);
            assert_eq!(a.data, data);
        }
        Ok(())
    }

    #[test]
    fn damaged_files_name_the_file_and_problem() -> Result<()> {
        let p = tmp("trunc.idx");
        write_idx(&p, &[10], &[1; 10], false)?;
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 3]).unwrap();
        let msg = read_idx(&p).unwrap_err().to_string();
        assert!(
            msg.contains("trunc.idx") && msg.contains("truncated") && msg.contains("7"),
            "{msg}"
        );

        let p = tmp("magic.idx");
        std::fs::write(&p, [0x12, 0x34, 8, 1, 0, 0, 0, 1, 5]).unwrap();
        let msg = read_idx(&p).unwrap_err().to_string();
        assert!(
            msg.contains("magic.idx") && msg.contains("0x12340801"),
            "{msg}"
        );

        let p = tmp("huge.idx.gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&[
            0, 0, 8, 3, 0xff, 0xff, 0xff, 0xff, 0, 0, 0xff, 0xff, 0, 0, 0, 9, 1, 2,
        ])
        .unwrap();
        std::fs::write(&p, enc.finish().unwrap()).unwrap();
        let msg = read_idx(&p).unwrap_err().to_string();
        assert!(
            msg.contains("huge.idx.gz") && msg.contains("truncated"),
            "{msg}"
        );

        let p = tmp("type.idx");
        std::fs::write(&p, [0, 0, 0x0d, 1, 0, 0, 0, 1, 0, 0, 0, 0]).unwrap();
        assert!(read_idx(&p).unwrap_err().to_string().contains("0x0d"));

        let p = tmp("empty.idx");
        std::fs::write(&p, []).unwrap();
        assert!(read_idx(&p)
            .unwrap_err()
            .to_string()
            .contains("truncated header"));
        Ok(())
    }
}
