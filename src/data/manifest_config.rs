//! How a [`CsvManifest`](super::CsvManifest) is read: [`ManifestConfig`], the kinds of task
//! columns, and the rows left out when bad rows are skipped.

use super::ImageOptions;

/// What a task column holds.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    /// Class indices `0..count`; `count: None` takes the largest index seen plus one.
    Classes {
        /// Number of classes, when known.
        count: Option<usize>,
    },
    /// Real values (regression).
    Values,
}

/// How a manifest is read.
///
/// | field | default | meaning |
/// |---|---|---|
/// | `path_column` | `"path"` | column of image paths (relative to the manifest's folder); unused when `features` is set |
/// | `features` | empty | numeric input columns; empty: the inputs are the images of `path_column` |
/// | `image` | channels and size of the first image | how images are decoded ([`ImageOptions`]) |
/// | `ignore` | empty | columns that are neither input nor task (ids, notes) |
/// | `kinds` | inferred | task columns' kinds; a column not listed is classes when every cell is a non-negative integer, values otherwise |
/// | `skip_bad_rows` | false | count and report bad rows instead of refusing the manifest |
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestConfig {
    /// Column of image paths.
    pub path_column: String,
    /// Numeric input columns (features mode).
    pub features: Vec<String>,
    /// Image decoding.
    pub image: ImageOptions,
    /// Columns to leave out.
    pub ignore: Vec<String>,
    /// Kinds of task columns, overriding the inference.
    pub kinds: Vec<(String, ColumnKind)>,
    /// Skip (and count) bad rows instead of failing.
    pub skip_bad_rows: bool,
}

impl Default for ManifestConfig {
    fn default() -> Self {
        Self {
            path_column: "path".into(),
            features: Vec::new(),
            image: ImageOptions::default(),
            ignore: Vec::new(),
            kinds: Vec::new(),
            skip_bad_rows: false,
        }
    }
}

impl ManifestConfig {
    /// A manifest of images in the `path` column, decoded as `image` says.
    pub fn images(image: ImageOptions) -> Self {
        Self {
            image,
            ..Self::default()
        }
    }

    /// A manifest whose inputs are the numeric columns `features`.
    pub fn features<S: Into<String>>(features: impl IntoIterator<Item = S>) -> Self {
        Self {
            features: features.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    /// Declares the kind of task column `name`.
    pub fn with_kind(mut self, name: impl Into<String>, kind: ColumnKind) -> Self {
        let name = name.into();
        self.kinds.retain(|(n, _)| *n != name);
        self.kinds.push((name, kind));
        self
    }

    /// Leaves out the columns `columns`.
    pub fn ignoring<S: Into<String>>(mut self, columns: impl IntoIterator<Item = S>) -> Self {
        self.ignore.extend(columns.into_iter().map(Into::into));
        self
    }

    /// Skips bad rows (counted in [`CsvManifest::skipped`](super::CsvManifest::skipped)) instead of failing.
    pub fn skip_bad_rows(mut self, skip: bool) -> Self {
        self.skip_bad_rows = skip;
        self
    }
}

/// A row left out of a manifest read with `skip_bad_rows`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedRow {
    /// Line in the manifest (1-based; the header is line 1).
    pub line: u64,
    /// The column at fault, when one is.
    pub column: Option<String>,
    /// What is wrong.
    pub problem: String,
}
