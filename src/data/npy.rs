//! NumPy `.npy` files: the header (dtype, shape, data offset), whole-file reads into tensors,
//! and writes.

use std::io::Write;
use std::path::Path;

use candle_core::{DType, Device, Tensor};

use crate::error::{Error, Result};

/// What an `.npy` header says: element type, shape and where the data starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpyHeader {
    /// Element type (u8, u32, i64, f32, f64 are read).
    pub dtype: DType,
    /// The array's shape.
    pub shape: Vec<usize>,
    /// Byte offset of the first element.
    pub data_offset: usize,
}

const MAGIC: &[u8] = b"\x93NUMPY";

fn dtype_of(descr: &str) -> Option<DType> {
    Some(match descr {
        "|u1" | "u1" => DType::U8,
        "<u4" => DType::U32,
        "<i8" => DType::I64,
        "<f4" => DType::F32,
        "<f8" => DType::F64,
        _ => return None,
    })
}

fn descr_of(dtype: DType) -> Option<&'static str> {
    Some(match dtype {
        DType::U8 => "|u1",
        DType::U32 => "<u4",
        DType::I64 => "<i8",
        DType::F32 => "<f4",
        DType::F64 => "<f8",
        _ => return None,
    })
}

/// The value of `'key': value` in a header dictionary, up to the next top-level comma.
fn field<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let start = header.find(&format!("'{key}'"))? + key.len() + 2;
    let rest = header[start..].trim_start().strip_prefix(':')?.trim_start();
    if let Some(inner) = rest.strip_prefix('(') {
        return inner.find(')').map(|end| &inner[..end]);
    }
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    Some(rest[..end].trim())
}

/// Parses the header at the start of `bytes` (a whole file or its first kilobytes).
pub fn parse_npy_header(path: &Path, bytes: &[u8]) -> Result<NpyHeader> {
    let bad = |problem: String| Error::malformed(path, problem);
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(bad("is not a .npy file (no \\x93NUMPY magic)".into()));
    }
    let (len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(bad(format!("unsupported .npy version {v}"))),
    };
    let header = bytes
        .get(start..start + len)
        .ok_or_else(|| bad(format!("header of {len} bytes runs past the file")))?;
    let header = std::str::from_utf8(header).map_err(|_| bad("header is not text".into()))?;
    let descr =
        field(header, "descr").ok_or_else(|| bad(format!("no 'descr' in header {header}")))?;
    let descr = descr.trim_matches(|c| c == '\'' || c == '"');
    let dtype = dtype_of(descr).ok_or_else(|| {
        bad(format!(
            "element type '{descr}' is not read (u1, <u4, <i8, <f4, <f8 are)"
        ))
    })?;
    if field(header, "fortran_order") != Some("False") {
        return Err(bad("is in Fortran order; save it C-contiguous".into()));
    }
    let shape =
        field(header, "shape").ok_or_else(|| bad(format!("no 'shape' in header {header}")))?;
    let shape = shape
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| bad(format!("shape entry '{s}' is not a size")))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(NpyHeader {
        dtype,
        shape,
        data_offset: start + len,
    })
}

/// Reads a whole `.npy` file into a CPU tensor (for labels and other small arrays; large
/// inputs are better read through [`MmapDataset`](super::MmapDataset)).
pub fn read_npy(path: impl AsRef<Path>) -> Result<Tensor> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let h = parse_npy_header(path, &bytes)?;
    let need = h
        .shape
        .iter()
        .try_fold(h.dtype.size_in_bytes(), |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| Error::malformed(path, format!("shape {:?} is too large", h.shape)))?;
    let data = bytes
        .get(h.data_offset..h.data_offset.saturating_add(need))
        .ok_or_else(|| {
            Error::malformed(
                path,
                format!(
                    "holds {} data bytes, its shape {:?} needs {need}",
                    bytes.len() - h.data_offset,
                    h.shape
                ),
            )
        })?;
    Ok(Tensor::from_raw_buffer(
        data,
        h.dtype,
        &h.shape,
        &Device::Cpu,
    )?)
}

/// The bytes of a version-1 header for an array of `dtype` and `dims`, data aligned to 64.
fn header_bytes(dtype: DType, dims: &[usize]) -> Result<Vec<u8>> {
    let descr = descr_of(dtype).ok_or_else(|| {
        Error::config(
            "npy dtype",
            format!("{dtype:?}"),
            "must be u8, u32, i64, f32 or f64",
        )
    })?;
    let shape = match dims {
        [n] => format!("({n},)"),
        dims => format!(
            "({})",
            dims.iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    // Data aligned to 64 bytes, the header ending in a newline.
    let pad = (64 - (10 + header.len() + 1) % 64) % 64;
    header.push_str(&" ".repeat(pad));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    Ok(out)
}

/// Writes a `.npy` file row by row, for arrays too large to hold in memory: the shape is
/// declared up front and [`finish`](NpyWriter::finish) refuses a file with fewer values than
/// it declares.
#[derive(Debug)]
pub struct NpyWriter {
    path: std::path::PathBuf,
    file: std::io::BufWriter<std::fs::File>,
    expected: usize,
    written: usize,
}

impl NpyWriter {
    /// Creates `path` for an f32 array of shape `dims`.
    pub fn create_f32(path: impl AsRef<Path>, dims: &[usize]) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = std::fs::File::create(&path).map_err(|e| Error::io(&path, e))?;
        let mut file = std::io::BufWriter::with_capacity(1 << 20, file);
        file.write_all(&header_bytes(DType::F32, dims)?)
            .map_err(|e| Error::io(&path, e))?;
        Ok(Self {
            path,
            file,
            expected: dims.iter().product(),
            written: 0,
        })
    }

    /// Appends `values` (any number of whole or partial rows).
    pub fn append(&mut self, values: &[f32]) -> Result<()> {
        if self.written + values.len() > self.expected {
            return Err(Error::malformed(
                &self.path,
                format!("more than the {} values its shape declares", self.expected),
            ));
        }
        for v in values {
            self.file
                .write_all(&v.to_le_bytes())
                .map_err(|e| Error::io(&self.path, e))?;
        }
        self.written += values.len();
        Ok(())
    }

    /// Flushes the file; refuses one with fewer values than its shape declares.
    pub fn finish(mut self) -> Result<()> {
        if self.written != self.expected {
            return Err(Error::malformed(
                &self.path,
                format!(
                    "{} values written, its shape declares {}",
                    self.written, self.expected
                ),
            ));
        }
        self.file.flush().map_err(|e| Error::io(&self.path, e))
    }
}

/// Writes `tensor` as a version-1 `.npy` file (u8, u32, i64, f32 or f64).
pub fn write_npy(path: impl AsRef<Path>, tensor: &Tensor) -> Result<()> {
    let path = path.as_ref();
    let out = header_bytes(tensor.dtype(), tensor.dims())?;
    let mut file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    file.write_all(&out).map_err(|e| Error::io(path, e))?;
    let flat = tensor.flatten_all()?;
    let bytes: Vec<u8> = match tensor.dtype() {
        DType::U8 => flat.to_vec1::<u8>()?,
        DType::U32 => flat
            .to_vec1::<u32>()?
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        DType::I64 => flat
            .to_vec1::<i64>()?
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        DType::F32 => flat
            .to_vec1::<f32>()?
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        _ => flat
            .to_vec1::<f64>()?
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
    };
    file.write_all(&bytes).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_round_trips_and_refuses_what_it_cannot_read() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("candle-mtl-npy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let p = dir.join("a.npy");
        let t = Tensor::arange(0f32, 12., &Device::Cpu)?.reshape((3, 4))?;
        write_npy(&p, &t)?;
        let bytes = std::fs::read(&p).map_err(|e| Error::io(&p, e))?;
        let h = parse_npy_header(&p, &bytes)?;
        assert_eq!(
            (h.dtype, h.shape.clone(), h.data_offset % 64),
            (DType::F32, vec![3, 4], 0)
        );
        assert_eq!(read_npy(&p)?.to_vec2::<f32>()?, t.to_vec2::<f32>()?);
        let labels = Tensor::new(&[3i64, 1, 4], &Device::Cpu)?;
        write_npy(&p, &labels)?;
        assert_eq!(read_npy(&p)?.to_vec1::<i64>()?, vec![3, 1, 4]);
        // Row by row: the same file as written whole; a short file is refused.
        let mut w = NpyWriter::create_f32(&p, &[3, 4])?;
        for row in t.to_vec2::<f32>()? {
            w.append(&row)?;
        }
        w.finish()?;
        assert_eq!(read_npy(&p)?.to_vec2::<f32>()?, t.to_vec2::<f32>()?);
        let mut w = NpyWriter::create_f32(&p, &[3, 4])?;
        w.append(&[1.0; 4])?;
        assert!(w
            .finish()
            .unwrap_err()
            .to_string()
            .contains("4 values written"));
        // A header written by NumPy itself (version 1, shape of one entry).
        let numpy =
            b"\x93NUMPY\x01\x00\x76\x00{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }";
        let mut file = numpy.to_vec();
        file.resize(10 + 0x76, b' ');
        file.extend_from_slice(&1.5f64.to_le_bytes());
        file.extend_from_slice(&(-2f64).to_le_bytes());
        let q = dir.join("numpy.npy");
        std::fs::write(&q, &file).map_err(|e| Error::io(&q, e))?;
        assert_eq!(read_npy(&q)?.to_vec1::<f64>()?, vec![1.5, -2.0]);
        file.truncate(file.len() - 4);
        std::fs::write(&q, &file).map_err(|e| Error::io(&q, e))?;
        assert!(read_npy(&q).unwrap_err().to_string().contains("numpy.npy"));
        std::fs::write(&q, b"PK\x03\x04").map_err(|e| Error::io(&q, e))?;
        assert!(read_npy(&q).unwrap_err().to_string().contains("not a .npy"));
        std::fs::remove_dir_all(&dir).ok();
        Ok(())
    }
}
