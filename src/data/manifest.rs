//! [`CsvManifest`]: a CSV file listing samples, one row each: an image path or numeric
//! feature columns as the input, every other column a task's label (an empty cell: missing).

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

use super::manifest_config::{ColumnKind, ManifestConfig, SkippedRow};
use super::{
    collate_targets, Batch, Dataset, ImageOptions, Sample, Target, TargetInfo, TargetKind,
};
use crate::error::{Error, Result};

#[derive(Debug, Clone)]
enum Inputs {
    Images {
        files: Vec<PathBuf>,
        shape: [usize; 3],
        options: ImageOptions,
    },
    Features {
        names: Vec<String>,
        values: Vec<f32>,
    },
}

#[derive(Debug, Clone)]
enum Labels {
    Classes {
        count: usize,
        values: Vec<Option<u32>>,
    },
    Values(Vec<Option<f32>>),
}

#[derive(Debug, Clone)]
struct TaskColumn {
    name: String,
    labels: Labels,
}

/// A multi-task dataset listed by a CSV manifest (the `csv` crate).
///
/// The first row names the columns. In image mode the `path` column gives each sample's image
/// (PNG or JPEG, relative to the manifest's folder), decoded when its batch is made; in
/// features mode the named numeric columns are the input. Every other column is a task:
/// non-negative integers are classes, other numbers regression values, and an empty cell a
/// missing label (masked: it adds nothing to the loss or the metrics).
///
/// Reading checks every row: a row with too few or too many cells, a non-numeric or
/// non-finite cell in a numeric column, a class that does not fit a declared count, a
/// missing image file; each is an [`Error::BadRow`] naming the manifest, the line and the
/// column, or, with `skip_bad_rows`, a [`SkippedRow`] (image headers are then checked too). An
/// image that cannot be decoded at training time is an [`Error::BadSampleFile`] naming it and
/// its line.
///
/// ```no_run
/// use candle_mtl::data::{CsvManifest, DatasetExt, ImageOptions, ManifestConfig, Normalize};
/// let train = CsvManifest::open("data/train.csv", &ManifestConfig::images(ImageOptions::square(28)))?;
/// let test = CsvManifest::open("data/test.csv", &train.resolved_config())?;
/// let train = train.normalized(Normalize::new(vec![0.5], vec![0.5])?);
/// # Ok::<(), candle_mtl::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct CsvManifest {
    path: PathBuf,
    config: ManifestConfig,
    inputs: Inputs,
    tasks: Vec<TaskColumn>,
    lines: Vec<u64>,
    skipped: Vec<SkippedRow>,
}

/// One row's cells, checked but not yet given to the tasks.
struct Row {
    line: u64,
    file: Option<PathBuf>,
    features: Vec<f32>,
    /// Per task column: the number and whether it was written as a non-negative integer.
    cells: Vec<Option<(f64, bool)>>,
}

impl CsvManifest {
    /// Reads and checks the manifest at `path`.
    pub fn open(path: impl AsRef<Path>, config: &ManifestConfig) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        config.image.validate()?;
        let bad = |line: u64, column: Option<&str>, problem: String| Error::BadRow {
            manifest: path.clone(),
            line,
            column: column.map(str::to_string),
            problem,
        };
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .trim(csv::Trim::All)
            .from_path(&path)
            .map_err(|e| match e.into_kind() {
                csv::ErrorKind::Io(io) => Error::io(&path, io),
                other => Error::malformed(&path, format!("{other:?}")),
            })?;
        let header: Vec<String> = reader
            .headers()
            .map_err(|e| bad(1, None, format!("cannot read the header row: {e}")))?
            .iter()
            .map(str::to_string)
            .collect();
        if header.iter().all(String::is_empty) {
            return Err(Error::malformed(&path, "is empty: no header row"));
        }
        let col = |name: &str, what: &str| {
            header.iter().position(|h| h == name).ok_or_else(|| {
                bad(
                    1,
                    None,
                    format!("no {what} column '{name}' (columns: {})", header.join(", ")),
                )
            })
        };
        if let Some(dup) = header
            .iter()
            .enumerate()
            .find(|(i, h)| header[..*i].contains(h))
        {
            return Err(bad(1, Some(dup.1), "the column is named twice".into()));
        }
        let image_mode = config.features.is_empty();
        let path_col = if image_mode {
            Some(col(&config.path_column, "image path")?)
        } else {
            None
        };
        let feature_cols = config
            .features
            .iter()
            .map(|f| col(f, "feature"))
            .collect::<Result<Vec<_>>>()?;
        for i in &config.ignore {
            col(i, "ignored")?;
        }
        let task_cols: Vec<usize> = (0..header.len())
            .filter(|&c| {
                Some(c) != path_col
                    && !feature_cols.contains(&c)
                    && !config.ignore.contains(&header[c])
            })
            .collect();
        if task_cols.is_empty() {
            return Err(bad(
                1,
                None,
                "no task columns: every column is an input or ignored".into(),
            ));
        }
        for (name, _) in &config.kinds {
            if !task_cols.iter().any(|&c| header[c] == *name) {
                return Err(bad(
                    1,
                    Some(name),
                    "a kind is declared for a column that is not a task".into(),
                ));
            }
        }
        let folder = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut rows: Vec<Row> = Vec::new();
        let mut skipped: Vec<SkippedRow> = Vec::new();
        let mut reject = |line: u64, column: Option<&str>, problem: String| -> Result<()> {
            if config.skip_bad_rows {
                skipped.push(SkippedRow {
                    line,
                    column: column.map(str::to_string),
                    problem,
                });
                Ok(())
            } else {
                Err(bad(line, column, problem))
            }
        };
        for record in reader.records() {
            let record = match record {
                Ok(r) => r,
                Err(e) => {
                    let line = e.position().map_or(0, csv::Position::line);
                    reject(line, None, format!("unreadable row: {e}"))?;
                    continue;
                }
            };
            let line = record.position().map_or(0, csv::Position::line);
            if record.len() != header.len() {
                reject(
                    line,
                    None,
                    format!(
                        "has {} cells, the header {} columns",
                        record.len(),
                        header.len()
                    ),
                )?;
                continue;
            }
            match read_row(
                &record,
                line,
                &header,
                &folder,
                path_col,
                &feature_cols,
                &task_cols,
                config.skip_bad_rows,
            ) {
                Ok(row) => rows.push(row),
                Err((column, problem)) => reject(line, Some(&column), problem)?,
            }
        }
        let tasks = task_columns(&header, &task_cols, &config.kinds, &mut rows, &mut reject)?;
        // Class-count rejections come after the read loop: list every skipped row in file order.
        skipped.sort_by_key(|r| r.line);
        if rows.is_empty() {
            return Err(match skipped.first() {
                None => Error::malformed(&path, "has a header but no sample rows"),
                Some(first) => Error::malformed(
                    &path,
                    format!(
                        "every row is bad ({} skipped; line {}: {})",
                        skipped.len(),
                        first.line,
                        first.problem
                    ),
                ),
            });
        }
        let lines: Vec<u64> = rows.iter().map(|r| r.line).collect();
        let inputs = if image_mode {
            let files: Vec<PathBuf> = rows.iter_mut().filter_map(|r| r.file.take()).collect();
            let origin = format!("{} line {}", path.display(), lines[0]);
            let shape = config.image.resolve(&files[0], &origin)?;
            let options = ImageOptions {
                channels: Some(shape[0]),
                size: config.image.size,
                fit: config.image.fit,
            };
            Inputs::Images {
                files,
                shape,
                options,
            }
        } else {
            Inputs::Features {
                names: config.features.clone(),
                values: rows
                    .iter()
                    .flat_map(|r| r.features.iter().copied())
                    .collect(),
            }
        };
        Ok(Self {
            path,
            config: config.clone(),
            inputs,
            tasks,
            lines,
            skipped,
        })
    }

    /// The manifest's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Rows left out (with `skip_bad_rows`), in file order.
    pub fn skipped(&self) -> &[SkippedRow] {
        &self.skipped
    }

    /// The task columns, in file order.
    pub fn task_names(&self) -> Vec<&str> {
        self.tasks.iter().map(|t| t.name.as_str()).collect()
    }

    /// Number of samples labelled for task `name` (`None`: no such task).
    pub fn labelled(&self, name: &str) -> Option<usize> {
        let t = self.tasks.iter().find(|t| t.name == name)?;
        Some(match &t.labels {
            Labels::Classes { values, .. } => values.iter().flatten().count(),
            Labels::Values(v) => v.iter().flatten().count(),
        })
    }

    /// The number of classes of task `name` (`None` for values or no such task).
    pub fn class_count(&self, name: &str) -> Option<usize> {
        match self.tasks.iter().find(|t| t.name == name)?.labels {
            Labels::Classes { count, .. } => Some(count),
            Labels::Values(_) => None,
        }
    }

    /// The kind of task `name` as read (classes with their count, or values).
    pub fn kind(&self, name: &str) -> Option<ColumnKind> {
        Some(match self.tasks.iter().find(|t| t.name == name)?.labels {
            Labels::Classes { count, .. } => ColumnKind::Classes { count: Some(count) },
            Labels::Values(_) => ColumnKind::Values,
        })
    }

    /// This manifest's configuration with every kind, class count, channel count and image
    /// size fixed to what was read: for reading a test manifest the way the training one
    /// was (a test class beyond the training classes is then a bad row; test images of
    /// another size are brought to the training size by the configured fit).
    pub fn resolved_config(&self) -> ManifestConfig {
        let mut config = self.config.clone();
        for t in &self.tasks {
            if let Some(kind) = self.kind(&t.name) {
                config = config.with_kind(t.name.clone(), kind);
            }
        }
        if let Inputs::Images { shape, .. } = &self.inputs {
            config.image.channels = Some(shape[0]);
            config.image.size = Some((shape[1], shape[2]));
        }
        config
    }

    fn check(&self, index: usize) -> Result<()> {
        if index >= self.lines.len() {
            return Err(Error::DataMismatch(format!(
                "sample index {index} out of range for {} ({} samples)",
                self.path.display(),
                self.lines.len()
            )));
        }
        Ok(())
    }
}

/// Checks one row's inputs and task cells; a problem is `(column, message)`.
#[allow(clippy::too_many_arguments)]
fn read_row(
    record: &csv::StringRecord,
    line: u64,
    header: &[String],
    folder: &Path,
    path_col: Option<usize>,
    feature_cols: &[usize],
    task_cols: &[usize],
    check_images: bool,
) -> std::result::Result<Row, (String, String)> {
    let number = |c: usize| -> std::result::Result<Option<f64>, (String, String)> {
        let cell = &record[c];
        if cell.is_empty() {
            return Ok(None);
        }
        match cell.parse::<f64>() {
            // Values are stored as f32: one beyond its range is refused here, not read as inf.
            Ok(v) if v.is_finite() && (v as f32).is_finite() => Ok(Some(v)),
            Ok(_) => Err((
                header[c].clone(),
                format!("'{cell}' is not a finite number"),
            )),
            Err(_) => Err((header[c].clone(), format!("'{cell}' is not a number"))),
        }
    };
    let file = match path_col {
        Some(c) => {
            let cell = &record[c];
            if cell.is_empty() {
                return Err((header[c].clone(), "no image path".into()));
            }
            let file = folder.join(cell);
            if !file.is_file() {
                return Err((
                    header[c].clone(),
                    format!("image file {} not found", file.display()),
                ));
            }
            if check_images {
                super::image_file::check_header(&file).map_err(|p| (header[c].clone(), p))?;
            }
            Some(file)
        }
        None => None,
    };
    let mut features = Vec::with_capacity(feature_cols.len());
    for &c in feature_cols {
        match number(c)? {
            Some(v) => features.push(v as f32),
            None => return Err((header[c].clone(), "empty feature cell".into())),
        }
    }
    let mut cells = Vec::with_capacity(task_cols.len());
    for &c in task_cols {
        // A class index: digits only, within u32 (larger whole numbers are values).
        let integer = !record[c].is_empty()
            && record[c].bytes().all(|b| b.is_ascii_digit())
            && record[c].parse::<u32>().is_ok();
        cells.push(number(c)?.map(|v| (v, integer)));
    }
    Ok(Row {
        line,
        file,
        features,
        cells,
    })
}

/// Resolves each task column's kind and labels; rows whose class does not fit a declared
/// count are rejected (removed when skipping).
fn task_columns(
    header: &[String],
    task_cols: &[usize],
    kinds: &[(String, ColumnKind)],
    rows: &mut Vec<Row>,
    reject: &mut impl FnMut(u64, Option<&str>, String) -> Result<()>,
) -> Result<Vec<TaskColumn>> {
    let declared: Vec<Option<ColumnKind>> = task_cols
        .iter()
        .map(|&c| kinds.iter().find(|(n, _)| *n == header[c]).map(|(_, k)| *k))
        .collect();
    let mut keep = vec![true; rows.len()];
    for (r, row) in rows.iter().enumerate() {
        for (t, cell) in row.cells.iter().enumerate() {
            let (Some(ColumnKind::Classes { count }), Some((v, integer))) = (declared[t], cell)
            else {
                continue;
            };
            let name = &header[task_cols[t]];
            let problem = if !integer {
                Some(format!(
                    "'{v}' is not a class index (a non-negative integer)"
                ))
            } else {
                count.filter(|&n| *v as usize >= n).map(|n| {
                    format!(
                        "class {v} does not fit the {n} classes 0..={}",
                        n.saturating_sub(1)
                    )
                })
            };
            if let Some(problem) = problem {
                reject(row.line, Some(name), problem)?;
                keep[r] = false;
                break;
            }
        }
    }
    let mut k = 0;
    rows.retain(|_| {
        k += 1;
        keep[k - 1]
    });
    let mut tasks = Vec::with_capacity(task_cols.len());
    for (t, &c) in task_cols.iter().enumerate() {
        let cells: Vec<Option<(f64, bool)>> = rows.iter().map(|r| r.cells[t]).collect();
        let classes = match declared[t] {
            Some(ColumnKind::Classes { count }) => Some(count),
            Some(ColumnKind::Values) => None,
            None => cells
                .iter()
                .flatten()
                .all(|(_, integer)| *integer)
                .then_some(None),
        };
        let labels = match classes {
            Some(count) => {
                let values: Vec<Option<u32>> =
                    cells.iter().map(|c| c.map(|(v, _)| v as u32)).collect();
                let seen = values.iter().flatten().max().map_or(0, |m| *m as usize + 1);
                Labels::Classes {
                    count: count.unwrap_or(seen).max(1),
                    values,
                }
            }
            None => Labels::Values(cells.iter().map(|c| c.map(|(v, _)| v as f32)).collect()),
        };
        tasks.push(TaskColumn {
            name: header[c].clone(),
            labels,
        });
    }
    Ok(tasks)
}

impl Dataset for CsvManifest {
    fn len(&self) -> usize {
        self.lines.len()
    }

    fn input_shape(&self) -> Vec<usize> {
        match &self.inputs {
            Inputs::Images { shape, .. } => shape.to_vec(),
            Inputs::Features { names, .. } => vec![names.len()],
        }
    }

    fn targets(&self) -> Vec<TargetInfo> {
        self.tasks
            .iter()
            .map(|t| TargetInfo {
                name: t.name.clone(),
                kind: match t.labels {
                    Labels::Classes { .. } => TargetKind::Classes,
                    Labels::Values(_) => TargetKind::Values { shape: vec![] },
                },
            })
            .collect()
    }

    fn get(&self, index: usize) -> Result<Sample> {
        self.check(index)?;
        let input = match &self.inputs {
            Inputs::Images {
                files,
                shape,
                options,
            } => super::image_file::decode(&files[index], *shape, options, &self.origin(index))?,
            Inputs::Features { names, values } => {
                let f = names.len();
                Tensor::from_slice(&values[index * f..(index + 1) * f], f, &Device::Cpu)?
            }
        };
        let targets = (0..self.tasks.len())
            .map(|t| self.target(index, t))
            .collect::<Result<Vec<_>>>()?;
        Ok(Sample { input, targets })
    }

    fn target(&self, index: usize, target: usize) -> Result<Option<Target>> {
        self.check(index)?;
        Ok(match self.tasks.get(target).map(|t| &t.labels) {
            Some(Labels::Classes { values, .. }) => values[index].map(Target::Class),
            Some(Labels::Values(v)) => v[index].map(|x| Target::Values(vec![x])),
            None => None,
        })
    }

    fn origin(&self, index: usize) -> String {
        match self.lines.get(index) {
            Some(line) => format!("{} line {line}", self.path.display()),
            None => format!("{} sample {index}", self.path.display()),
        }
    }

    fn read_batch(&self, indices: &[u32]) -> Result<Batch> {
        let Inputs::Features { names, values } = &self.inputs else {
            return super::collate(self, indices);
        };
        // Numeric rows: one gather, no per-sample tensors.
        let f = names.len();
        let mut rows = Vec::with_capacity(indices.len() * f);
        for &i in indices {
            self.check(i as usize)?;
            let i = i as usize;
            rows.extend_from_slice(&values[i * f..(i + 1) * f]);
        }
        Ok(Batch {
            inputs: Tensor::from_vec(rows, (indices.len(), f), &Device::Cpu)?,
            targets: collate_targets(self, indices)?,
        })
    }
}
